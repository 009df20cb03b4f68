//! Checks, before anything starts, that every actor's handler can be imported, so a
//! typo or a missing dependency is a startup error naming the field and line rather than
//! a crash loop later (a `minReplicaCount: 0` actor would otherwise fail only on its
//! first message).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::config::{ActorConfig, MeshConfig};
use crate::MeshError;

/// Marker before the JSON verdict on the checker's stdout (module imports may print).
const MARKER: &str = "@@TROUPE-CHECK@@";
/// Upper bound for importing a handler module (imports may load models).
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

const CHECK_PY: &str = r#"
import json, sys, traceback
sys.path.insert(0, sys.argv[1])
import troupe_runtime as rt
spec = sys.argv[2]
check = getattr(rt, "check_handler", None) or rt.load_handler
try:
    check(spec)
    verdict = None
except rt.HandlerLoadError as e:
    verdict = str(e)
    if e.cause is not None:
        verdict += "\n" + "".join(traceback.format_exception(type(e.cause), e.cause, e.cause.__traceback__)).rstrip()
except BaseException as e:
    verdict = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
sys.stdout.write("\n" + sys.argv[3] + json.dumps(verdict) + "\n")
"#;

/// Imports every actor's handler in a fresh interpreter (with the actor's env), in
/// parallel. All failures are reported together.
pub async fn check_handlers(config: &MeshConfig, runtime_file: &Path) -> Result<(), MeshError> {
    let runtime_dir = runtime_file.parent().unwrap_or(Path::new("."));
    let checks = config
        .actors
        .iter()
        .filter(|a| a.crew.is_none())
        .map(|a| check_one(config, a, runtime_dir));
    let results = futures::future::join_all(checks).await;
    let errors: Vec<String> = results.into_iter().flatten().collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(MeshError::Handler(errors.join("\n")))
    }
}

fn handler_line(config: &MeshConfig, actor: &ActorConfig) -> usize {
    let text = std::fs::read_to_string(&config.file).unwrap_or_default();
    text.lines()
        .enumerate()
        .skip(actor.line.saturating_sub(1))
        .find(|(_, l)| {
            l.trim_start()
                .trim_start_matches("- ")
                .starts_with("handler:")
        })
        .map_or(actor.line, |(i, _)| i + 1)
}

async fn check_one(config: &MeshConfig, actor: &ActorConfig, runtime_dir: &Path) -> Option<String> {
    let index = config
        .actors
        .iter()
        .position(|a| a.name == actor.name)
        .unwrap_or(0);
    let at = format!(
        "{}:{}: actors[{index}].handler",
        config.file.display(),
        handler_line(config, actor)
    );
    let mut cmd = Command::new(&actor.python);
    cmd.arg("-c")
        .arg(CHECK_PY)
        .arg(runtime_dir)
        .arg(&actor.handler)
        .arg(MARKER)
        .current_dir(&config.root)
        .envs(actor.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PYTHONPATH", python_path(&config.root, &config.state_dir))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let output = match tokio::time::timeout(CHECK_TIMEOUT, cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            return Some(format!(
            "{at}: cannot run the Python interpreter '{}': {e} (set `python:` in the mesh file)",
            actor.python
        ))
        }
        Err(_) => {
            return Some(format!(
                "{at}: importing '{}' took longer than {CHECK_TIMEOUT:?}",
                actor.handler
            ))
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let verdict = stdout
        .rsplit_once(MARKER)
        .and_then(|(_, v)| serde_json::from_str::<Value>(v.trim()).ok());
    match verdict {
        Some(Value::Null) => None,
        Some(Value::String(msg)) => Some(format!(
            "{at}: handler '{}' cannot be loaded:\n{}",
            actor.handler,
            indent(&msg)
        )),
        _ => Some(format!(
            "{at}: handler '{}' cannot be loaded; the interpreter exited with {}:\n{}",
            actor.handler,
            output.status,
            indent(String::from_utf8_lossy(&output.stderr).trim_end())
        )),
    }
}

/// The mesh folder, then `<state>/flows` (the generated flow routers), as runtimes see them.
fn python_path(root: &Path, state_dir: &Path) -> std::ffi::OsString {
    let mut p = root.as_os_str().to_owned();
    p.push(":");
    p.push(state_dir.join("flows"));
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|v| !v.is_empty()) {
        p.push(":");
        p.push(existing);
    }
    p
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
