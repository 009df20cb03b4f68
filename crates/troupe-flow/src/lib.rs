//! The flow compiler (platform.md §4): see docs/flow-ir.md.
//!
//! - [`ir`]: the JSON IR printed by the Python front end (`python/flow_frontend.py`)
//! - [`frontend`]: runs the front end with the user's `python3`
//! - [`lower`]: IR → [`Program`] (routers in continuation-passing style)
//! - [`native`]: executes native routers inside the sidecar
//! - [`python`]: generates `routers.py` for the routers that run as Python actors
//! - [`errors`]: Python's built-in exception hierarchy (what a raising router reports)
//! - [`shipped`]: compiled flows read back by standalone sidecars and gateways

pub mod errors;
pub mod frontend;
pub mod ir;
pub mod lower;
pub mod native;
pub mod outputs;
pub mod program;
pub mod python;
pub mod shipped;

use std::path::{Path, PathBuf};

pub use native::{NativeRouters, RouterFailure};
pub use program::{
    pipeline, ActorUse, Catch, Code, CodeStmt, Flow, Op, Program, RouterInfo, RouterKind,
    SliceCall, DEFAULT_MAX_ITERATIONS, ERROR_HEADER, FANOUT_HEADER, LOOP_HEADER,
};
pub use python::routers_py;

/// Compiler options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The Python that runs the front end (the user's, so its `ast` is the user's grammar).
    pub python: PathBuf,
    /// Loop guard per while loop.
    pub max_iterations: u32,
    /// Run routers inside the sidecar where possible; false = every router is Python.
    pub native: bool,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            python: PathBuf::from("python3"),
            max_iterations: DEFAULT_MAX_ITERATIONS,
            native: true,
        }
    }
}

/// Why a flow did not compile.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Errors in the source, each with its location.
    #[error("{}", display_diagnostics(.0))]
    Compile(Vec<ir::Diagnostic>),
    /// The front end could not be run.
    #[error("could not run the flow front end with {python}: {source}; set the Python to use (python3 on PATH by default)")]
    Spawn {
        /// The Python executable.
        python: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The front end failed without printing an IR.
    #[error("the flow front end failed on {file} (exit {code:?}): {stderr}")]
    FrontEnd {
        /// Source file.
        file: PathBuf,
        /// Exit status.
        code: Option<i32>,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The front end printed something that is not IR version 1.
    #[error("the flow front end printed an unreadable IR for {file}: {source}")]
    BadIr {
        /// Source file.
        file: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The IR has a version this compiler does not read.
    #[error("flow IR version {found} is not supported (expected {expected}); use the front end shipped with this troupe")]
    IrVersion {
        /// Version found.
        found: u32,
        /// Version read.
        expected: u32,
    },
    /// `.asya/config.compiler.rules.yaml` could not be read.
    #[error("could not read the compiler rules {path}: {source}")]
    RulesRead {
        /// The rules file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `.asya/config.compiler.rules.yaml` is not valid YAML.
    #[error("invalid compiler rules {path}: {source}")]
    RulesParse {
        /// The rules file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
    /// The requested function is not a flow of the file.
    #[error("{file} has no flow named {name}")]
    NoSuchFlow {
        /// Source file.
        file: PathBuf,
        /// The name asked for.
        name: String,
    },
}

fn display_diagnostics(diags: &[ir::Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Compiles the flows of a Python file (`func` given: that one only).
pub fn compile_file(
    path: &Path,
    func: Option<&str>,
    opts: &CompileOptions,
) -> Result<Vec<Flow>, FlowError> {
    let module = frontend::run(path, func, &opts.python)?;
    let flows = compile_ir(&module, opts)?;
    if let Some(name) = func {
        if !flows.iter().any(|f| f.name == name) {
            return Err(FlowError::NoSuchFlow {
                file: path.to_owned(),
                name: name.to_owned(),
            });
        }
    }
    Ok(flows)
}

/// Lowers an IR module (pure).
pub fn compile_ir(m: &ir::Module, opts: &CompileOptions) -> Result<Vec<Flow>, FlowError> {
    if m.version != ir::VERSION {
        return Err(FlowError::IrVersion {
            found: m.version,
            expected: ir::VERSION,
        });
    }
    if !m.errors.is_empty() {
        return Err(FlowError::Compile(m.errors.clone()));
    }
    lower::lower_module(m, opts).map_err(FlowError::Compile)
}
