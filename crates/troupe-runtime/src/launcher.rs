//! Starting, supervising and stopping Python runtime processes.
//!
//! The child is killed when its [`RuntimeProcess`] is dropped (`kill_on_drop`). It is
//! not killed if the parent dies abruptly (SIGKILL): `PR_SET_PDEATHSIG` needs a
//! `pre_exec` hook, which is `unsafe`, and the workspace forbids unsafe code.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::RUNTIME_PY;

/// File name the runtime is written to by [`write_runtime_file`].
pub const RUNTIME_FILE_NAME: &str = "troupe_runtime.py";
/// Readiness marker the runtime writes into its socket directory (protocol.md §7).
pub const READY_FILE_NAME: &str = "runtime-ready";
/// Default socket file name (`ASYA_SOCKET_NAME`).
pub const DEFAULT_SOCKET_NAME: &str = "asya-runtime.sock";

/// Exit code of a runtime that exits after a MemoryError under `resources.limits.memory`
/// (`EXIT_OVER_MEMORY` in the Python runtime).
pub const EXIT_OVER_MEMORY: i32 = 75;

/// Readiness poll period: much shorter than Asya's 500 ms because local cold start
/// latency is visible to the user.
const READY_POLL: Duration = Duration::from_millis(20);
/// Connect timeout for the readiness dial (protocol.md §7).
const READY_DIAL: Duration = Duration::from_secs(2);
/// Stderr lines kept for error reports; enough for a typical Python traceback.
const TAIL_LINES: usize = 40;
/// Longest stderr line kept in the tail, in bytes.
const TAIL_LINE_MAX: usize = 4096;
/// How long to wait for the stderr pipe to drain after the process exited.
const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Why a runtime process could not be started, readied or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The runtime file could not be written.
    #[error("cannot write the Python runtime to {path}: {source}")]
    WriteRuntime {
        /// Target path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The socket directory could not be created or cleaned.
    #[error("cannot prepare the runtime socket directory {path}: {source}")]
    SocketDir {
        /// Directory or file involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A `python_path` entry cannot be put into `PYTHONPATH`.
    #[error("cannot build PYTHONPATH (entries must not contain ':'): {0}")]
    PythonPath(#[from] std::env::JoinPathsError),
    /// The interpreter could not be started.
    #[error(
        "cannot start Python interpreter `{python}`: {source}; install Python 3 or point \
         ASYA_PYTHONEXECUTABLE / pythonExecutable at an interpreter"
    )]
    Spawn {
        /// The interpreter command.
        python: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The runtime exited before it became ready (typically the handler failed to import).
    #[error(
        "the Python runtime exited before it was ready ({}); last lines of its stderr:\n{stderr_tail}",
        describe_code(*.code)
    )]
    Exited {
        /// Exit code, `None` if killed by a signal.
        code: Option<i32>,
        /// The last lines the process wrote to stderr.
        stderr_tail: String,
    },
    /// No ready file and connectable socket appeared in time.
    #[error(
        "the Python runtime was not ready after {timeout:?} (no `{READY_FILE_NAME}` file or \
         socket not connectable); last lines of its stderr:\n{stderr_tail}"
    )]
    ReadyTimeout {
        /// The timeout that elapsed.
        timeout: Duration,
        /// The last lines the process wrote to stderr.
        stderr_tail: String,
    },
    /// Waiting for the process failed.
    #[error("cannot wait for the Python runtime process: {0}")]
    Wait(#[source] io::Error),
    /// A signal could not be delivered.
    #[error("cannot send {signal} to the Python runtime (pid {pid}): {source}")]
    Signal {
        /// The signal.
        signal: Signal,
        /// Target pid.
        pid: u32,
        /// Underlying error.
        source: nix::errno::Errno,
    },
}

