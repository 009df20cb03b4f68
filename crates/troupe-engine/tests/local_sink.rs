#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Embedded mode: an actor hands its finished tasks to an in-process x-sink engine
//! instead of the x-sink queue (`Engine::with_local_sink`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use troupe_engine::handler::{EndHandler, EndOutcome, HandlerFailure, NativeHandler, Requeue};
use troupe_engine::metrics::ActorStats;
use troupe_engine::report::NoReporter;
use troupe_engine::{ActorSettings, Disposition, Engine, Handler};
use troupe_protocol::route::advance;
use troupe_protocol::{Envelope, Frame, Phase, SystemClock};
use troupe_transport::Transport;
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

/// Records what the sink consumed; fails on demand.
#[derive(Default)]
struct RecordingSink {
    seen: Mutex<Vec<Envelope>>,
    fail: AtomicBool,
}

#[async_trait]
impl EndHandler for RecordingSink {
    async fn handle(&self, envelope: &Envelope) -> Result<EndOutcome, Requeue> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(Requeue("disk full".into()));
        }
        self.seen.lock().unwrap().push(envelope.clone());
        Ok(EndOutcome::default())
    }
}

/// Ends the route: one frame with an empty `next`.
struct Finish;

#[async_trait]
impl NativeHandler for Finish {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        Ok(vec![Frame {
            payload: troupe_protocol::envelope::to_raw(&json!({"done": true})),
            route: advance(&input.route),
            headers: None,
            status: None,
        }])
    }
}

struct Rig {
    transport: Arc<EmbeddedTransport>,
    actor: Arc<Engine>,
    sink_stats: Arc<ActorStats>,
    sink: Arc<RecordingSink>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let transport =
        Arc::new(EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let sink = Arc::new(RecordingSink::default());
    let sink_stats = Arc::new(ActorStats::default());
    let engine = |name: &str, stats: Arc<ActorStats>| {
        Engine::new(
            ActorSettings::new(name),
            transport.clone(),
            Arc::new(NoReporter),
            Arc::new(SystemClock),
            stats,
        )
    };
    let sink_engine = Arc::new(engine("x-sink", sink_stats.clone()));
    let actor = Arc::new(
        engine("a", Arc::new(ActorStats::default())).with_local_sink(sink_engine, sink.clone()),
    );
    Rig {
        transport,
        actor,
        sink_stats,
        sink,
        _dir: dir,
    }
}

async fn deliver(r: &Rig) -> Disposition {
    let body = json!({"id": "t1", "route": {"prev": [], "curr": "a", "next": []}, "payload": {}});
    r.transport
        .send("a", Bytes::from(serde_json::to_vec(&body).unwrap()))
        .await
        .unwrap();
    let d = r.transport.receive("a").await.unwrap();
    r.actor
        .process(&Handler::Native(Arc::new(Finish)), &d)
        .await
}

#[tokio::test]
async fn finished_tasks_go_to_the_in_process_sink_not_its_queue() {
    let r = rig();
    assert_eq!(deliver(&r).await, Disposition::Acked);
    let seen = r.sink.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, "t1");
    let status = seen[0].status.as_ref().unwrap();
    assert_eq!(status.phase, Phase::Succeeded);
    assert_eq!(seen[0].route.prev, vec!["a"]);
    assert_eq!(
        ActorStats::get(&r.sink_stats.succeeded),
        1,
        "counted as the sink's work"
    );
    let depth = r.transport.depth("x-sink").await.unwrap();
    assert_eq!(
        depth.ready + depth.in_flight,
        0,
        "nothing went through the x-sink queue"
    );
    assert_eq!(
        r.transport.depth("a").await.unwrap().in_flight,
        0,
        "input acked"
    );
}

#[tokio::test]
async fn a_failing_sink_requeues_the_input() {
    let r = rig();
    r.sink.fail.store(true, Ordering::SeqCst);
    assert_eq!(deliver(&r).await, Disposition::Requeued);
    assert_eq!(
        r.transport.depth("a").await.unwrap().ready,
        1,
        "input back in its queue"
    );
    assert!(r.sink.seen.lock().unwrap().is_empty());
}
