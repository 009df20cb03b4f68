#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The replica receive loop (`run_replica`): stop, in-flight completion, receive-error
//! backoff (protocol.md §12), runtime-timeout exit (§10), and a full pass over the
//! embedded transport.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use serde_json::json;
use tokio::sync::{watch, Notify};
use troupe_engine::consumer::{run_replica, ReplicaExit};
use troupe_engine::handler::{HandlerFailure, NativeHandler};
use troupe_engine::metrics::ActorStats;
use troupe_engine::report::NoReporter;
use troupe_engine::{Engine, Handler};
use troupe_protocol::{Envelope, Frame, SystemClock};
use troupe_runtime::client::RuntimeClient;
use troupe_transport::{DeliveryHandle, Transport};
use troupe_transport_embedded::{EmbeddedOptions, EmbeddedTransport};

fn acks(b: &Bench) -> usize {
    b.ops().iter().filter(|o| matches!(o, Op::Ack(_))).count()
}

async fn wait_for_acks(b: &Bench, n: usize) {
    while acks(b) < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&input()).unwrap()
}

#[tokio::test]
async fn processes_until_stopped() {
    let b = Bench::new(settings());
    let h = b.native(|e| Ok(vec![pass_through(e, json!(1))]));
    for _ in 0..3 {
        b.transport.push("q.b", body());
    }
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    wait_for_acks(&b, 3).await;
    assert_eq!(b.sends().len(), 3);
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert_eq!(ActorStats::get(&b.stats.in_flight), 0);
}

#[tokio::test]
async fn stop_before_start_returns_at_once() {
    let b = Bench::new(settings());
    let h = b.native(|_| Ok(vec![]));
    b.transport.push("q.b", body());
    let (_stop, stop_rx) = watch::channel(true);
    assert_eq!(
        run_replica(b.engine.clone(), h, stop_rx).await,
        ReplicaExit::Stopped
    );
    assert!(b.ops().is_empty(), "nothing received");
}

/// Blocks inside the handler until released.
struct Gate {
    entered: Notify,
    release: Notify,
    calls: AtomicUsize,
}

#[async_trait]
impl NativeHandler for Gate {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.entered.notify_one();
        self.release.notified().await;
        Ok(vec![pass_through(input, json!("late"))])
    }
}

#[tokio::test]
async fn stop_lets_in_flight_messages_finish() {
    let b = Bench::new(settings());
    let gate = Arc::new(Gate {
        entered: Notify::new(),
        release: Notify::new(),
        calls: AtomicUsize::new(0),
    });
    b.transport.push("q.b", body());
    b.transport.push("q.b", body());
    let (stop, stop_rx) = watch::channel(false);
    let mut replica = tokio::spawn(run_replica(
        b.engine.clone(),
        Handler::Native(gate.clone()),
        stop_rx,
    ));
    gate.entered.notified().await;
    stop.send_replace(true);
    // Still in the handler: the replica must not return yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut replica)
            .await
            .is_err(),
        "returned while a message was in flight"
    );
    assert_eq!(ActorStats::get(&b.stats.in_flight), 1);
    gate.release.notify_one();
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert_eq!(acks(&b), 1, "the in-flight message was finished and acked");
    assert_eq!(
        gate.calls.load(Ordering::SeqCst),
        1,
        "no new message after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stop_sender_stops_the_replica() {
    let b = Bench::new(settings());
    let h = b.native(|_| Ok(vec![]));
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(stop);
    let exit = tokio::time::timeout(Duration::from_secs(5), replica)
        .await
        .expect("replica must stop once nobody can stop it any more")
        .unwrap();
    assert_eq!(exit, ReplicaExit::Stopped);
}

#[tokio::test(start_paused = true)]
async fn receive_errors_back_off_exponentially() {
    let b = Bench::new(settings());
    let h = b.native(|_| Ok(vec![]));
    b.transport.fail.lock().unwrap().receive_errors = 4;
    b.transport.push("q.b", body());
    let (stop, stop_rx) = watch::channel(false);
    let started = tokio::time::Instant::now();
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    wait_for_acks(&b, 1).await;
    let waited = started.elapsed();
    // 1 + 2 + 4 + 8 s of backoff, then success.
    assert!(
        waited >= Duration::from_secs(15) && waited < Duration::from_millis(15_100),
        "{waited:?}"
    );
    // The counter resets on success: the next error waits 1 s again.
    b.transport.fail.lock().unwrap().receive_errors = 1;
    // Wake the idle receive so it sees the injected error.
    let t0 = tokio::time::Instant::now();
    b.transport.push("q.other", body());
    b.transport.push("q.b", body());
    wait_for_acks(&b, 2).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1_100),
        "{waited:?}"
    );
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

