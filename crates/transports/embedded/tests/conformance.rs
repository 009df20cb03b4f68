//! The transport conformance suite against the embedded store.
//!
//! The embedded store lives in the process, so "the broker" is the store itself: every
//! transport the harness hands out is a handle onto the one open store, and a broker
//! restart closes the store and reopens it on the same directory behind those handles.
//! A killed consumer's handle just stops; its deliveries come back after the visibility
//! timeout (2 s here). The embedded store has no dead-letter queue, so that case is not
//! applicable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use troupe_transport::{Delivery, QueueDepth, Transport, TransportError};
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

const VISIBILITY: Duration = Duration::from_secs(2);

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        visibility_timeout: VISIBILITY,
        ..EmbeddedOptions::default()
    }
}

/// The open store, swapped by a restart.
struct Store {
    dir: tempfile::TempDir,
    current: RwLock<Arc<EmbeddedTransport>>,
}

impl Store {
    fn get(&self) -> Arc<EmbeddedTransport> {
        self.current.read().unwrap().clone()
    }
}

struct EmbeddedHarness {
    store: Arc<Store>,
}

impl EmbeddedHarness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let t = EmbeddedTransport::open(dir.path(), options()).unwrap();
        EmbeddedHarness {
            store: Arc::new(Store {
                dir,
                current: RwLock::new(Arc::new(t)),
            }),
        }
    }
}

/// One "connection": a handle onto whatever store is open now.
struct StoreHandle {
    store: Arc<Store>,
    closed: AtomicBool,
}

impl StoreHandle {
    fn store(&self) -> Result<Arc<EmbeddedTransport>, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        Ok(self.store.get())
    }

    /// A store closed under an open handle is a restart in progress: a broker outage,
    /// not the end of this transport.
    fn outage(&self, e: TransportError) -> TransportError {
        match e {
            TransportError::Closed if !self.closed.load(Ordering::Acquire) => TransportError::Io {
                queue: String::new(),
                message: "embedded store restarting".to_owned(),
            },
            e => e,
        }
    }
}

#[async_trait]
impl Transport for StoreHandle {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn queue_name(&self, actor: &str) -> String {
        actor.to_owned()
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        loop {
            match self.store()?.receive(queue).await {
                // The old store closed under us; wait for the new one.
                Err(TransportError::Closed) if !self.closed.load(Ordering::Acquire) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        let r = self.store()?.send(queue, body).await;
        r.map_err(|e| self.outage(e))
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        let r = self.store()?.send_with_delay(queue, body, delay).await;
        r.map_err(|e| self.outage(e))
    }

    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        let r = self.store()?.create_queue(queue).await;
        r.map_err(|e| self.outage(e))
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        let r = self.store()?.delete_queue(queue).await;
        r.map_err(|e| self.outage(e))
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let r = self.store()?.ack(delivery).await;
        r.map_err(|e| self.outage(e))
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        let r = self.store()?.nack(delivery, delay).await;
        r.map_err(|e| self.outage(e))
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let r = self.store()?.depth(queue).await;
        r.map_err(|e| self.outage(e))
    }

    async fn close(&self) {
        // The store outlives its handles; what this handle held comes back after the
        // visibility timeout, as with a crashed consumer.
        self.closed.store(true, Ordering::Release);
    }
}

#[async_trait]
impl Harness for EmbeddedHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(StoreHandle {
            store: self.store.clone(),
            closed: AtomicBool::new(false),
        })
    }

    async fn restart_broker(&self) {
        let old = self.store.get();
        old.close().await;
        // Let the handles see an outage, as with a real broker.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let new = EmbeddedTransport::open(self.store.dir.path(), options()).unwrap();
        *self.store.current.write().unwrap() = Arc::new(new);
    }

    fn dead_letter_queue(&self, queue: &str) -> String {
        format!("{queue}-dlq")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dead_letter_after: None,
            redelivery_after: VISIBILITY + Duration::from_secs(1),
            delay_slack: Duration::from_millis(500),
            depth_settle: Duration::from_millis(500),
            ..Capabilities::default()
        }
    }
}

troupe_transport_conformance::conformance_tests!(EmbeddedHarness::new());
