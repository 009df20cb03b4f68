//! Real broker processes for the transports' tests: each [`Server`] is started by one of
//! `scripts/services/NAME.sh` in a temp dir on a free loopback port, and stopped when it
//! drops, or by a watchdog when the test process dies first (killed by a timeout, say),
//! so no server outlives the tests.
//!
//! A server that cannot run here (not installed, an emulator that will not start) makes
//! the test print why and pass, unless the service's `TROUPE_REQUIRE_*` variable is `1`
//! (CI), which makes that a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// How a server is stopped when its test process dies without dropping the [`Server`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watchdog {
    /// The script takes the owner's pid after DIR and watches it itself.
    OwnerArg,
    /// The script reads the owner's pid from this environment variable.
    OwnerEnv(&'static str),
    /// The script has no watchdog: a detached shell started here runs `NAME.sh stop DIR`
    /// once this process is gone.
    Detached,
}

/// One kind of test server: its script and what to say when it cannot run.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    /// The script in `scripts/services`, without `.sh`.
    pub script: &'static str,
    /// The server, as messages name it.
    pub what: &'static str,
    /// The variable that, set to `1`, turns "cannot run here" from a skip into a
    /// failure; `None`: the server is always required.
    pub require_var: Option<&'static str>,
    /// A shell test for whether the server is installed, and how to install it. When
    /// it passes, a start that fails is a failure; without one, any failed start means
    /// the server cannot run here.
    pub installed: Option<(&'static str, &'static str)>,
    /// How the server is stopped if the test process dies.
    pub watchdog: Watchdog,
}

/// nats-server with JetStream (`nats.sh`; extra ARGS are nats-server options).
pub const NATS: Service = Service {
    script: "nats",
    what: "nats-server",
    require_var: Some("TROUPE_REQUIRE_NATS"),
    installed: Some((
        "command -v nats-server || test -x /usr/sbin/nats-server",
        "apt-get install nats-server",
    )),
    watchdog: Watchdog::Detached,
};

/// redis-server (`redis.sh`; extra ARGS are redis-server options).
pub const REDIS: Service = Service {
    script: "redis",
    what: "redis-server",
    require_var: Some("TROUPE_REQUIRE_REDIS"),
    installed: Some(("command -v redis-server", "apt-get install redis-server")),
    watchdog: Watchdog::Detached,
};

/// moto's SQS endpoint (`sqs.sh`, which installs moto when it can).
pub const SQS: Service = Service {
    script: "sqs",
    what: "moto (SQS emulator)",
    require_var: Some("TROUPE_REQUIRE_SQS"),
    installed: None,
    watchdog: Watchdog::OwnerArg,
};

/// Google's Pub/Sub emulator (`pubsub.sh`).
pub const PUBSUB: Service = Service {
    script: "pubsub",
    what: "the Pub/Sub emulator",
    require_var: Some("TROUPE_REQUIRE_PUBSUB"),
    installed: None,
    watchdog: Watchdog::OwnerArg,
};

/// A RabbitMQ node (`rabbitmq.sh`); always required.
pub const RABBITMQ: Service = Service {
    script: "rabbitmq",
    what: "rabbitmq-server",
    require_var: None,
    installed: None,
    watchdog: Watchdog::OwnerEnv("RABBITMQ_TEST_OWNER_PID"),
};

/// `scripts/services/NAME.sh`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../../scripts/services/{name}.sh"))
}

/// A loopback port nothing listens on (it was free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

impl Service {
    fn required(&self) -> bool {
        self.require_var
            .is_none_or(|v| std::env::var(v).is_ok_and(|v| v == "1"))
    }

    /// Whether the server is installed; says why not (or fails, when required).
    fn available(&self) -> bool {
        let Some((test, hint)) = self.installed else {
            return true;
        };
        let found = Command::new("sh")
            .args(["-c", test])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            let why = format!("{} is not installed ({hint})", self.what);
            match self.require_var {
                Some(var) if self.required() => panic!("{var}=1 but {why}"),
                None => panic!("{why}"),
                Some(_) => eprintln!("skipped: {why}"),
            }
        }
        found
    }

    fn run(&self, action: &str, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(script(self.script)).arg(action).arg(dir).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output()
            .unwrap_or_else(|e| panic!("could not run {}.sh {action}: {e}", self.script))
    }
}

/// A server of this test process; stopped on drop.
pub struct Server {
    service: Service,
    /// The script's DIR: the server's data, logs and pid files.
    dir: tempfile::TempDir,
    /// The URL the script printed (without credentials).
    pub url: String,
}

impl Server {
    /// Starts a server with extra `args` for the script; `None` (after saying why) when
    /// it cannot run here.
    pub fn start(service: &Service, args: &[&str]) -> Option<Server> {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        Self::start_in(service, dir, args, &[])
    }

    /// Starts a server in `dir`, where the caller may have put files the `args` name
    /// (they live as long as the server), with `env` set for the script.
    pub fn start_in(
        service: &Service,
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Option<Server> {
        if !service.available() {
            return None;
        }
        let srv = dir.path();
        let owner = std::process::id().to_string();
        let mut args = args.to_vec();
        let mut env = env.to_vec();
        match service.watchdog {
            Watchdog::OwnerArg => args.insert(0, &owner),
            Watchdog::OwnerEnv(var) => env.push((var, &owner)),
            Watchdog::Detached => {}
        }
        let out = service.run("start", srv, &args, &env);
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).into_owned();
            match service.require_var {
                _ if service.installed.is_some() => {
                    panic!("{}.sh start failed: {why}", service.script)
                }
                Some(var) if service.required() => {
                    panic!("{var}=1 but {} could not start: {why}", service.what)
                }
                None => panic!("{}.sh start failed: {why}", service.script),
                Some(_) => {
                    eprintln!("SKIPPED: {} could not start: {why}", service.what);
                    return None;
                }
            }
        }
        if service.watchdog == Watchdog::Detached {
            detached_watchdog(service.script, srv);
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(Server {
            service: *service,
            dir,
            url,
        })
    }

    /// The server's directory (the script's DIR).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL with `userinfo` (`user:password`, `:password`) in it.
    pub fn url_with_userinfo(&self, userinfo: &str) -> String {
        self.url.replacen("://", &format!("://{userinfo}@"), 1)
    }

    /// Stops the server and starts it again on the same port (with the same data where
    /// the server keeps any); returns what the script printed (the URL, for most).
    pub fn restart(&self) -> String {
        let out = self.checked("restart");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server, keeping its port and data for [`Server::restart`] (also done
    /// on drop).
    pub fn stop(&self) {
        self.checked("stop");
    }

    fn checked(&self, action: &str) -> Output {
        let out = self.service.run(action, self.dir.path(), &[], &[]);
        assert!(
            out.status.success(),
            "{}.sh {action} failed: {}",
            self.service.script,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.service.run("stop", self.dir.path(), &[], &[]);
    }
}

/// Runs `NAME.sh stop DIR` once this process is gone, from a shell in a session of its
/// own (so it outlives this process and its process group).
fn detached_watchdog(name: &str, dir: &Path) {
    let watch = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' stop '{dir}'",
        pid = std::process::id(),
        script = script(name).display(),
        dir = dir.display()
    );
    let _ = Command::new("setsid")
        .args(["bash", "-c", &watch])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
