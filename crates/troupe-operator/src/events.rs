//! Kubernetes Events on AsyncActors (`kubectl describe asya NAME` shows them), through
//! kube's runtime [`Recorder`] (events.k8s.io/v1, repeated events folded into a series).
//! Publishing is best effort: a failed Event is logged, never a failed reconcile.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use troupe_resource::AsyncActor;

use crate::config::FIELD_MANAGER;
use crate::status::Problem;

/// Publishes the operator's Events.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// A recorder reporting as `troupe-operator` / `instance`.
    pub fn new(client: Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_owned(),
            instance: Some(instance.to_owned()),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// A Warning for `problem` (reason and message as in the status condition).
    pub async fn problem(&self, actor: &AsyncActor, action: &str, problem: &Problem) {
        self.publish(
            actor,
            EventType::Warning,
            problem.reason,
            action,
            problem.message.clone(),
        )
        .await;
    }

    /// A Normal event.
    pub async fn normal(&self, actor: &AsyncActor, reason: &str, action: &str, note: String) {
        self.publish(actor, EventType::Normal, reason, action, note)
            .await;
    }

    async fn publish(
        &self,
        actor: &AsyncActor,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = actor.object_ref(&());
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(
                actor = ?reference.name,
                namespace = ?reference.namespace,
                reason,
                error = %e,
                "cannot publish a Kubernetes Event"
            );
        }
    }
}
