//! One Python actor's replicas (runtime process + consumer each) and its local
//! autoscaler, which follows KEDA's knobs (platform.md §2 `scaling`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use troupe_engine::consumer::{run_replica, ReplicaExit};
use troupe_engine::metrics::ActorStats;
use troupe_engine::{Engine, Handler};
use troupe_gateway::{Gateway, ListFilter, TaskStatus};
use troupe_runtime::client::RuntimeClient;
use troupe_runtime::launcher::{RuntimeProcess, RuntimeSpec, EXIT_OVER_MEMORY};

use crate::config::ActorConfig;

/// How long a runtime may take to become ready (`ASYA_RUNTIME_READY_TIMEOUT`).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Restart backoff bounds after a runtime crash.
const RESTART_MIN: Duration = Duration::from_millis(200);
const RESTART_MAX: Duration = Duration::from_secs(10);
/// A runtime that ran this long resets the restart backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Everything a replica needs to start runtimes.
#[derive(Clone)]
pub struct ReplicaTemplate {
    /// The actor's shared engine.
    pub engine: Arc<Engine>,
    /// Runtime process spec; `socket_dir` is replaced per replica.
    pub spec: RuntimeSpec,
    /// Folder under which per-replica socket folders are created.
    pub run_dir: PathBuf,
    /// Grace period for in-flight messages when stopping.
    pub grace: Duration,
    /// The mesh API, told when the actor cannot start so that waiting tasks say why.
    pub gateway: Option<Gateway>,
}

struct Replica {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Replicas of one actor.
pub struct ActorPool {
    /// Actor configuration.
    pub config: ActorConfig,
    template: ReplicaTemplate,
    replicas: Mutex<Vec<Replica>>,
    next_index: AtomicUsize,
    ready: Arc<AtomicUsize>,
    desired: AtomicUsize,
}

impl ActorPool {
    /// A pool with no replicas yet.
    pub fn new(config: ActorConfig, template: ReplicaTemplate) -> Self {
        Self {
            config,
            template,
            replicas: Mutex::new(Vec::new()),
            next_index: AtomicUsize::new(0),
            ready: Arc::new(AtomicUsize::new(0)),
            desired: AtomicUsize::new(0),
        }
    }

    /// The actor's engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.template.engine
    }

    /// Replicas whose runtime is up.
    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::Relaxed)
    }

    /// Replicas asked for.
    pub fn desired(&self) -> usize {
        self.desired.load(Ordering::Relaxed)
    }

    /// Scales to exactly `n` replicas (stopping the newest first).
    pub async fn scale_to(&self, n: usize) {
        let mut replicas = self.replicas.lock().await;
        let from = replicas.len();
        if n == from {
            return;
        }
        self.desired.store(n, Ordering::Relaxed);
        info!(actor = %self.config.name, from, to = n, "actor scaled");
        while replicas.len() < n {
            let index = self.next_index.fetch_add(1, Ordering::Relaxed);
            replicas.push(self.start_replica(index));
        }
        let mut stopping = Vec::new();
        while replicas.len() > n {
            if let Some(r) = replicas.pop() {
                r.stop.send_replace(true);
                stopping.push(r.task);
            }
        }
        drop(replicas);
        for task in stopping {
            let _ = task.await;
        }
    }

    /// Stops every replica, finishing in-flight messages within the grace period.
    pub async fn stop_all(&self) {
        self.scale_to(0).await;
    }

    fn start_replica(&self, index: usize) -> Replica {
        let (stop, stop_rx) = watch::channel(false);
        let t = self.template.clone();
        let actor = self.config.name.clone();
        let ready = self.ready.clone();
        let task = tokio::spawn(async move { supervise(actor, index, t, ready, stop_rx).await });
        Replica { stop, task }
    }
}

fn socket_dir(run_dir: &std::path::Path, actor: &str, index: usize) -> PathBuf {
    let dir = run_dir.join(format!("{actor}-{index}"));
    // Unix socket paths are limited to ~108 bytes; fall back to a short temp path.
    if dir.as_os_str().len() + "/asya-runtime.sock".len() < 100 {
        dir
    } else {
        std::env::temp_dir().join(format!("troupe-{}-{actor}-{index}", std::process::id()))
    }
}

