#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The launcher against small fake runtimes written in Python.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use troupe_runtime::launcher::{write_runtime_file, LaunchError, RuntimeProcess, RuntimeSpec};
use troupe_runtime::RUNTIME_PY;

const READY: Duration = Duration::from_secs(20);

fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Binds the socket, records its environment, writes the ready file, and on SIGTERM
/// leaves a marker and exits 0 (unless told to ignore SIGTERM).
const FAKE_RUNTIME: &str = r#"
import json, os, signal, socket, sys, time
d = os.environ["ASYA_SOCKET_DIR"]
path = os.path.join(d, os.environ.get("ASYA_SOCKET_NAME") or "asya-runtime.sock")
time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
if os.path.exists(path):
    os.unlink(path)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(8)
def on_term(*_):
    with open(os.path.join(d, "got-sigterm"), "w") as f:
        f.write("yes")
    sys.exit(0)
if os.environ.get("FAKE_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_term)
keys = ["ASYA_HANDLER", "ASYA_SOCKET_DIR", "PYTHONPATH", "PYTHONUNBUFFERED", "USER_VAR"]
with open(os.path.join(d, "env.json"), "w") as f:
    json.dump({"env": {k: os.environ.get(k) for k in keys}, "cwd": os.getcwd()}, f)
print("fake runtime listening", file=sys.stderr, flush=True)
with open(os.path.join(d, "runtime-ready"), "w") as f:
    f.write("ready")
while True:
    time.sleep(0.05)
"#;

/// Fails like a handler with a broken import does.
const FAILING_RUNTIME: &str = r#"
import sys
for i in range(60):
    print("noise line %d" % i, file=sys.stderr)
import nosuch_user_module_xyz
"#;

fn spec(dir: &Path, script: &str, env: Vec<(String, String)>) -> RuntimeSpec {
    let runtime_file = dir.join("fake_runtime.py");
    std::fs::write(&runtime_file, script).unwrap();
    RuntimeSpec {
        python: "python3".into(),
        handler: "handlers.echo".into(),
        socket_dir: dir.join("sock"),
        runtime_file,
        env,
        python_path: vec![PathBuf::from("/opt/code"), PathBuf::from("/opt/lib")],
        cwd: Some(dir.to_path_buf()),
    }
}

#[tokio::test]
async fn spawn_sets_environment_waits_for_ready_and_terminates_with_sigterm() {
    if !have_python() {
        eprintln!("python3 not found; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("USER_VAR".to_owned(), "42".to_owned()),
        ("ASYA_HANDLER".to_owned(), "user.cannot.override".to_owned()),
        ("PYTHONPATH".to_owned(), "/user/path".to_owned()),
        ("FAKE_DELAY".to_owned(), "0.2".to_owned()),
    ];
    let spec = spec(dir.path(), FAKE_RUNTIME, env);
    let sock_dir = spec.socket_dir.clone();
    std::fs::create_dir_all(&sock_dir).unwrap();
    std::fs::write(sock_dir.join("runtime-ready"), "stale").unwrap();

    let mut proc = RuntimeProcess::spawn(&spec).unwrap();
    assert!(
        !sock_dir.join("runtime-ready").exists(),
        "a stale ready file is removed before the runtime starts"
    );
    assert!(proc.pid() > 0);
    assert_eq!(proc.socket_path(), sock_dir.join("asya-runtime.sock"));
    proc.wait_ready(READY).await.unwrap();
    assert!(tokio::net::UnixStream::connect(proc.socket_path())
        .await
        .is_ok());
    assert!(proc.try_status().unwrap().is_none());

    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sock_dir.join("env.json")).unwrap()).unwrap();
    let env = &recorded["env"];
    assert_eq!(env["ASYA_HANDLER"], "handlers.echo");
    assert_eq!(env["ASYA_SOCKET_DIR"], sock_dir.to_str().unwrap());
    assert_eq!(env["PYTHONPATH"], "/opt/code:/opt/lib:/user/path");
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    assert_eq!(env["USER_VAR"], "42");
    assert_eq!(
        Path::new(recorded["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        dir.path().canonicalize().unwrap()
    );
    // Stderr lines are collected as they are written.
    for _ in 0..100 {
        if proc.stderr_tail().contains("fake runtime listening") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proc.stderr_tail(), "fake runtime listening");

    let status = proc.terminate(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the SIGTERM handler ran and exited cleanly"
    );
    assert_eq!(
        std::fs::read_to_string(sock_dir.join("got-sigterm")).unwrap(),
        "yes"
    );
    assert_eq!(proc.wait().await.unwrap().code(), Some(0));
    assert_eq!(
        proc.terminate(Duration::from_secs(1)).await.unwrap().code(),
        Some(0)
    );
}

#[tokio::test]
async fn terminate_escalates_to_sigkill_after_grace() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("FAKE_IGNORE_TERM".to_owned(), "1".to_owned())];
    let mut proc = RuntimeProcess::spawn(spec(dir.path(), FAKE_RUNTIME, env)).unwrap();
    proc.wait_ready(READY).await.unwrap();
    let started = std::time::Instant::now();
    let status = proc.terminate(Duration::from_millis(300)).await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn kill_sends_sigkill() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = RuntimeProcess::spawn(spec(dir.path(), FAKE_RUNTIME, vec![])).unwrap();
    proc.wait_ready(READY).await.unwrap();
    proc.kill().unwrap();
    assert_eq!(proc.wait().await.unwrap().signal(), Some(9));
    proc.kill().unwrap(); // already dead: a no-op
}

