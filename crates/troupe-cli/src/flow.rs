//! `troupe flow compile|validate|graph`: Python flows for the Kubernetes path (platform.md
//! §4.3). troupe-flow compiles and draws; this file parses `FILE.py[:func]`, picks the
//! folders and writes the files. Exit codes: 0 done, 2 the input must be fixed (compile
//! errors, printed `file:line:col: message`; missing handler or image), 1 I/O or a failure
//! to run the front end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use troupe_flow::outputs::{self, manifests};
use troupe_flow::{CompileOptions, Flow, FlowError};

/// Where compiled outputs go without `-o` (per flow: `<this>/<flow>/`).
pub const COMPILED_DIR: &str = ".asya/compiled";
/// Where manifests go without `-o` (per flow: `<this>/<flow>/base/`).
pub const MANIFESTS_DIR: &str = ".asya/manifests";

const COMPILE_HELP: &str = "\
Writes, for each flow of FILE.py (or only FUNC):
  .asya/compiled/<flow>/   routers.py, graph.json, flow.mmd, flow.dot, program.json
  .asya/manifests/<flow>/base/
                           one AsyncActor per handler actor, per Python router and per
                           fan-in; ConfigMaps <flow>-routers (routers.py) and, when the
                           flow has native routers, <flow>-program (program.json, read by
                           every sidecar of the flow as TROUPE_FLOWS_JSON); kustomization.yaml
With -o DIR: DIR/<flow>/ holds the compiled files and DIR/<flow>/base/ the manifests.
Paths are relative to the current directory. Files are rewritten on every compile.

Examples:
  troupe flow compile flows.py --image ghcr.io/acme/flows:1.4
  troupe flow compile flows.py:research --image ghcr.io/acme/flows:1.4 -o deploy/flows
  troupe flow compile flows.py --image app:dev --handler web-search=tools.search.run
  kubectl apply -k .asya/manifests/research/base";

const VALIDATE_HELP: &str = "\
Prints one line per flow when it compiles (exit 0), else each error as
FILE:LINE:COL: message (exit 2). Nothing is written.

Examples:
  troupe flow validate flows.py
  troupe flow validate flows.py:research --no-native-routers";

const GRAPH_HELP: &str = "\
Node kinds: start, end, router (each marked native or Python) and actor. Edges carry the
condition of an if, the exit of a while, the except clause of an error path and the
argument of each fan-out slice.

Examples:
  troupe flow graph flows.py:research > research.mmd
  troupe flow graph flows.py --format dot | dot -Tsvg -o research.svg
  troupe flow graph flows.py --format json | jq '.nodes[] | select(.native == false)'";

/// `troupe flow` subcommands.
#[derive(Debug, Subcommand)]
pub enum FlowCommand {
    /// Compile flows to Python routers, graphs and Kubernetes manifests.
    #[command(after_help = COMPILE_HELP)]
    Compile {
        #[command(flatten)]
        source: Source,
        /// Write everything under DIR/<flow>/ instead of .asya/compiled and .asya/manifests.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        out: Option<PathBuf>,
        /// Runtime image of the handler actors (Python and the handlers' code); also runs
        /// the Python routers whose code needs the flow's module.
        #[arg(long, env = "TROUPE_FLOW_IMAGE")]
        image: Option<String>,
        /// Image of the other Python routers (standard library only).
        #[arg(long, default_value = manifests::DEFAULT_ROUTER_IMAGE)]
        router_image: String,
        /// Handler of an actor the flow calls by a name it does not import (repeatable).
        #[arg(long = "handler", value_name = "ACTOR=MODULE.FUNCTION")]
        handlers: Vec<String>,
        /// Most replicas of each handler actor (routers: 2).
        #[arg(long, default_value_t = manifests::DEFAULT_MAX_REPLICAS)]
        max_replicas: u32,
    },
    /// Compile in memory and report errors; writes nothing.
    #[command(after_help = VALIDATE_HELP)]
    Validate {
        #[command(flatten)]
        source: Source,
    },
    /// Print a flow's graph (one flow: name it as FILE.py:FUNC when the file has several).
    #[command(after_help = GRAPH_HELP)]
    Graph {
        #[command(flatten)]
        source: Source,
        /// mermaid (flow.mmd), dot (flow.dot) or json (graph.json).
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

/// What to compile and how.
#[derive(Debug, Args)]
pub struct Source {
    /// The flow source: FILE.py (every flow in it) or FILE.py:FUNC (that function).
    #[arg(value_name = "FILE.py[:FUNC]")]
    target: String,
    /// Run every router as a Python actor (Asya's model) instead of inside the sidecar.
    #[arg(long)]
    no_native_routers: bool,
    /// Python that runs the front end (its `ast` is the grammar of your flows).
    #[arg(long, default_value = "python3", env = "TROUPE_PYTHON")]
    python: PathBuf,
    /// Loop guard: a while loop fails the task after this many iterations.
    #[arg(long, default_value_t = troupe_flow::DEFAULT_MAX_ITERATIONS)]
    max_iterations: u32,
}

/// Output format of `troupe flow graph`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// graph.json.
    Json,
}

/// A failure with its exit code and what to print.
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    fn input(message: impl Into<String>) -> Fail {
        Fail {
            code: 2,
            message: message.into(),
        }
    }
    fn io(message: impl Into<String>) -> Fail {
        Fail {
            code: 1,
            message: message.into(),
        }
    }
}

