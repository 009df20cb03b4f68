//! The transport conformance suite against a real moto server.
//!
//! moto keeps queues and messages in memory only, so a broker restart loses every
//! message it held: the suite's `broker_restart` case ("nothing whose send returned Ok
//! is lost") cannot hold for it and is not run. `broker_restart_reconnects` below runs
//! in its place and checks what an in-memory emulator can show: the same transport
//! instances notice the outage, recreate their queues and carry on. Real SQS is durable;
//! its durability is AWS's to prove, not moto's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::{namespace, Moto};
use troupe_transport::Transport;
use troupe_transport_conformance::{Capabilities, Harness};
use troupe_transport_sqs::SqsTransport;

/// Short, so a dead consumer's message comes back within the suite's patience.
const VISIBILITY: Duration = Duration::from_secs(3);

struct SqsHarness {
    moto: &'static Moto,
    namespace: String,
}

#[async_trait]
impl Harness for SqsHarness {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(support::connect(self.moto, &self.namespace, VISIBILITY).await)
    }

    async fn restart_broker(&self) {
        // Not used: see the module docs.
        panic!("moto is in-memory: broker_restart is replaced by broker_restart_reconnects");
    }

    fn dead_letter_queue(&self, _queue: &str) -> String {
        format!("asya-{}-dlq", self.namespace)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            dead_letter_after: Some(3),
            redelivery_after: VISIBILITY + Duration::from_secs(2),
            ..Capabilities::default()
        }
    }
}

fn harness() -> Option<SqsHarness> {
    Some(SqsHarness {
        moto: support::shared()?,
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
    depth_counts,
    queue_provisioning
);

/// In place of the suite's `broker_restart` (see the module docs): an outage is
/// reported as `Unavailable` naming the endpoint, and after the restart the same
/// producer and consumer instances work again with no help, their queues recreated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_reconnects() {
    let Some(moto) = Moto::start() else { return };
    eprintln!(
        "broker_restart_reconnects: moto is in-memory, so messages held across a restart are lost; \
         this checks reconnection only, not durability"
    );
    let ns = namespace();
    let mut config = support::config(&moto);
    config.retry_for = Duration::from_secs(2);
    let producer = SqsTransport::connect(config.clone(), support::options(&ns, VISIBILITY))
        .await
        .unwrap();
    let consumer = SqsTransport::connect(config, support::options(&ns, VISIBILITY))
        .await
        .unwrap();
    troupe_transport_conformance::emulator_restart_reconnects(
        Arc::new(producer),
        Arc::new(consumer),
        || moto.stop(),
        || {
            moto.restart();
        },
        Duration::ZERO,
    )
    .await;
}