impl LaunchError {
    /// One line for `troupe status` and task events: for a runtime that died starting,
    /// its fatal message and the last line of its traceback, else the whole message.
    pub fn summary(&self) -> String {
        let (lead, tail) = match self {
            LaunchError::Exited { code, stderr_tail } => (
                format!(
                    "the runtime exited while starting ({})",
                    describe_code(*code)
                ),
                stderr_tail,
            ),
            LaunchError::ReadyTimeout {
                timeout,
                stderr_tail,
            } => (
                format!("the runtime was not ready after {timeout:?}"),
                stderr_tail,
            ),
            other => return other.to_string(),
        };
        let fatal = tail
            .lines()
            .find_map(|l| l.split_once("FATAL: ").map(|(_, m)| m.trim()));
        let last = tail
            .lines()
            .rev()
            .map(str::trim_end)
            .find(|l| !l.is_empty() && !l.starts_with(' '));
        let mut out = lead;
        for part in [fatal, last].into_iter().flatten() {
            if !out.contains(part) {
                out.push_str(": ");
                out.push_str(part);
            }
        }
        out
    }
}

fn describe_code(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_owned(),
    }
}

/// How to start one Python runtime process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeSpec {
    /// Interpreter command, e.g. `python3`.
    pub python: String,
    /// `ASYA_HANDLER`: `module.func` or `module.Class.method`.
    pub handler: String,
    /// `ASYA_SOCKET_DIR`: where the socket and ready file live.
    pub socket_dir: PathBuf,
    /// The runtime script (see [`write_runtime_file`]).
    pub runtime_file: PathBuf,
    /// Extra environment (user env); `ASYA_HANDLER`/`ASYA_SOCKET_DIR` here are overridden.
    pub env: Vec<(String, String)>,
    /// Directories prepended to `PYTHONPATH` (the user's code).
    pub python_path: Vec<PathBuf>,
    /// Working directory; inherited when `None`.
    pub cwd: Option<PathBuf>,
}

impl RuntimeSpec {
    /// The socket the runtime will bind (honours `ASYA_SOCKET_NAME` in `env`).
    pub fn socket_path(&self) -> PathBuf {
        let name = self
            .env
            .iter()
            .rev()
            .find(|(k, v)| k == "ASYA_SOCKET_NAME" && !v.is_empty())
            .map_or(DEFAULT_SOCKET_NAME, |(_, v)| v.as_str());
        self.socket_dir.join(name)
    }

    /// The readiness marker file.
    pub fn ready_path(&self) -> PathBuf {
        self.socket_dir.join(READY_FILE_NAME)
    }

    /// `PYTHONPATH` for the child: `python_path`, then the user's or inherited value.
    fn pythonpath(&self) -> Result<Option<OsString>, LaunchError> {
        let existing: Option<OsString> =
            match self.env.iter().rev().find(|(k, _)| k == "PYTHONPATH") {
                Some((_, v)) => Some(v.into()),
                None => std::env::var_os("PYTHONPATH"),
            };
        if self.python_path.is_empty() {
            return Ok(existing);
        }
        let mut parts: Vec<PathBuf> = self.python_path.clone();
        if let Some(existing) = &existing {
            parts.extend(std::env::split_paths(existing).filter(|p| !p.as_os_str().is_empty()));
        }
        Ok(Some(std::env::join_paths(parts)?))
    }
}