impl From<FlowError> for Fail {
    fn from(e: FlowError) -> Fail {
        let code = match e {
            FlowError::Spawn { .. } | FlowError::FrontEnd { .. } | FlowError::BadIr { .. } => 1,
            _ => 2,
        };
        Fail {
            code,
            message: e.to_string(),
        }
    }
}

impl From<manifests::ManifestError> for Fail {
    fn from(e: manifests::ManifestError) -> Fail {
        use manifests::ManifestError as E;
        let code = match e {
            E::Resiliency { .. } | E::Render(_) => 1,
            _ => 2,
        };
        Fail {
            code,
            message: e.to_string(),
        }
    }
}

/// Runs a `troupe flow` subcommand; the exit code.
pub fn run(command: FlowCommand) -> u8 {
    let (verb, result) = match command {
        FlowCommand::Compile {
            source,
            out,
            image,
            router_image,
            handlers,
            max_replicas,
        } => (
            "compile",
            parse_handlers(&handlers).and_then(|handlers| {
                let opts = manifests::ManifestOptions {
                    image,
                    router_image,
                    handlers,
                    max_replicas,
                };
                compile(&source, out.as_deref(), &opts)
            }),
        ),
        FlowCommand::Validate { source } => ("validate", validate(&source)),
        FlowCommand::Graph { source, format } => ("graph", graph(&source, format)),
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            // Compile errors are printed bare, `file:line:col: message`, for editors.
            if f.message.lines().all(is_located) {
                eprintln!("{}", f.message);
            } else {
                eprintln!("troupe flow {verb}: {}", f.message);
            }
            f.code
        }
    }
}

