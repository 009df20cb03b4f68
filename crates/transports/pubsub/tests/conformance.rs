//! The transport conformance suite against a real Pub/Sub emulator.
//!
//! Not run from the suite, and why:
//! - `depth_counts`: Pub/Sub has no backlog count in its API (see the crate docs);
//!   `depth` reports this instance's in-flight and delayed messages only, which
//!   `depth_reports_own_in_flight_and_delayed` in `tests/pubsub.rs` checks.
//! - `broker_restart`: the emulator keeps everything in memory, so a restart loses every
//!   message it held and "nothing whose send returned Ok is lost" cannot hold for it.
//!   `broker_restart_reconnects` below checks what it can show: the same transport
//!   instances notice the outage, recreate their topics and subscriptions and carry on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::{namespace, Emulator};
use troupe_transport::Transport;
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_pubsub::PubSubTransport;

/// Short (below the 10 s a subscription can have, so each pulled message gets its own
/// deadline), so a dead consumer's message comes back within the suite's patience.
const VISIBILITY: Duration = Duration::from_secs(3);

struct PubSubHarness {
    emulator: &'static Emulator,
    namespace: String,
}

#[async_trait]
impl Harness for PubSubHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(support::connect(&self.emulator.url, &self.namespace, VISIBILITY).await)
    }

    async fn restart_broker(&self) {
        // Not used: see the module docs.
        panic!(
            "the emulator is in-memory: broker_restart is replaced by broker_restart_reconnects"
        );
    }

    fn dead_letter_queue(&self, _queue: &str) -> String {
        format!("asya-{}-dlq", self.namespace)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dead_letter_after: Some(3),
            redelivery_after: VISIBILITY + Duration::from_secs(2),
            depth_in_flight: true,
            depth_delayed: true,
            ..Capabilities::default()
        }
    }
}

fn harness() -> Option<PubSubHarness> {
    Some(PubSubHarness {
        emulator: support::shared()?,
        namespace: namespace(),
    })
}

// One test per suite case; each prints SKIPPED and passes when the server cannot run
// here.
troupe_transport_conformance::conformance_tests!(@cases
    match harness() {
        Some(h) => h,
        None => return,
    };
    send_receive_ack,
    pipelined_sends,
    requeue_redelivers,
    dead_consumer_redelivers,
    lease_keeps_delivery,
    delayed_delivery,
    dead_letter_after_max_deliveries,
    queue_provisioning
);

/// In place of the suite's `broker_restart` (see the module docs): an outage is
/// reported as `Unavailable` naming the endpoint, and after the restart the same
/// producer and consumer instances work again with no help, their topics and
/// subscriptions recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_reconnects() {
    let Some(emu) = Emulator::start() else { return };
    eprintln!(
        "broker_restart_reconnects: the Pub/Sub emulator is in-memory, so messages held across \
         a restart are lost; this checks reconnection only, not durability"
    );
    let ns = namespace();
    let mut config = support::config(&emu.url);
    config.retry_for = Duration::from_secs(2);
    let producer = PubSubTransport::connect(config.clone(), support::options(&ns, VISIBILITY))
        .await
        .unwrap();
    let consumer = PubSubTransport::connect(config, support::options(&ns, VISIBILITY))
        .await
        .unwrap();
    troupe_transport_conformance::emulator_restart_reconnects(
        Arc::new(producer),
        Arc::new(consumer),
        || emu.stop(),
        || {
            emu.restart();
        },
        // Let the consumer recreate the topic and its subscription first: a message
        // published to a recreated topic before its subscription exists reaches nobody
        // (a race that only an emptied broker can cause).
        Duration::from_secs(6),
    )
    .await;
}
