//! Keeping a delivery while its handler runs.
//!
//! Broker transports hide a received message for a short visibility window only, so that
//! a dead consumer's messages come back quickly. A live consumer holds a [`Lease`] from
//! `receive` until the ack or nack: it calls [`Transport::extend`] every
//! [`Transport::extend_every`], so a handler that runs longer than the window is never
//! handed to a second consumer because of it. Dropping the lease stops the extensions.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{Delivery, Transport, TransportError};

/// Extends one delivery's visibility in the background until dropped.
#[derive(Debug)]
pub struct Lease {
    task: Option<JoinHandle<()>>,
}

impl Lease {
    /// Starts extending `delivery` on `transport`; a no-op for transports whose
    /// deliveries need no extension ([`Transport::extend_every`] is `None`).
    pub fn hold(transport: &Arc<dyn Transport>, delivery: &Delivery) -> Lease {
        let Some(every) = transport.extend_every() else {
            return Lease { task: None };
        };
        let every = every.max(std::time::Duration::from_millis(10));
        let (transport, delivery) = (transport.clone(), delivery.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                match transport.extend(&delivery).await {
                    Ok(()) => failing = false,
                    Err(TransportError::UnknownDelivery(queue)) => {
                        tracing::warn!(queue, "a delivery still being handled is no longer ours (its visibility window passed); another consumer may run it too");
                        return;
                    }
                    Err(TransportError::Closed) => return,
                    Err(e) => {
                        // Broker outages: the next tick tries again; one WARN per streak.
                        if !failing {
                            tracing::warn!(queue = %delivery.queue, error = %e, "could not extend a delivery's visibility; retrying");
                        }
                        failing = true;
                    }
                }
            }
        });
        Lease { task: Some(task) }
    }

    /// A lease that extends nothing (tests, transports without windows).
    pub fn none() -> Lease {
        Lease { task: None }
    }

    /// Stops extending (same as dropping it).
    pub fn release(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop();
    }
}