/// `FILE.py:line:col: message` (a compile diagnostic).
fn is_located(line: &str) -> bool {
    let mut parts = line.splitn(4, ':');
    let (Some(_), Some(l), Some(c), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok()
}

/// Splits `FILE.py[:FUNC]`: the part after the last `:` is a function when it is a Python
/// identifier.
fn split_target(target: &str) -> (PathBuf, Option<String>) {
    if let Some((file, func)) = target.rsplit_once(':') {
        let ident = func
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && func.chars().all(|c| c.is_alphanumeric() || c == '_');
        if ident && !file.is_empty() {
            return (PathBuf::from(file), Some(func.to_owned()));
        }
    }
    (PathBuf::from(target), None)
}

/// A compiled flow and its graph (with its `@flow` groups).
struct Compiled {
    flow: Flow,
    graph: outputs::Graph,
}

fn load(source: &Source) -> Result<Vec<Compiled>, Fail> {
    let (file, func) = split_target(&source.target);
    if !file.is_file() {
        return Err(Fail::input(format!(
            "{} is not a file: give the flow source as FILE.py or FILE.py:FUNC",
            file.display()
        )));
    }
    let opts = CompileOptions {
        python: source.python.clone(),
        max_iterations: source.max_iterations,
        native: !source.no_native_routers,
    };
    // compile_file's steps, keeping the IR: the graph's groups come from it.
    let module = troupe_flow::frontend::run(&file, func.as_deref(), &opts.python)?;
    let flows = troupe_flow::compile_ir(&module, &opts)?;
    if let Some(name) = &func {
        if !flows.iter().any(|f| f.name == *name) {
            return Err(FlowError::NoSuchFlow {
                file: file.clone(),
                name: name.clone(),
            }
            .into());
        }
    }
    if flows.is_empty() {
        return Err(Fail::input(format!(
            "{} holds no flow: decorate a function with @flow, or give it one parameter named p, payload or state",
            file.display()
        )));
    }
    Ok(flows
        .into_iter()
        .filter(|f| func.as_deref().is_none_or(|name| f.name == name))
        .map(|flow| {
            let mut graph = outputs::graph(&flow);
            if let Some(def) = module.flows.iter().find(|d| d.name == flow.name) {
                outputs::add_groups(&mut graph, &flow, def);
            }
            Compiled { flow, graph }
        })
        .collect())
}

fn parse_handlers(flags: &[String]) -> Result<BTreeMap<String, String>, Fail> {
    flags
        .iter()
        .map(|f| match f.split_once('=') {
            Some((a, h)) if !a.trim().is_empty() && h.contains('.') => {
                Ok((a.trim().to_owned(), h.trim().to_owned()))
            }
            _ => Err(Fail::input(format!(
                "--handler '{f}' is not ACTOR=MODULE.FUNCTION (e.g. --handler web-search=tools.search.run)"
            ))),
        })
        .collect()
}

/// One line about a compiled flow: its entry and what runs where.
fn summary(f: &Flow) -> String {
    let routers = f.routers().count();
    let python = f.python_routers().count();
    let fanins = f.fanins().count();
    let mut s = format!(
        "{}: entry {}, {} actors, {routers} routers ({} native, {python} Python)",
        f.name,
        f.entry(),
        f.actors().count(),
        routers - python,
    );
    if fanins > 0 {
        s.push_str(&format!(", {fanins} fan-in"));
    }
    s
}

fn validate(source: &Source) -> Result<(), Fail> {
    for Compiled { flow: f, .. } in load(source)? {
        crate::stdout_line(&format!("ok {}", summary(&f)));
        for r in f.python_routers() {
            crate::stdout_line(&format!(
                "  {} (line {}) runs as a Python router: {}",
                r.name,
                r.line,
                r.why.as_deref().unwrap_or("native routers are off")
            ));
        }
    }
    Ok(())
}

fn graph(source: &Source, format: GraphFormat) -> Result<(), Fail> {
    let flows = load(source)?;
    let [one] = flows.as_slice() else {
        let names: Vec<&str> = flows.iter().map(|c| c.flow.name.as_str()).collect();
        return Err(Fail::input(format!(
            "{} holds flows {}: name one, e.g. {}:{}",
            split_target(&source.target).0.display(),
            names.join(", "),
            split_target(&source.target).0.display(),
            names.first().copied().unwrap_or("FUNC")
        )));
    };
    let g = &one.graph;
    let text = match format {
        GraphFormat::Mermaid => outputs::mermaid(g),
        GraphFormat::Dot => outputs::dot(g),
        GraphFormat::Json => g.to_json(),
    };
    crate::stdout_line(text.trim_end());
    Ok(())
}

fn compile(
    source: &Source,
    out: Option<&Path>,
    opts: &manifests::ManifestOptions,
) -> Result<(), Fail> {
    let flows = load(source)?;
    // Everything is built before anything is written: a flow whose manifests fail leaves
    // no half-written folder behind.
    let mut plans = Vec::with_capacity(flows.len());
    for Compiled { flow: f, graph } in &flows {
        let rendered = manifests::manifests(f, opts)?;
        let files = rendered.files().map_err(|e| Fail::io(e.to_string()))?;
        let (compiled_dir, base_dir) = match out {
            Some(dir) => (dir.join(&f.name), dir.join(&f.name).join("base")),
            None => (
                Path::new(COMPILED_DIR).join(&f.name),
                Path::new(MANIFESTS_DIR).join(&f.name).join("base"),
            ),
        };
        plans.push((f, graph, compiled_dir, base_dir, files));
    }
    for (f, graph, compiled_dir, base_dir, files) in plans {
        write_all(
            &compiled_dir,
            outputs::compiled_files(f, graph)
                .into_iter()
                .map(|(n, t)| (n.to_owned(), t)),
        )?;
        clear_previous(&base_dir)?;
        let n = files.len();
        write_all(&base_dir, files.into_iter())?;
        crate::stdout_line(&summary(f));
        crate::stdout_line(&format!(
            "  {} (routers.py, graph.json, flow.mmd, flow.dot, program.json)\n  {} ({n} files)",
            compiled_dir.display(),
            base_dir.display()
        ));
    }
    Ok(())
}

fn write_all(dir: &Path, files: impl Iterator<Item = (String, String)>) -> Result<(), Fail> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Fail::io(format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| Fail::io(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Removes the files the previous compile listed in `base/kustomization.yaml`, so a router
/// that is gone (now native, or removed from the source) leaves no stale manifest.
fn clear_previous(base: &Path) -> Result<(), Fail> {
    let k = base.join("kustomization.yaml");
    let Ok(text) = std::fs::read_to_string(&k) else {
        return Ok(());
    };
    let listed: Vec<String> = serde_yaml_resources(&text);
    for name in listed {
        // Only plain file names this command writes: never a path out of the folder.
        if name.contains('/') || name.contains('\\') || !name.ends_with(".yaml") {
            continue;
        }
        let p = base.join(&name);
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Fail::io(format!("cannot remove {}: {e}", p.display())));
            }
        }
    }
    Ok(())
}

/// The `resources:` entries of a kustomization (none when it does not parse).
fn serde_yaml_resources(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Kustomization {
        #[serde(default)]
        resources: Vec<String>,
    }
    serde_yaml::from_str::<Kustomization>(text)
        .map(|k| k.resources)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_a_function_name_only() {
        assert_eq!(split_target("flows.py"), (PathBuf::from("flows.py"), None));
        assert_eq!(
            split_target("a/flows.py:research"),
            (PathBuf::from("a/flows.py"), Some("research".into()))
        );
        assert_eq!(split_target("C:flows.py").1, None);
        assert_eq!(split_target(":f"), (PathBuf::from(":f"), None));
    }

    #[test]
    fn diagnostics_are_recognised() {
        assert!(is_located(
            "flows.py:7:5: for loops cannot be compiled: use ..."
        ));
        assert!(!is_located("could not run the flow front end: x"));
    }

    #[test]
    fn kustomization_resources_are_read_back() {
        let k = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- configmap-a.yaml\n- asyncactor-b.yaml\n";
        assert_eq!(
            serde_yaml_resources(k),
            ["configmap-a.yaml", "asyncactor-b.yaml"]
        );
    }
}