#[tokio::test(start_paused = true)]
async fn stop_interrupts_a_receive_backoff() {
    let b = Bench::new(settings());
    let h = b.native(|_| Ok(vec![]));
    b.transport.fail.lock().unwrap().receive_errors = 100;
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let t0 = tokio::time::Instant::now();
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert!(t0.elapsed() < Duration::from_millis(10));
}

#[tokio::test(start_paused = true)]
async fn runtime_timeout_stops_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = FakeRuntime::start(dir.path(), |_| Reply::Hang);
    let mut s = settings();
    s.actor_timeout = Duration::from_secs(1);
    s.concurrency = 3;
    let b = Bench::new(s);
    let h = Handler::Runtime(Arc::new(RuntimeClient::new(&runtime.socket)));
    b.transport.push("q.b", body());
    let (_stop, stop_rx) = watch::channel(false);
    let exit = run_replica(b.engine.clone(), h, stop_rx).await;
    assert_eq!(exit, ReplicaExit::RuntimeTimedOut);
    let (q, sump) = b.single_send();
    assert_eq!(q, "q.x-sump");
    assert_eq!(sump["status"]["reason"], "Timeout");
    assert_eq!(acks(&b), 1, "acked before the exit");
}

#[tokio::test]
async fn concurrency_runs_messages_in_parallel() {
    let mut s = settings();
    s.concurrency = 2;
    let b = Bench::new(s);
    let gate = Arc::new(Gate {
        entered: Notify::new(),
        release: Notify::new(),
        calls: AtomicUsize::new(0),
    });
    b.transport.push("q.b", body());
    b.transport.push("q.b", body());
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(
        b.engine.clone(),
        Handler::Native(gate.clone()),
        stop_rx,
    ));
    // Both messages enter the handler before either is released.
    while gate.calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(ActorStats::get(&b.stats.in_flight), 2);
    gate.release.notify_waiters();
    wait_for_acks(&b, 2).await;
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