/// Runs one replica: starts its runtime, consumes, restarts the runtime when it dies
/// or times out, until asked to stop.
async fn supervise(
    actor: String,
    index: usize,
    t: ReplicaTemplate,
    ready: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = RestartBackoff::default();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut spec = t.spec.clone();
        spec.socket_dir = socket_dir(&t.run_dir, &actor, index);
        if let Err(e) = std::fs::create_dir_all(&spec.socket_dir) {
            error!(actor, error = %e, dir = %spec.socket_dir.display(), "cannot create runtime socket folder");
        }
        let started = Instant::now();
        let mut process = match RuntimeProcess::spawn(spec) {
            Ok(p) => p,
            Err(e) => {
                let wait = backoff.failed(Duration::ZERO);
                start_failed(&actor, index, &t, &e, wait);
                if wait_or_stop(&mut stop, wait).await {
                    return;
                }
                continue;
            }
        };
        let pid = process.pid();
        if let Err(e) = tokio::select! {
            r = process.wait_ready(READY_TIMEOUT) => r,
            _ = stop.changed() => { let _ = process.terminate(t.grace).await; return; }
        } {
            let _ = process.kill();
            let wait = backoff.failed(Duration::ZERO);
            start_failed(&actor, index, &t, &e, wait);
            if wait_or_stop(&mut stop, wait).await {
                return;
            }
            continue;
        }
        debug!(actor, replica = index, pid, "runtime ready");
        ready.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(RuntimeClient::new(process.socket_path()));
        let (consumer_stop, consumer_stop_rx) = watch::channel(false);
        let mut consumer = tokio::spawn(run_replica(
            t.engine.clone(),
            Handler::Runtime(client),
            consumer_stop_rx,
        ));
        let outcome = tokio::select! {
            exit = &mut consumer => Outcome::Consumer(exit.unwrap_or(ReplicaExit::Stopped)),
            status = process.wait() => Outcome::Died(match status { Ok(s) => s.to_string(), Err(e) => e.to_string() }),
            _ = stop.changed() => Outcome::Stop,
        };
        ready.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Outcome::Stop => {
                consumer_stop.send_replace(true);
                if tokio::time::timeout(t.grace, &mut consumer).await.is_err() {
                    warn!(actor, replica = index, "in-flight messages did not finish within the grace period; they will be redelivered");
                    consumer.abort();
                }
                let _ = process.terminate(t.grace).await;
                debug!(actor, replica = index, "replica stopped");
                return;
            }
            Outcome::Consumer(ReplicaExit::RuntimeTimedOut) => {
                warn!(
                    actor,
                    replica = index,
                    pid,
                    "runtime call timed out; replacing the runtime process"
                );
                let _ = process.kill();
                ActorStats::bump(&t.engine.stats().restarts);
                backoff = RestartBackoff::default();
            }
            Outcome::Consumer(ReplicaExit::RuntimeLost) => {
                // The runtime stopped answering: it crashed (its exit may not have been
                // seen yet) or hangs. Replace it; queued messages wait for the new one.
                let _ = process.kill();
                let status = process
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                let wait = backoff.failed(started.elapsed());
                record_exit(&t, &mut process, &status, wait);
                warn!(actor, replica = index, pid, status = %status, restart_in = ?wait, "runtime unreachable; restarting");
                if wait_or_stop(&mut stop, wait).await {
                    return;
                }
            }
            Outcome::Consumer(ReplicaExit::Stopped) => {
                let _ = process.terminate(t.grace).await;
                return;
            }
            Outcome::Died(status) => {
                // In-flight messages see the runtime as unreachable and go to x-sump
                // (protocol.md §11); stop receiving new ones until the restart.
                consumer_stop.send_replace(true);
                let _ = consumer.await;
                let wait = backoff.failed(started.elapsed());
                record_exit(&t, &mut process, &status, wait);
                warn!(actor, replica = index, pid, status = %status, restart_in = ?wait, "runtime crashed; restarting");
                if wait_or_stop(&mut stop, wait).await {
                    return;
                }
            }
        }
    }
}

/// A runtime that died after it was ready: counted as a restart and shown as the actor's
/// last error with the last line it wrote to stderr (a crash loop is visible in `troupe
/// status` even when no message was in flight).
fn record_exit(t: &ReplicaTemplate, process: &mut RuntimeProcess, status: &str, wait: Duration) {
    let stats = t.engine.stats();
    ActorStats::bump(&stats.restarts);
    let code = process.try_status().ok().flatten().and_then(|s| s.code());
    // After a MemoryError the handler failure already names the limit.
    if code == Some(EXIT_OVER_MEMORY) {
        return;
    }
    let tail = process.stderr_tail();
    // The last line explains a crash (a traceback's end, a fatal message); a routine log
    // record ("runtime ready") would only mislead.
    let last = tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("INFO ") && !l.starts_with("DEBUG "));
    stats.record_error(format!(
        "runtime exited ({status}; restart {}, next try in {}){}",
        ActorStats::get(&stats.restarts),
        human(wait),
        last.map(|l| format!(": {}", l.trim())).unwrap_or_default()
    ));
}

/// Most waiting tasks told, per start failure, that their actor cannot start.
const NOTIFY_MAX: usize = 1000;

