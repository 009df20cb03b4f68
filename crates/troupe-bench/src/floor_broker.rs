//! The raw-broker floor: the same envelopes pushed through three queues on the same
//! broker by Rust only. Three stage tasks (one per queue, prefetch 1 as the mesh's
//! sidecars) each receive, optionally spin 1 ms of CPU, send to the next queue (the last
//! one reports the pipeline done) and ack: the broker round trips every system pays, with
//! no Python and no sidecar logic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use troupe_transport::{ConnectOptions, Transport};

use crate::brokerrun::envelope;
use crate::brokers::{tree_cpu_seconds, Phases, RunResult, Work};
use crate::procstat;
use crate::project::ACTORS;
use crate::stats;

const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const PRELOAD_CONCURRENCY: usize = 64;

/// Burns `d` of this thread's CPU time (not wall time), as `work.spin` does in Python.
pub fn spin(d: Duration) {
    use nix::time::{clock_gettime, ClockId};
    let now = || {
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(Duration::from)
            .unwrap_or_default()
    };
    let end = now() + d;
    while now() < end {
        std::hint::spin_loop();
    }
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

/// One stage: queue `i` to queue `i + 1` (or to `done`), until `stop` is set.
fn stage(
    t: Arc<dyn Transport>,
    i: usize,
    work: Work,
    done: mpsc::UnboundedSender<String>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Result<()>> {
    tokio::spawn(async move {
        let queue = t.queue_name(ACTORS[i]);
        let next = ACTORS.get(i + 1).map(|a| t.queue_name(a));
        loop {
            let d = tokio::select! {
                d = t.receive(&queue) => d?,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            if work == Work::Cpu1ms {
                spin(Duration::from_millis(1));
            }
            match &next {
                Some(q) => t.send(q, d.body.clone()).await?,
                None => {
                    let id: IdOnly = serde_json::from_slice(&d.body)?;
                    let _ = done.send(id.id);
                }
            }
            t.ack(&d).await?;
        }
    })
}

/// A running stage: its stop signal and its task.
type Running = (watch::Sender<bool>, JoinHandle<Result<()>>);

struct Stages {
    t: Arc<dyn Transport>,
    work: Work,
    done: mpsc::UnboundedSender<String>,
    running: Vec<Option<Running>>,
}

impl Stages {
    fn start(&mut self, i: usize) {
        let (stop, rx) = watch::channel(false);
        let h = stage(self.t.clone(), i, self.work, self.done.clone(), rx);
        self.running[i] = Some((stop, h));
    }

    async fn stop(&mut self, i: usize) -> Result<()> {
        if let Some((stop, h)) = self.running[i].take() {
            stop.send_replace(true);
            h.await.context("floor stage panicked")??;
        }
        Ok(())
    }

    async fn stop_all(&mut self) {
        for i in 0..self.running.len() {
            if let Err(e) = self.stop(i).await {
                eprintln!("floor stage {i}: {e:#}");
            }
        }
    }
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<String>, id: &str, t: Duration) -> Result<()> {
    loop {
        match tokio::time::timeout(t, rx.recv()).await {
            Ok(Some(got)) if got == id => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => bail!("floor stages stopped"),
            Err(_) => bail!("floor pipeline {id} did not complete within {t:?}"),
        }
    }
}

async fn sequential(
    t: &Arc<dyn Transport>,
    rx: &mut mpsc::UnboundedReceiver<String>,
    n: usize,
) -> Result<Vec<Duration>> {
    let q = t.queue_name(ACTORS[0]);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let id = uuid::Uuid::new_v4().to_string();
        let body = envelope(&id, i)?;
        let start = Instant::now();
        t.send(&q, body).await?;
        wait_for(rx, &id, STEP_TIMEOUT).await?;
        out.push(start.elapsed());
    }
    Ok(out)
}

/// Connects to `url` under `namespace`, runs the phases, disconnects. Runs on its own
/// multi-thread runtime (three workers, one per stage) so the 1 ms spins of different
/// stages overlap, as the three worker processes of the other systems do.
pub fn run(
    url: &str,
    namespace: &str,
    broker_pid: u32,
    work: Work,
    phases: Phases,
) -> Result<RunResult> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let spec = troupe_transports::TransportSpec::from_url(url)?;
        let t = spec
            .connect(ConnectOptions::new(namespace))
            .await
            .context("floor: connecting to the broker")?;
        let (done, mut rx) = mpsc::unbounded_channel();
        let mut stages = Stages {
            t: t.clone(),
            work,
            done,
            running: (0..ACTORS.len()).map(|_| None).collect(),
        };
        for i in 0..ACTORS.len() {
            stages.start(i);
        }
        let r = measure(&t, &mut stages, &mut rx, broker_pid, phases).await;
        stages.stop_all().await;
        t.close().await;
        r
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn measure(
    t: &Arc<dyn Transport>,
    stages: &mut Stages,
    rx: &mut mpsc::UnboundedReceiver<String>,
    broker_pid: u32,
    phases: Phases,
) -> Result<RunResult> {
    sequential(t, rx, phases.warmup).await?;
    let cpu = || -> Result<(f64, f64)> {
        Ok((procstat::self_cpu_seconds()?, tree_cpu_seconds(broker_pid)))
    };
    let c0 = cpu()?;
    let lat = sequential(t, rx, phases.unloaded).await?;
    let c1 = cpu()?;

    stages.stop(0).await?;
    let q = t.queue_name(ACTORS[0]);
    let mut ids = HashMap::with_capacity(phases.pipelines);
    let mut bodies = Vec::with_capacity(phases.pipelines);
    for i in 0..phases.pipelines {
        let id = uuid::Uuid::new_v4().to_string();
        bodies.push(envelope(&id, i)?);
        ids.insert(id, i);
    }
    let preload_start = Instant::now();
    let mut sends = futures::stream::iter(bodies)
        .map(|b| {
            let t = t.clone();
            let q = q.clone();
            async move { t.send(&q, b).await }
        })
        .buffer_unordered(PRELOAD_CONCURRENCY);
    while let Some(r) = sends.next().await {
        r.context("floor: preloading queue a")?;
    }
    let preload = preload_start.elapsed();
    stages.start(0);

    let deadline = Instant::now() + phases.time_limit;
    let mut seen = vec![false; phases.pipelines];
    let mut arrivals = Vec::with_capacity(phases.pipelines);
    let mut first = None;
    while arrivals.len() < phases.pipelines {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            eprintln!(
                "floor: time limit reached after {} pipelines",
                arrivals.len()
            );
            break;
        }
        let id = match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(id)) => id,
            Ok(None) => bail!("floor stages stopped"),
            Err(_) => continue,
        };
        let now = Instant::now();
        if let Some(slot) = ids.get(&id).and_then(|&i| seen.get_mut(i)) {
            if !*slot {
                *slot = true;
                arrivals.push(now);
                if first.is_none() {
                    first = Some(cpu()?);
                }
            }
        }
    }
    let last = cpu()?;
    let first = first.ok_or_else(|| anyhow!("floor: nothing completed in the loaded phase"))?;
    if arrivals.len() < 2 {
        bail!("floor: only {} pipelines completed", arrivals.len());
    }
    Ok(RunResult {
        pipelines: arrivals.len() - 1,
        requested: phases.pipelines,
        timed_out: arrivals.len() < phases.pipelines,
        wall: arrivals[arrivals.len() - 1] - arrivals[0],
        cpu_system: last.0 - first.0,
        cpu_parts: vec![("floor".to_owned(), last.0 - first.0)],
        cpu_broker: last.1 - first.1,
        unloaded: stats::summarize(lat),
        unloaded_cpu: c1.0 - c0.0,
        unloaded_broker_cpu: c1.1 - c0.1,
        preload,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn spin_burns_about_the_asked_cpu() {
        let before = procstat::self_cpu_seconds().unwrap();
        let start = Instant::now();
        for _ in 0..50 {
            spin(Duration::from_millis(1));
        }
        let wall = start.elapsed();
        let cpu = procstat::self_cpu_seconds().unwrap() - before;
        assert!(wall >= Duration::from_millis(50), "{wall:?}");
        // 10 ms ticks: 50 ms of CPU reads as 40..=70 ms give or take other threads.
        assert!(cpu >= 0.03, "{cpu}");
    }
}