// ------------------------------------------------------------------ embedded transport

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pass_over_the_embedded_transport() {
    let dir = tempfile::tempdir().unwrap();
    let transport =
        Arc::new(EmbeddedTransport::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let mut s = troupe_engine::ActorSettings::new("b");
    s.resiliency = troupe_protocol::resiliency::Resiliency::from_values(
        Some(&json!({"default": {"maxAttempts": 3, "backoff": "constant",
                                 "initialDelay": "1h"}})),
        None,
    )
    .unwrap();
    let engine = Arc::new(Engine::new(
        s,
        transport.clone(),
        Arc::new(NoReporter),
        Arc::new(SystemClock),
        Arc::new(ActorStats::default()),
    ));
    assert_eq!(engine.queue(), "b", "bare queue names on embedded");
    let handler = Handler::Native(Arc::new(Doubler));
    let mut v = input();
    v["status"].as_object_mut().unwrap().remove("deadline_at");
    transport
        .send("b", serde_json::to_vec(&v).unwrap().into())
        .await
        .unwrap();
    v["payload"] = json!("fail");
    transport
        .send("b", serde_json::to_vec(&v).unwrap().into())
        .await
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(engine.clone(), handler, stop_rx));
    let out = loop {
        if let Some(d) = transport.try_receive("c").unwrap() {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body["payload"], json!({"q": 2}));
    assert_eq!(
        body["route"],
        json!({"prev": ["a", "b"], "curr": "c", "next": []})
    );
    assert_eq!(body["status"]["phase"], "pending");
    // The failing message is parked as a delayed retry on b's own queue.
    let depth = loop {
        let d = transport.depth("b").await.unwrap();
        if d.delayed == 1 && d.in_flight == 0 {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(depth.ready, 0, "both inputs acked");
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert_eq!(ActorStats::get(&engine.stats().retried), 1);
    transport.close().await;
}

/// Doubles `payload.q`; fails on the payload `"fail"`.
struct Doubler;

#[async_trait]
impl NativeHandler for Doubler {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        let p: serde_json::Value = serde_json::from_str(input.payload.get()).unwrap();
        if p == json!("fail") {
            return Err(value_error("no"));
        }
        let q = p["q"].as_i64().unwrap();
        Ok(vec![pass_through(input, json!({ "q": q * 2 }))])
    }
}

#[tokio::test]
async fn cancelled_processing_does_not_leak_the_in_flight_count() {
    // The caller bounds the shutdown grace period by dropping the replica future.
    let b = Bench::new(settings());
    let gate = Arc::new(Gate {
        entered: Notify::new(),
        release: Notify::new(),
        calls: AtomicUsize::new(0),
    });
    b.transport.push("q.b", body());
    let (_stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(
        b.engine.clone(),
        Handler::Native(gate.clone()),
        stop_rx,
    ));
    gate.entered.notified().await;
    assert_eq!(ActorStats::get(&b.stats.in_flight), 1);
    replica.abort();
    assert!(replica.await.unwrap_err().is_cancelled());
    // The workers' JoinSet aborts them as it drops; give the runtime a moment to run it.
    for _ in 0..200 {
        if ActorStats::get(&b.stats.in_flight) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(ActorStats::get(&b.stats.in_flight), 0);
    assert_eq!(acks(&b), 0, "not acked: it will be redelivered");
}

fn acked(b: &Bench, seq: u64) -> bool {
    b.ops().contains(&Op::Ack(DeliveryHandle::Seq(seq)))
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// A replica of actor `b` with `pipeline` over a transport that holds confirms, with
/// `messages` queued and a pass-through handler.
fn pipelined(
    pipeline: usize,
    messages: usize,
) -> (
    Bench,
    watch::Sender<bool>,
    tokio::task::JoinHandle<ReplicaExit>,
) {
    let mut s = settings();
    s.pipeline = pipeline;
    let b = Bench::new(s);
    b.transport.hold_confirms();
    let h = b.native(|e| Ok(vec![pass_through(e, json!(1))]));
    for _ in 0..messages {
        b.transport.push("q.b", body());
    }
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    (b, stop, replica)
}

#[tokio::test]
async fn the_next_message_runs_while_confirms_are_pending_and_acks_wait_for_them() {
    let (b, stop, replica) = pipelined(1, 2);
    // Both handlers ran and sent before any broker confirm arrived...
    wait_until("both messages sent", || b.sends().len() == 2).await;
    assert_eq!(acks(&b), 0, "no ack before the confirm");
    // ...and each input is acked only once its own output is durable.
    b.transport.confirm(true);
    wait_until("message 1 acked", || acked(&b, 1)).await;
    assert!(!acked(&b, 2), "message 2 acked before its confirm");
    b.transport.confirm(true);
    wait_until("message 2 acked", || acked(&b, 2)).await;
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert_eq!(ActorStats::get(&b.stats.in_flight), 0);
}

#[tokio::test]
async fn the_pipeline_depth_bounds_messages_waiting_for_confirms() {
    let (b, stop, replica) = pipelined(1, 3);
    wait_until("two messages sent", || b.sends().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.sends().len(),
        2,
        "a third message began with one settling and one waiting"
    );
    assert_eq!(ActorStats::get(&b.stats.in_flight), 2);
    b.transport.confirm(true);
    wait_until("the third message sent", || b.sends().len() == 3).await;
    b.transport.confirm(true);
    b.transport.confirm(true);
    wait_until("all acked", || acks(&b) == 3).await;
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

#[tokio::test]
async fn pipeline_zero_acks_each_message_before_taking_the_next() {
    let (b, stop, replica) = pipelined(0, 2);
    wait_until("message 1 sent", || b.sends().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        b.sends().len(),
        1,
        "message 2 began before message 1 settled"
    );
    b.transport.confirm(true);
    wait_until("message 1 acked", || acked(&b, 1)).await;
    wait_until("message 2 sent", || b.sends().len() == 2).await;
    b.transport.confirm(true);
    wait_until("message 2 acked", || acked(&b, 2)).await;
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

#[tokio::test]
async fn a_refused_confirm_requeues_the_input_instead_of_acking_it() {
    let (b, stop, replica) = pipelined(1, 2);
    wait_until("both messages sent", || b.sends().len() == 2).await;
    b.transport.confirm(false);
    b.transport.confirm(true);
    wait_until("both settled", || {
        acks(&b) == 1 && b.ops().iter().any(|o| matches!(o, Op::Nack(..)))
    })
    .await;
    assert!(b
        .ops()
        .contains(&Op::Nack(DeliveryHandle::Seq(1), Duration::ZERO)));
    assert!(
        !acked(&b, 1),
        "a message whose output the broker refused was acked"
    );
    assert!(acked(&b, 2));
    assert_eq!(ActorStats::get(&b.stats.requeued), 1);
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

#[tokio::test]
async fn stop_waits_for_messages_still_settling() {
    let (b, stop, mut replica) = pipelined(1, 1);
    wait_until("message sent", || b.sends().len() == 1).await;
    stop.send_replace(true);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut replica)
            .await
            .is_err(),
        "returned while a message waited for its confirm"
    );
    b.transport.confirm(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
    assert!(
        acked(&b, 1),
        "the settling message was acked before the replica stopped"
    );
}

fn prefetches(b: &Bench) -> Vec<u16> {
    b.ops()
        .into_iter()
        .filter_map(|o| match o {
            Op::Prefetch(q, n) if q == "q.b" => Some(n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_fast_handler_with_slow_confirms_deepens_the_pipeline() {
    let mut s = settings();
    s.pipeline = 4;
    let b = Bench::new(s);
    b.transport.hold_confirms();
    let h = b.native(|e| Ok(vec![pass_through(e, json!(1))]));
    for _ in 0..40 {
        b.transport.push("q.b", body());
    }
    assert_eq!(b.engine.pipeline_depth(), 1, "starts with one settling");
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    // The broker confirms each send 3 ms after it was made; the handler takes µs.
    let t = b.transport.clone();
    let confirmer = tokio::spawn(async move {
        for _ in 0..40 {
            while t.held_confirms() == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
            t.confirm(true);
        }
    });
    wait_until("all acked", || acks(&b) == 40).await;
    confirmer.await.unwrap();
    assert_eq!(
        prefetches(&b),
        vec![5],
        "raised once, to 1 running + 4 settling"
    );
    assert_eq!(b.engine.pipeline_depth(), 4);
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

#[tokio::test]
async fn a_slow_handler_runs_without_a_pipeline_and_holds_one_message() {
    let mut s = settings();
    s.pipeline = 4;
    let b = Bench::new(s);
    let h = Handler::Native(Arc::new(Sleepy(Duration::from_millis(120))));
    for _ in 0..2 {
        b.transport.push("q.b", body());
    }
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    wait_until("both acked", || acks(&b) == 2).await;
    assert_eq!(
        prefetches(&b),
        vec![1],
        "dropped to prefetch 1 after the first slow call"
    );
    assert_eq!(b.engine.pipeline_depth(), 0);
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}

/// Takes its time, then passes the payload on.
struct Sleepy(Duration);

#[async_trait]
impl NativeHandler for Sleepy {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        tokio::time::sleep(self.0).await;
        Ok(vec![pass_through(input, json!("slow"))])
    }
}

/// Sleeps (without blocking the runtime) before passing the envelope on.
struct Slow(Duration);

#[async_trait]
impl NativeHandler for Slow {
    async fn handle(&self, input: &Envelope) -> Result<Vec<Frame>, HandlerFailure> {
        tokio::time::sleep(self.0).await;
        Ok(vec![pass_through(input, json!(1))])
    }
}

#[tokio::test]
async fn a_running_handler_keeps_extending_its_delivery_until_the_ack() {
    let b = Bench::new(settings());
    *b.transport.extend_every.lock().unwrap() = Some(Duration::from_millis(20));
    let h = Handler::Native(Arc::new(Slow(Duration::from_millis(300))));
    b.transport.push("q.b", body());
    let (stop, stop_rx) = watch::channel(false);
    let replica = tokio::spawn(run_replica(b.engine.clone(), h, stop_rx));
    wait_until("acked", || acks(&b) == 1).await;
    let ops = b.ops();
    let ack_at = ops.iter().position(|o| matches!(o, Op::Ack(_))).unwrap();
    let before_ack = ops[..ack_at]
        .iter()
        .filter(|o| **o == Op::Extend(DeliveryHandle::Seq(1)))
        .count();
    // 300 ms of handler at one extension per 20 ms.
    assert!(
        before_ack >= 5,
        "only {before_ack} extensions while the handler ran: {ops:?}"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = b
        .ops()
        .iter()
        .filter(|o| matches!(o, Op::Extend(_)))
        .count();
    let at_ack = ops.iter().filter(|o| matches!(o, Op::Extend(_))).count();
    // One tick may fall between the ack and the lease's release; five would not.
    assert!(
        after <= at_ack + 1,
        "extensions went on after the ack: {at_ack} then {after}"
    );
    stop.send_replace(true);
    assert_eq!(replica.await.unwrap(), ReplicaExit::Stopped);
}