/// A runtime that could not start: counted as a restart, logged, shown as the actor's
/// last error, and streamed to the tasks waiting for this actor (their `send --wait`
/// would otherwise show nothing but "pending").
fn start_failed(
    actor: &str,
    index: usize,
    t: &ReplicaTemplate,
    e: &troupe_runtime::launcher::LaunchError,
    wait: Duration,
) {
    let stats = t.engine.stats();
    ActorStats::bump(&stats.restarts);
    let restarts = ActorStats::get(&stats.restarts);
    let summary = e.summary();
    error!(actor, replica = index, restarts, restart_in = ?wait, error = %e, "runtime failed to start; queued messages wait for it");
    let text = format!(
        "actor {actor} cannot start (restart {restarts}, next try in {}): {summary}",
        human(wait)
    );
    stats.record_error(text.clone());
    if let Some(gateway) = t.gateway.clone() {
        let actor = actor.to_owned();
        tokio::spawn(async move { notify_waiting(&gateway, &actor, &text).await });
    }
}

/// Tells the unfinished tasks whose current actor is `actor` why they wait.
async fn notify_waiting(gateway: &Gateway, actor: &str, text: &str) {
    for status in [TaskStatus::Pending, TaskStatus::Running] {
        let filter = ListFilter {
            status: Some(status),
            limit: NOTIFY_MAX,
            ..ListFilter::default()
        };
        let Ok(page) = gateway.list(&filter).await else {
            return;
        };
        for task in page.tasks.iter().filter(|t| t.data.actor == actor) {
            let _ = gateway.notify(&task.id, text).await;
        }
    }
}

/// `400 ms`, `1.6 s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Restart delays after runtime failures: 200 ms doubling to 10 s, back to 200 ms after
/// a runtime that ran for [`STABLE_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RestartBackoff(Duration);

impl Default for RestartBackoff {
    fn default() -> Self {
        RestartBackoff(RESTART_MIN)
    }
}

impl RestartBackoff {
    /// The wait before the next start after a runtime that ran for `ran_for` failed.
    fn failed(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.0 = RESTART_MIN;
        }
        let wait = self.0;
        self.0 = (self.0 * 2).min(RESTART_MAX);
        wait
    }
}

enum Outcome {
    Consumer(ReplicaExit),
    Died(String),
    Stop,
}

/// Sleeps for `d`; true when asked to stop meanwhile.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Pure scaling decision (KEDA semantics, locally).
#[derive(Debug, Clone, Copy)]
pub struct ScalePolicy {
    /// `minReplicaCount`.
    pub min: usize,
    /// `maxReplicaCount`.
    pub max: usize,
    /// `queueLength`: messages per replica.
    pub queue_length: u64,
    /// `cooldownPeriod`.
    pub cooldown: Duration,
}

impl ScalePolicy {
    /// Desired replicas given the backlog, the current count, and how long the queue
    /// has been idle (empty and nothing in flight).
    pub fn desired(&self, backlog: u64, current: usize, idle_for: Duration) -> usize {
        if backlog > 0 {
            let per = self.queue_length.max(1);
            let want = usize::try_from(backlog.div_ceil(per)).unwrap_or(usize::MAX);
            return want
                .clamp(self.min.max(1), self.max.max(1))
                .max(current.min(self.max.max(1)));
        }
        if idle_for >= self.cooldown {
            self.min
        } else {
            current.max(self.min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ScalePolicy {
        ScalePolicy {
            min: 0,
            max: 4,
            queue_length: 5,
            cooldown: Duration::from_secs(30),
        }
    }

    #[test]
    fn restart_backoff_doubles_to_ten_seconds_and_resets_after_a_stable_run() {
        let mut b = RestartBackoff::default();
        let waits: Vec<u64> = (0..8)
            .map(|_| u64::try_from(b.failed(Duration::from_secs(1)).as_millis()).unwrap_or(0))
            .collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(b.failed(STABLE_AFTER), RESTART_MIN);
        assert_eq!(b.failed(Duration::ZERO), RESTART_MIN * 2);
    }

    #[test]
    fn first_message_starts_one_replica() {
        assert_eq!(policy().desired(1, 0, Duration::ZERO), 1);
    }

    #[test]
    fn backlog_asks_ceil_n_over_queue_length_up_to_max() {
        let p = policy();
        assert_eq!(p.desired(5, 0, Duration::ZERO), 1);
        assert_eq!(p.desired(6, 1, Duration::ZERO), 2);
        assert_eq!(p.desired(11, 1, Duration::ZERO), 3);
        assert_eq!(p.desired(1000, 1, Duration::ZERO), 4);
    }

    #[test]
    fn does_not_scale_down_while_busy() {
        assert_eq!(policy().desired(1, 3, Duration::ZERO), 3);
    }

    #[test]
    fn scales_to_min_only_after_cooldown() {
        let p = policy();
        assert_eq!(p.desired(0, 3, Duration::from_secs(29)), 3);
        assert_eq!(p.desired(0, 3, Duration::from_secs(30)), 0);
        let p1 = ScalePolicy { min: 1, ..p };
        assert_eq!(p1.desired(0, 3, Duration::from_secs(31)), 1);
        assert_eq!(p1.desired(0, 0, Duration::ZERO), 1);
    }
}