#[tokio::test]
async fn exit_before_ready_reports_the_python_error() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proc = RuntimeProcess::spawn(spec(dir.path(), FAILING_RUNTIME, vec![])).unwrap();
    let err = proc.wait_ready(READY).await.unwrap_err();
    let LaunchError::Exited { code, stderr_tail } = &err else {
        panic!("expected Exited, got {err}");
    };
    assert_eq!(*code, Some(1));
    assert!(
        stderr_tail.contains("ModuleNotFoundError: No module named 'nosuch_user_module_xyz'"),
        "{stderr_tail}"
    );
    assert!(stderr_tail.contains("Traceback"), "{stderr_tail}");
    let lines = stderr_tail.lines().count();
    assert!(lines <= 40, "tail is bounded, got {lines} lines");
    assert!(
        !stderr_tail.contains("noise line 0\n"),
        "old lines were dropped"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("exit code 1") && msg.contains("nosuch_user_module_xyz"),
        "{msg}"
    );
}

#[tokio::test]
async fn ready_timeout_when_no_ready_file_appears() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script =
        "import sys, time\nprint('loading forever', file=sys.stderr, flush=True)\ntime.sleep(60)\n";
    let mut proc = RuntimeProcess::spawn(spec(dir.path(), script, vec![])).unwrap();
    // Long enough for a loaded machine to start Python and print the line.
    let err = proc.wait_ready(Duration::from_secs(3)).await.unwrap_err();
    assert!(matches!(&err, LaunchError::ReadyTimeout { .. }), "{err}");
    assert!(err.to_string().contains("loading forever"), "{err}");
    proc.kill().unwrap();
}

#[tokio::test]
async fn missing_interpreter_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = spec(dir.path(), FAKE_RUNTIME, vec![]);
    spec.python = "/nonexistent/python3".into();
    let err = RuntimeProcess::spawn(spec).unwrap_err();
    assert!(matches!(&err, LaunchError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/python3"), "{err}");
}

#[test]
fn runtime_file_is_written_only_when_it_differs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested");
    let path = write_runtime_file(&target).unwrap();
    assert_eq!(path, target.join("troupe_runtime.py"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), RUNTIME_PY);
    let ino = std::fs::metadata(&path).unwrap().ino();

    write_runtime_file(&target).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().ino(),
        ino,
        "same content: untouched"
    );

    std::fs::write(&path, "old version").unwrap();
    write_runtime_file(&target).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), RUNTIME_PY);
    let leftovers: Vec<_> = std::fs::read_dir(&target).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left behind");
}
