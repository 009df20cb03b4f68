//! Case 8: queue provisioning ([`Transport::create_queue`] / [`Transport::delete_queue`]),
//! what the Kubernetes operator does when an actor appears or goes away.
//!
//! What a deleted queue looks like differs per broker, so the case checks what every
//! transport can observe through the trait:
//! - where [`Transport::counts_backlog`] holds, `depth` of the deleted queue is zero
//!   (whether the broker still has an empty queue of that name or none at all, which
//!   a later use may create again, is not observable and not checked);
//! - on every transport, a message left unreceived in the queue when it was deleted is
//!   never delivered after the queue is created again: a fresh consumer gets only what
//!   was sent after the re-create. This is the check Pub/Sub (no backlog count) relies on.

use std::time::Duration;

use tokio::time::timeout;
use troupe_transport::Transport;

use crate::{body, eventually, must_receive, must_stay_empty, unique_actor, Harness, EXCLUSIVE};
use crate::{QUIET_WAIT, RECEIVE_WAIT};

/// How long one provisioning call may take on a healthy broker.
const ADMIN_WAIT: Duration = Duration::from_secs(30);

async fn admin(
    what: &str,
    call: impl std::future::Future<Output = Result<(), troupe_transport::TransportError>>,
) {
    match timeout(ADMIN_WAIT, call).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{what} failed: {e}"),
        Err(_) => panic!("{what} did not return within {ADMIN_WAIT:?}"),
    }
}

/// Backlog plus delayed messages of `queue`, as `depth` reports them.
async fn total(t: &dyn Transport, queue: &str) -> Result<u64, String> {
    let d = t
        .depth(queue)
        .await
        .map_err(|e| format!("depth failed: {e}"))?;
    Ok(d.backlog() + d.delayed)
}

/// Case 8: `create_queue` is idempotent and a message sent after it is received;
/// `delete_queue` removes the queue with its messages (see the module doc for what is
/// observed), is idempotent, and a queue that never existed deletes without error.
pub async fn queue_provisioning(h: &dyn Harness) {
    let _shared = EXCLUSIVE.read().await;
    let caps = h.capabilities();
    let t = h.connect().await;
    let queue = t.queue_name(&unique_actor("conf-prov"));

    admin("create_queue", t.create_queue(&queue)).await;
    admin("create_queue of an existing queue", t.create_queue(&queue)).await;
    t.send(&queue, body("{\"n\":\"first\"}")).await.unwrap();
    // A consumer of its own, closed after: a live one may prefetch what follows, which
    // `depth` would then not count as ready.
    let first = h.connect().await;
    let d = must_receive(&*first, &queue, RECEIVE_WAIT, "send after create_queue").await;
    assert_eq!(&d.body[..], b"{\"n\":\"first\"}");
    first.ack(&d).await.unwrap();
    first.close().await;

    // Two messages nobody receives: delete_queue must take them with it.
    for n in ["stale-1", "stale-2"] {
        t.send(&queue, body(&format!("{{\"n\":\"{n}\"}}")))
            .await
            .unwrap();
    }
    if t.counts_backlog() {
        let (tr, q) = (&*t, queue.as_str());
        eventually(
            caps.depth_settle,
            "messages before delete_queue",
            || async move {
                match total(tr, q).await? {
                    n if n >= 2 => Ok(()),
                    n => Err(format!("depth {n}, want 2")),
                }
            },
        )
        .await;
    }
    admin("delete_queue", t.delete_queue(&queue)).await;
    admin("delete_queue of a deleted queue", t.delete_queue(&queue)).await;
    if t.counts_backlog() {
        let (tr, q) = (&*t, queue.as_str());
        eventually(
            caps.depth_settle,
            "depth after delete_queue",
            || async move {
                match total(tr, q).await? {
                    0 => Ok(()),
                    n => Err(format!("depth {n}, want 0")),
                }
            },
        )
        .await;
    }

    // Created again, the queue holds only what is sent from now on.
    admin("create_queue after delete_queue", t.create_queue(&queue)).await;
    if t.counts_backlog() {
        assert_eq!(
            total(&*t, &queue).await,
            Ok(0),
            "a re-created queue starts empty"
        );
    }
    t.send(&queue, body("{\"n\":\"fresh\"}")).await.unwrap();
    let reader = h.connect().await;
    let d = must_receive(&*reader, &queue, RECEIVE_WAIT, "send after re-create").await;
    assert_eq!(
        String::from_utf8_lossy(&d.body),
        "{\"n\":\"fresh\"}",
        "a message sent before delete_queue came back"
    );
    reader.ack(&d).await.unwrap();
    must_stay_empty(&*reader, &queue, QUIET_WAIT * 2, "after delete_queue").await;

    let never = t.queue_name(&unique_actor("conf-never"));
    admin(
        "delete_queue of a queue that never existed",
        t.delete_queue(&never),
    )
    .await;
    admin("delete_queue (cleanup)", t.delete_queue(&queue)).await;
    reader.close().await;
    t.close().await;
}
