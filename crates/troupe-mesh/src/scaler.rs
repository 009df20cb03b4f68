//! The local autoscaler: KEDA's knobs, driven by queue arrival events (so a scaled-to-zero
//! actor starts a runtime at once) plus a periodic check for scale-down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::pool::{ActorPool, ScalePolicy};

/// How often the scaler re-checks depth without events (scale-down, cooldown).
const TICK: Duration = Duration::from_millis(500);

/// Runs the scaler of one pool until `shutdown` turns true.
pub async fn run(
    pool: Arc<ActorPool>,
    arrivals: Option<broadcast::Receiver<Arc<str>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let s = &pool.config.scaling;
    if !s.enabled {
        pool.scale_to(s.replicas as usize).await;
        return;
    }
    // A transport that cannot count its backlog would leave a scaled-to-zero actor
    // asleep forever: keep one replica consuming.
    let floor = usize::from(!pool.engine().transport().counts_backlog());
    let policy = ScalePolicy {
        min: (s.min as usize).max(floor),
        max: s.max as usize,
        queue_length: u64::from(s.queue_length),
        cooldown: s.cooldown,
    };
    let engine = pool.engine().clone();
    let queue = engine.queue().to_owned();
    let mut arrivals = arrivals;
    let mut last_active = Instant::now();
    pool.scale_to(policy.min).await;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let depth = match engine.transport().depth(&queue).await {
            Ok(d) => d,
            Err(e) => {
                warn!(actor = %pool.config.name, error = %e, "queue depth unavailable");
                Default::default()
            }
        };
        let busy = depth.backlog() + depth.delayed > 0
            || engine
                .stats()
                .in_flight
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0;
        if busy {
            last_active = Instant::now();
        }
        let desired = policy.desired(depth.backlog(), pool.desired(), last_active.elapsed());
        // Delayed retries keep at least one replica alive through the cooldown.
        let desired = if depth.delayed > 0 {
            desired.max(pool.desired())
        } else {
            desired
        };
        if desired != pool.desired() {
            let p = pool.clone();
            // Scaling waits for stopping replicas to drain; keep reacting meanwhile.
            tokio::spawn(async move { p.scale_to(desired).await });
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(TICK) => {}
            _ = next_arrival(&mut arrivals, &queue) => {}
        }
    }
}

/// Waits for an arrival on `queue`; pends forever without an arrivals feed.
async fn next_arrival(arrivals: &mut Option<broadcast::Receiver<Arc<str>>>, queue: &str) {
    let Some(rx) = arrivals.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(q) if &*q == queue => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}