/// Writes [`RUNTIME_PY`] to `dir/troupe_runtime.py` (atomically, and only if the file
/// differs) and returns its path.
pub fn write_runtime_file(dir: &Path) -> Result<PathBuf, LaunchError> {
    let path = dir.join(RUNTIME_FILE_NAME);
    let err = |source| LaunchError::WriteRuntime {
        path: path.clone(),
        source,
    };
    if std::fs::read(&path).is_ok_and(|existing| existing == RUNTIME_PY.as_bytes()) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    // Written aside and renamed so a runtime starting concurrently never sees half a file.
    let tmp = dir.join(format!(".{RUNTIME_FILE_NAME}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, RUNTIME_PY).map_err(err)?;
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(path)
}

type Tail = Arc<Mutex<VecDeque<String>>>;

/// A running (or exited) Python runtime process.
#[derive(Debug)]
pub struct RuntimeProcess {
    child: Child,
    pid: u32,
    socket_path: PathBuf,
    ready_path: PathBuf,
    tail: Tail,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl RuntimeProcess {
    /// Starts the runtime described by `spec` (after removing a stale ready file).
    /// Must be called inside a tokio runtime. Pass the spec by value or by reference.
    pub fn spawn(spec: impl Borrow<RuntimeSpec>) -> Result<Self, LaunchError> {
        let spec = spec.borrow();
        std::fs::create_dir_all(&spec.socket_dir).map_err(|source| LaunchError::SocketDir {
            path: spec.socket_dir.clone(),
            source,
        })?;
        let ready_path = spec.ready_path();
        match std::fs::remove_file(&ready_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(LaunchError::SocketDir {
                    path: ready_path,
                    source,
                })
            }
        }

        let mut cmd = Command::new(&spec.python);
        cmd.arg(&spec.runtime_file)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ASYA_HANDLER", &spec.handler)
            .env("ASYA_SOCKET_DIR", &spec.socket_dir)
            .env("PYTHONUNBUFFERED", "1")
            // Lines are re-logged here with a timestamp: the runtime leaves its own out.
            .env("TROUPE_LOG_RELAY", "1")
            // The runtime exits when this process dies, even by SIGKILL.
            .env("TROUPE_PARENT_PID", std::process::id().to_string())
            // Its own process group: a terminal's Ctrl-C reaches only `troupe up`, which
            // lets in-flight messages finish before it stops the runtimes itself.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(pythonpath) = spec.pythonpath()? {
            cmd.env("PYTHONPATH", pythonpath);
        }
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        let spawn_err = |source| LaunchError::Spawn {
            python: spec.python.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id().ok_or_else(|| {
            spawn_err(io::Error::other(
                "the process exited before its pid was read",
            ))
        })?;

        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let handler: Arc<str> = Arc::from(spec.handler.as_str());
        let mut readers = Vec::with_capacity(2);
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(forward_lines(
                stderr,
                "stderr",
                handler.clone(),
                pid,
                Some(tail.clone()),
            )));
        }
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(forward_lines(
                stdout, "stdout", handler, pid, None,
            )));
        }
        Ok(Self {
            child,
            pid,
            socket_path: spec.socket_path(),
            ready_path,
            tail,
            readers,
            status: None,
        })
    }

    /// Waits until the ready file exists and the socket accepts connections.
    /// Fails with [`LaunchError::Exited`] (with the stderr tail) if the process exits first.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                self.drain_output().await;
                return Err(LaunchError::Exited {
                    code: status.code(),
                    stderr_tail: self.stderr_tail(),
                });
            }
            if self.ready_file_present() && self.socket_connectable().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::ReadyTimeout {
                    timeout,
                    stderr_tail: self.stderr_tail(),
                });
            }
            tokio::time::sleep_until(deadline.min(Instant::now() + READY_POLL)).await;
        }
    }

    fn ready_file_present(&self) -> bool {
        std::fs::metadata(&self.ready_path).is_ok()
    }

    async fn socket_connectable(&self) -> bool {
        let is_socket =
            std::fs::metadata(&self.socket_path).is_ok_and(|m| m.file_type().is_socket());
        is_socket
            && matches!(
                tokio::time::timeout(READY_DIAL, UnixStream::connect(&self.socket_path)).await,
                Ok(Ok(_))
            )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The runtime's socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The runtime's ready file (deleted by the sidecar after a runtime timeout, §10).
    pub fn ready_path(&self) -> &Path {
        &self.ready_path
    }

    /// The last ~40 lines the process wrote to stderr, newline-separated.
    pub fn stderr_tail(&self) -> String {
        let tail = lock(&self.tail);
        let mut out = String::new();
        for (i, line) in tail.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(line);
        }
        out
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, LaunchError> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait().await.map_err(LaunchError::Wait)?;
        self.status = Some(status);
        self.drain_output().await;
        Ok(status)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>, LaunchError> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(LaunchError::Wait)?;
        }
        Ok(self.status)
    }

    /// Sends SIGTERM, waits up to `grace`, then SIGKILLs; returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, LaunchError> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        // Not reaped yet (try_status said so), so the pid cannot have been reused.
        self.signal(Signal::SIGTERM)?;
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    target: "troupe::runtime",
                    pid = self.pid,
                    "runtime did not exit within {grace:?} of SIGTERM; sending SIGKILL"
                );
                self.kill()?;
                self.wait().await
            }
        }
    }

    /// Sends SIGKILL (without waiting; use [`RuntimeProcess::wait`] to reap).
    pub fn kill(&mut self) -> Result<(), LaunchError> {
        if self.try_status()?.is_some() {
            return Ok(());
        }
        self.signal(Signal::SIGKILL)
    }

    fn signal(&self, sig: Signal) -> Result<(), LaunchError> {
        let err = |source| LaunchError::Signal {
            signal: sig,
            pid: self.pid,
            source,
        };
        let raw = i32::try_from(self.pid).map_err(|_| err(nix::errno::Errno::ESRCH))?;
        match signal::kill(Pid::from_raw(raw), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    /// Lets the output forwarders reach EOF so the stderr tail is complete. Bounded,
    /// because a grandchild may still hold the pipe open.
    async fn drain_output(&mut self) {
        for reader in &mut self.readers {
            let _ = tokio::time::timeout(DRAIN_WAIT, reader).await;
        }
        self.readers.clear();
    }
}

fn lock(tail: &Tail) -> MutexGuard<'_, VecDeque<String>> {
    tail.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forwards each output line to `tracing`, keeping the last lines in `tail`.
async fn forward_lines(
    pipe: impl AsyncRead + Unpin,
    stream: &'static str,
    handler: Arc<str>,
    pid: u32,
    tail: Option<Tail>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    // Lines without a level (traceback lines, prints) belong to the record before them.
    let mut level = Level::Info;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let end = line.strip_suffix(b"\n").map_or(line.len(), <[u8]>::len);
        let end = if end > 0 && line[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        let text = String::from_utf8_lossy(&line[..end]);
        let (found, message) = split_level(&text);
        if stream == "stdout" {
            level = found.unwrap_or(Level::Info);
        } else if let Some(found) = found {
            level = found;
        }
        match level {
            Level::Debug => {
                tracing::debug!(target: "troupe::runtime", handler = %handler, pid, stream, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "troupe::runtime", handler = %handler, pid, stream, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "troupe::runtime", handler = %handler, pid, stream, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "troupe::runtime", handler = %handler, pid, stream, "{message}")
            }
        }
        if let Some(tail) = &tail {
            let kept = truncate_at_char(&text, TAIL_LINE_MAX);
            let mut tail = lock(tail);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(kept);
        }
    }
}

/// The level a runtime log line is relayed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Splits a runtime line into its level and the rest, dropping a leading timestamp (a
/// runtime not started by this launcher, such as Asya's, still writes its own, and the
/// relayed line gets one already). Python's level names and a fatal start error are
/// recognised; `None` when the line names no level.
fn split_level(line: &str) -> (Option<Level>, &str) {
    let mut rest = line;
    let first = rest.split(' ').next().unwrap_or_default();
    let is_date = first.len() >= 10
        && first.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && first.as_bytes()[4] == b'-';
    if is_date {
        rest = rest[first.len()..].trim_start();
        // `2026-01-01 10:00:00,123`: the time is a second word.
        let second = rest.split(' ').next().unwrap_or_default();
        if second.as_bytes().first().is_some_and(u8::is_ascii_digit) && second.contains(':') {
            rest = rest[second.len()..].trim_start();
        }
    }
    if rest.starts_with("troupe-runtime: FATAL") || rest.starts_with("Traceback (most recent") {
        return (Some(Level::Error), rest);
    }
    let word = rest.split([' ', ':']).next().unwrap_or_default();
    let level = match word.trim_start_matches('[').trim_end_matches(']') {
        "DEBUG" | "NOTSET" => Level::Debug,
        "INFO" => Level::Info,
        "WARNING" | "WARN" => Level::Warn,
        "ERROR" | "CRITICAL" | "FATAL" => Level::Error,
        _ => return (None, if is_date { rest } else { line }),
    };
    (
        Some(level),
        rest[word.len()..].trim_start_matches(':').trim_start(),
    )
}

fn truncate_at_char(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec() -> RuntimeSpec {
        RuntimeSpec {
            python: "python3".into(),
            handler: "m.f".into(),
            socket_dir: "/tmp/x".into(),
            runtime_file: "/tmp/r.py".into(),
            env: vec![],
            python_path: vec![],
            cwd: None,
        }
    }

    #[test]
    fn socket_path_honours_socket_name() {
        let mut s = spec();
        assert_eq!(s.socket_path(), Path::new("/tmp/x/asya-runtime.sock"));
        s.env.push(("ASYA_SOCKET_NAME".into(), "other.sock".into()));
        assert_eq!(s.socket_path(), Path::new("/tmp/x/other.sock"));
        assert_eq!(s.ready_path(), Path::new("/tmp/x/runtime-ready"));
    }

    #[test]
    fn pythonpath_prepends_to_user_value() {
        let mut s = spec();
        s.python_path = vec!["/code/a".into(), "/code/b".into()];
        s.env.push(("PYTHONPATH".into(), "/user:/more".into()));
        assert_eq!(
            s.pythonpath().unwrap().unwrap(),
            OsString::from("/code/a:/code/b:/user:/more")
        );
        s.python_path = vec!["/bad:path".into()];
        assert!(matches!(s.pythonpath(), Err(LaunchError::PythonPath(_))));
    }

    #[test]
    fn relayed_lines_keep_their_level_and_lose_their_timestamp() {
        assert_eq!(
            split_level("2026-12-07T10:00:00 ERROR troupe.runtime: task t1: handler raised"),
            (
                Some(Level::Error),
                "troupe.runtime: task t1: handler raised"
            )
        );
        assert_eq!(
            split_level("2026-12-07 10:00:00,123 WARNING asya: slow"),
            (Some(Level::Warn), "asya: slow")
        );
        assert_eq!(
            split_level("DEBUG troupe.runtime: x"),
            (Some(Level::Debug), "troupe.runtime: x")
        );
        assert_eq!(
            split_level("troupe-runtime: FATAL: handler 'h.C.run' failed"),
            (
                Some(Level::Error),
                "troupe-runtime: FATAL: handler 'h.C.run' failed"
            )
        );
        assert_eq!(
            split_level("  File \"h.py\", line 3"),
            (None, "  File \"h.py\", line 3")
        );
        assert_eq!(split_level("hello from print"), (None, "hello from print"));
        assert_eq!(split_level("2026-12-07T10:00:00 plain"), (None, "plain"));
    }

    #[test]
    fn start_error_summary_names_the_fatal_message_and_the_traceback_end() {
        let e = LaunchError::Exited {
            code: Some(1),
            stderr_tail: "troupe-runtime: FATAL: handler 'h.C.run': instantiating h.C() failed: ValueError: no model\n\
                Traceback (most recent call last):\n  File \"h.py\", line 3, in __init__\n    raise ValueError(\"no model\")\n\
                ValueError: no model"
                .into(),
        };
        assert_eq!(
            e.summary(),
            "the runtime exited while starting (exit code 1): handler 'h.C.run': instantiating h.C() failed: ValueError: no model"
        );
        let e = LaunchError::Exited {
            code: None,
            stderr_tail: "Traceback (most recent call last):\n  File \"x\"\nMemoryError".into(),
        };
        assert_eq!(
            e.summary(),
            "the runtime exited while starting (killed by a signal): MemoryError"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_at_char("héllo", 2), "h…");
        assert_eq!(truncate_at_char("abc", 3), "abc");
    }

    #[test]
    fn exited_message_names_code_and_stderr() {
        let e = LaunchError::Exited {
            code: Some(1),
            stderr_tail: "ModuleNotFoundError: No module named 'x'".into(),
        };
        let msg = e.to_string();
        assert!(
            msg.contains("exit code 1") && msg.contains("No module named 'x'"),
            "{msg}"
        );
        let e = LaunchError::Exited {
            code: None,
            stderr_tail: String::new(),
        };
        assert!(e.to_string().contains("killed by a signal"));
    }
}
