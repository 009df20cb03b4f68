//! The receive loop of one replica: `concurrency` workers, each running one message at
//! a time through the handler while up to `pipeline` earlier ones wait for their sends
//! to be confirmed before their ack, stopping cleanly on request.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::warn;
use troupe_transport::lease::Lease;

use crate::sidecar::{Disposition, Engine, Handler};

/// Why a replica's consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaExit {
    /// Asked to stop; in-flight messages finished.
    Stopped,
    /// A runtime call timed out: the runtime process must be replaced (§10).
    RuntimeTimedOut,
    /// The runtime stopped answering (crashed or restarting): replace it.
    RuntimeLost,
}

/// Receive-error backoff: 1, 2, 4, 8, 16 s, then 30 s (protocol.md §12).
pub fn receive_backoff(consecutive_errors: u32) -> Duration {
    match consecutive_errors {
        0 => Duration::ZERO,
        n if n <= 5 => Duration::from_secs(1 << (n - 1)),
        _ => Duration::from_secs(30),
    }
}

/// Runs the replica until `stop` turns true (then finishes in-flight messages) or a
/// runtime call times out. The caller bounds the grace period by dropping the future.
pub async fn run_replica(
    engine: Arc<Engine>,
    handler: Handler,
    stop: watch::Receiver<bool>,
) -> ReplicaExit {
    let workers = engine.settings().concurrency.max(1);
    let (fatal_tx, _) = watch::channel(None::<ReplicaExit>);
    let fatal_tx = Arc::new(fatal_tx);
    let mut set = JoinSet::new();
    for _ in 0..workers {
        let (engine, handler) = (engine.clone(), handler.clone());
        let (stop, fatal_tx) = (stop.clone(), fatal_tx.clone());
        set.spawn(async move {
            let mut settling = JoinSet::new();
            worker(&engine, &handler, stop, &fatal_tx, &mut settling).await;
            // Messages still settling finish before the worker ends; dropping the worker
            // (grace expired) aborts them, and the broker redelivers.
            while settling.join_next().await.is_some() {}
        });
    }
    while set.join_next().await.is_some() {}
    let exit = *fatal_tx.borrow();
    exit.unwrap_or(ReplicaExit::Stopped)
}

/// One worker: receives and runs one message at a time until stopped, leaving up to
/// [`Engine::pipeline_depth`] earlier messages in `settling`.
async fn worker(
    engine: &Arc<Engine>,
    handler: &Handler,
    mut stop: watch::Receiver<bool>,
    fatal_tx: &watch::Sender<Option<ReplicaExit>>,
    settling: &mut JoinSet<Disposition>,
) {
    let mut fatal = fatal_tx.subscribe();
    let mut errors = 0u32;
    loop {
        if *stop.borrow() || fatal.borrow().is_some() {
            return;
        }
        if let Some(at) = engine.paused_until() {
            // Sends are failing (a full disk, a broker gone): the next message would
            // most likely fail the same way, so wait out the backoff first.
            tokio::select! {
                biased;
                r = stop.changed() => if r.is_err() { return } else { continue },
                _ = fatal.changed() => continue,
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        let waiting = tokio::time::Instant::now();
        let received = tokio::select! {
            biased;
            // A dropped sender can never ask to stop; treat it as a stop rather than spin
            // on a `changed()` that fails at once forever.
            r = stop.changed() => if r.is_err() { return } else { continue },
            _ = fatal.changed() => continue,
            r = engine.transport().receive(engine.queue()) => r,
        };
        let delivery = match received {
            Ok(d) => {
                errors = 0;
                engine.record_receive_wait(waiting.elapsed());
                d
            }
            Err(e) => {
                errors += 1;
                let wait = receive_backoff(errors);
                warn!(actor = %engine.settings().actor, error = %e, ?wait, "receive failed; backing off");
                tokio::select! {
                    r = stop.changed() => if r.is_err() { return },
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        // Held until the ack or nack: a handler that outlives the visibility window keeps
        // its message rather than have the broker hand it to another consumer.
        let lease = Lease::hold(engine.transport(), &delivery);
        let begun = engine.begin(handler, &delivery).await;
        let depth = engine.pipeline_depth();
        if depth > 0 && begun.has_pending_sends() && !begun.runtime_lost() {
            // Settle in the background while the next message runs; at most `depth` wait
            // at once, so the broker's prefetch covers them.
            while settling.try_join_next().is_some() {}
            while settling.len() >= depth {
                settling.join_next().await;
            }
            let engine = engine.clone();
            settling.spawn(async move {
                let disposition = engine.settle(begun, &delivery).await;
                lease.release();
                disposition
            });
            continue;
        }
        let disposition = engine.settle(begun, &delivery).await;
        lease.release();
        if disposition.runtime_lost() {
            let exit = if disposition == Disposition::RuntimeTimedOut {
                ReplicaExit::RuntimeTimedOut
            } else {
                ReplicaExit::RuntimeLost
            };
            // The first failure names the exit; later workers only stop.
            fatal_tx.send_if_modified(|f| f.is_none() && f.replace(exit).is_none());
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_matches_spec() {
        let got: Vec<u64> = (1..=8).map(|n| receive_backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(receive_backoff(0), Duration::ZERO);
    }
}
