//! Runs the Python front end (`python/flow_frontend.py`, embedded) with the user's
//! `python3` and reads the IR it prints (docs/flow-ir.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ir::{Module, VERSION};
use crate::FlowError;

/// The front end, shipped inside the binary so the user needs nothing but a python3.
pub const SCRIPT: &str = include_str!("../python/flow_frontend.py");

/// The user's rules file, relative to the directory of the flow source.
pub const RULES_FILE: &str = ".asya/config.compiler.rules.yaml";

/// The rules file next to `source` as JSON text, if there is one.
pub fn rules_json(source: &Path) -> Result<Option<String>, FlowError> {
    let dir = source.parent().unwrap_or_else(|| Path::new("."));
    let path = dir.join(RULES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FlowError::RulesRead { path, source }),
    };
    let value: serde_json::Value =
        serde_yaml::from_str(&text).map_err(|source| FlowError::RulesParse {
            path: path.clone(),
            source,
        })?;
    // The front end takes the list of rules; a file may also hold it under `rules:`.
    let rules = match value {
        serde_json::Value::Object(mut m) if m.contains_key("rules") => {
            m.remove("rules").unwrap_or_default()
        }
        serde_json::Value::Null => return Ok(None),
        other => other,
    };
    Ok(Some(rules.to_string()))
}

/// Runs the front end on `source` (`func`: one flow) and parses its IR. Compile errors
/// reported by the front end come back in the module (`errors`), not as `Err`.
pub fn run(source: &Path, func: Option<&str>, python: &Path) -> Result<Module, FlowError> {
    let rules = rules_json(source)?;
    let mut cmd = Command::new(python);
    cmd.arg("-").arg(source);
    if let Some(f) = func {
        cmd.arg(f);
    }
    if let Some(r) = &rules {
        cmd.arg("--rules-json").arg(r);
    }
    // The front end never imports the user's code, but a stray PYTHONSTARTUP or user site
    // must not change what it prints.
    cmd.env_remove("PYTHONSTARTUP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_err = |source| FlowError::Spawn {
        python: python.to_owned(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(SCRIPT.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    let file = PathBuf::from(source);
    if !out.status.success() {
        return Err(FlowError::FrontEnd {
            file,
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let module: Module =
        serde_json::from_slice(&out.stdout).map_err(|source| FlowError::BadIr {
            file: file.clone(),
            source,
        })?;
    if module.version != VERSION {
        return Err(FlowError::IrVersion {
            found: module.version,
            expected: VERSION,
        });
    }
    Ok(module)
}
