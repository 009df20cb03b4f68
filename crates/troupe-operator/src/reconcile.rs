//! One reconcile of one AsyncActor (platform.md §3): resolve its transport, check the
//! transport Secret, create the queue, server-side-apply the rendered children (owned by
//! the AsyncActor), delete children the render no longer has, write the status. Any
//! [`Problem`] found before the first apply stops the reconcile with nothing applied: a
//! False condition, a Warning Event, a retry with backoff.
//!
//! Deletion runs behind finalizer `asya.sh/finalizer`: the queue is deleted, then the
//! children (garbage collection would also remove them through their owner references,
//! but a cluster without kube-controller-manager, like the tests', has none), then the
//! finalizer goes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::{Client, Resource, ResourceExt};
use tokio::time::Instant;
use troupe_render::{ActorInput, Mesh, Object, Options, TRANSPORT_SECRET};
use troupe_resource::{AsyncActor, AsyncActorStatus};

use crate::config::{required_secret_keys, FIELD_MANAGER, FINALIZER};
use crate::error::is_not_found;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::queues::{QueueOutcome, Queues, Resolved};
use crate::status::{self, Observed, Problem};
use crate::OperatorError;

/// Kinds the operator may have created for an actor (`apiVersion`, `kind`), searched
/// when pruning and on delete.
pub const CHILD_KINDS: [(&str, &str); 5] = [
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("apps/v1", "Deployment"),
];

/// Label naming the actor of a child (platform.md §2 "Labels").
const ACTOR_LABEL_KEY: &str = "asya.sh/actor";

/// Annotation on the AsyncActor naming the transport its queue was created on, so a
/// transport change deletes the old queue and the finalizer deletes the right one.
pub const QUEUE_TRANSPORT_ANNOTATION: &str = "asya.sh/queue-transport";

/// Longest wait between retries of a failing actor.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Transports and their connections.
    pub queues: Queues,
    /// Event publisher.
    pub events: Events,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Renderer options.
    pub options: Options,
    /// How often a healthy actor is looked at again.
    pub resync: Duration,
    /// Consecutive failures per actor (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Generation each actor's stale children were last pruned at: what is rendered
    /// changes only with the spec (or the operator's settings, read once per process),
    /// so re-reconciles caused by status changes skip the five list calls.
    pruned: Mutex<HashMap<String, Option<i64>>>,
}

impl Context {
    /// A context for the controller.
    pub fn new(
        client: Client,
        queues: Queues,
        events: Events,
        metrics: Arc<Metrics>,
        options: Options,
        resync: Duration,
    ) -> Self {
        Context {
            client,
            queues,
            events,
            metrics,
            options,
            resync,
            failures: Mutex::new(HashMap::new()),
            pruned: Mutex::new(HashMap::new()),
        }
    }

    /// The next wait for `key` after one more failure: 1 s doubling, at most 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        backoff_after(*n)
    }

    fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// Wait after `n` consecutive failures.
pub fn backoff_after(n: u32) -> Duration {
    let secs = 1u64 << n.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

fn key(actor: &AsyncActor) -> String {
    format!(
        "{}/{}",
        actor.namespace().unwrap_or_default(),
        actor.name_any()
    )
}

/// The controller's reconcile function.
pub async fn reconcile(actor: Arc<AsyncActor>, ctx: Arc<Context>) -> Result<Action, OperatorError> {
    let started = Instant::now();
    let ns = actor.namespace().unwrap_or_default();
    let name = actor.name_any();
    let api: Api<AsyncActor> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, actor, |event| async {
        match event {
            FinalizerEvent::Apply(a) => apply(&a, &ctx).await,
            FinalizerEvent::Cleanup(a) => cleanup(&a, &ctx).await,
        }
    })
    .await
    .map_err(|e| OperatorError::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(&ns, &name, started.elapsed());
    result
}

/// The controller's error policy: count, log, retry with backoff.
pub fn error_policy(actor: Arc<AsyncActor>, err: &OperatorError, ctx: Arc<Context>) -> Action {
    let ns = actor.namespace().unwrap_or_default();
    let name = actor.name_any();
    ctx.metrics.failed(&ns, &name, err.metric_reason());
    let wait = ctx.backoff(&key(&actor));
    tracing::warn!(namespace = %ns, actor = %name, error = %err, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The owner reference every child carries.
pub fn owner_reference(actor: &AsyncActor) -> Option<OwnerReference> {
    let mut owner = actor.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

/// `ApiResource` of an `apiVersion` / `kind` pair.
pub fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Children found in the cluster that the current render does not contain: `existing`
/// are `(kind, name, owner uids)`, `current` the rendered `(kind, name)`; only children
/// owned by `uid` are candidates.
pub fn stale_children(
    current: &BTreeSet<(String, String)>,
    existing: &[(String, String, Vec<String>)],
    uid: &str,
) -> Vec<(String, String)> {
    existing
        .iter()
        .filter(|(_, _, owners)| owners.iter().any(|o| o == uid))
        .filter(|(kind, name, _)| !current.contains(&(kind.clone(), name.clone())))
        .map(|(kind, name, _)| (kind.clone(), name.clone()))
        .collect()
}

/// Holds `actor` back for `problem`: status, Event, metric, retry with backoff.
async fn blocked(
    actor: &AsyncActor,
    ctx: &Context,
    action: &str,
    problem: Problem,
) -> Result<Action, OperatorError> {
    let ns = actor.namespace().unwrap_or_default();
    let name = actor.name_any();
    tracing::info!(namespace = %ns, actor = %name, reason = problem.reason, "{}", problem.message);
    ctx.metrics.failed(&ns, &name, problem.reason);
    ctx.events.problem(actor, action, &problem).await;
    let new = status::blocked(
        actor.status.as_ref(),
        actor.metadata.generation,
        &problem,
        Timestamp::now(),
    );
    write_status(actor, ctx, new).await?;
    Ok(Action::requeue(ctx.backoff(&key(actor))))
}

async fn apply(actor: &AsyncActor, ctx: &Context) -> Result<Action, OperatorError> {
    let ns = actor.namespace().unwrap_or_default();
    let resolved = match ctx.queues.resolve(&actor.spec) {
        Ok(r) => r,
        Err(p) => return blocked(actor, ctx, "ResolveTransport", p).await,
    };
    let mesh = Mesh {
        namespace: ns.clone(),
        transport: resolved.render.clone(),
        actors: Vec::new(),
        options: ctx.options.clone(),
    };
    let input = ActorInput {
        spec: actor.spec.clone(),
        labels: actor.labels().clone(),
        owner: owner_reference(actor),
        runtime_py: None,
    };
    let objects = match troupe_render::render_actor(&mesh, &input) {
        Ok(o) => o,
        Err(e) => return blocked(actor, ctx, "Render", Problem::invalid_spec(e.to_string())).await,
    };
    if let Some(p) = check_secret(ctx, &ns, &resolved).await? {
        return blocked(actor, ctx, "CheckSecret", p).await;
    }
    let queue = mesh.queue(&actor.spec.actor);
    let t_queue = Instant::now();
    if let QueueOutcome::Refused(p) = ctx.queues.create(&resolved, &ns, &queue).await? {
        return blocked(actor, ctx, "CreateQueue", p).await;
    }
    let queue_took = t_queue.elapsed();
    let t_apply = Instant::now();
    let mut applied = Vec::new();
    let mut deployment = None;
    let mut keda = None;
    for o in &objects {
        let api_version = o.value["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let live = match apply_object(ctx, &ns, o, &api_version).await {
            Ok(live) => live,
            Err(OperatorError::Kube { source, .. }) if is_not_found(&source) => {
                let p = Problem::kind_missing(o.kind, &api_version);
                return blocked(actor, ctx, "ApplyChildren", p).await;
            }
            Err(e) => return Err(e),
        };
        match o.kind {
            "Deployment" => {
                let as_json = serde_json::to_value(&live).unwrap_or_default();
                deployment = Some(serde_json::from_value::<Deployment>(as_json).map_err(|e| {
                    OperatorError::Object {
                        kind: "Deployment".to_owned(),
                        name: o.name.clone(),
                        message: e.to_string(),
                    }
                })?)
            }
            "ScaledObject" => keda = Some(status::keda(live.data.get("status"))),
            _ => {}
        }
        applied.push(o.kind.to_owned());
    }
    let generation = actor.metadata.generation;
    let seen_generation = ctx
        .pruned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key(actor))
        .copied();
    if seen_generation != Some(generation) {
        prune(actor, ctx, &ns, &objects).await?;
        ctx.pruned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key(actor), generation);
    }
    retire_old_queue(actor, ctx, &ns, &queue, &resolved).await?;
    let apply_took = t_apply.elapsed();
    let seen = Observed {
        generation: actor.metadata.generation,
        transport: resolved.spec.describe(),
        queue,
        queue_url: None,
        applied,
        keda,
        deployment,
    };
    let new = status::healthy(actor.status.as_ref(), &seen, Timestamp::now());
    let changed = new.phase != actor.status.as_ref().and_then(|s| s.phase);
    let phase = new.phase;
    let t_status = Instant::now();
    write_status(actor, ctx, new).await?;
    tracing::debug!(
        namespace = %ns,
        actor = %actor.name_any(),
        queue = ?queue_took,
        apply = ?apply_took,
        status = ?t_status.elapsed(),
        "applied"
    );
    ctx.metrics.phase(&ns, &actor.name_any(), phase);
    // A Normal Event when the actor becomes Ready or Napping (Creating is the default
    // state and says nothing).
    if let Some(p) = phase.filter(|p| changed && *p != troupe_resource::Phase::Creating) {
        ctx.events
            .normal(
                actor,
                &format!("{p:?}"),
                "Reconcile",
                format!("actor is {p:?}"),
            )
            .await;
    }
    ctx.succeeded(&key(actor));
    Ok(Action::requeue(ctx.resync))
}

/// After a transport change (`compositionRef`), deletes the queue on the transport the
/// actor used before (its sidecars now use the new one), then records the new one.
async fn retire_old_queue(
    actor: &AsyncActor,
    ctx: &Context,
    ns: &str,
    queue: &str,
    resolved: &Resolved,
) -> Result<(), OperatorError> {
    let before = actor.annotations().get(QUEUE_TRANSPORT_ANNOTATION).cloned();
    if before.as_deref() == Some(resolved.kind) {
        return Ok(());
    }
    if let Some(old) = before.as_deref().and_then(crate::config::known) {
        match ctx.queues.resolve_kind(old) {
            Ok(old_transport) => {
                if let QueueOutcome::Refused(p) =
                    ctx.queues.delete(&old_transport, ns, queue).await?
                {
                    ctx.events.problem(actor, "DeleteOldQueue", &p).await;
                }
                ctx.events
                    .normal(
                        actor,
                        "TransportChanged",
                        "DeleteOldQueue",
                        format!(
                            "moved from {old} to {}: deleted queue {queue} on {old}",
                            resolved.kind
                        ),
                    )
                    .await;
            }
            Err(p) => {
                tracing::warn!(namespace = %ns, actor = %actor.name_any(), "cannot delete the queue on the previous transport {old}: {}", p.message)
            }
        }
    }
    let api: Api<AsyncActor> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {QUEUE_TRANSPORT_ANNOTATION: resolved.kind}}});
    api.patch(
        &actor.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| {
        OperatorError::kube(
            format!("annotating AsyncActor {ns}/{}", actor.name_any()),
            e,
        )
    })?;
    Ok(())
}

/// The transport Secret's required keys, when the transport needs them: `Some` names
/// what is missing.
async fn check_secret(
    ctx: &Context,
    ns: &str,
    resolved: &Resolved,
) -> Result<Option<Problem>, OperatorError> {
    let keys = required_secret_keys(&resolved.render);
    if keys.is_empty() {
        return Ok(None);
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = api
        .get_opt(TRANSPORT_SECRET)
        .await
        .map_err(|e| OperatorError::kube(format!("reading Secret {ns}/{TRANSPORT_SECRET}"), e))?;
    let present: BTreeSet<String> = secret
        .map(|s| {
            let mut k: BTreeSet<String> = s.data.unwrap_or_default().into_keys().collect();
            k.extend(s.string_data.unwrap_or_default().into_keys());
            k
        })
        .unwrap_or_default();
    let missing: Vec<&str> = keys.into_iter().filter(|k| !present.contains(*k)).collect();
    Ok((!missing.is_empty()).then(|| Problem::secret_missing(ns, TRANSPORT_SECRET, &missing)))
}

/// Server-side apply of one rendered object; returns it as the API server has it.
async fn apply_object(
    ctx: &Context,
    ns: &str,
    o: &Object,
    api_version: &str,
) -> Result<DynamicObject, OperatorError> {
    let ar = api_resource(api_version, o.kind);
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ar);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&o.name, &params, &Patch::Apply(&o.value))
        .await
        .map_err(|e| OperatorError::kube(format!("applying {} {ns}/{}", o.kind, o.name), e))
}

/// `(kind, name, owner uids)` of every object of [`CHILD_KINDS`] labelled as this actor's
/// and managed by Troupe. Kinds the cluster does not serve (no KEDA) have none.
async fn children(
    ctx: &Context,
    ns: &str,
    actor: &str,
) -> Result<Vec<(String, String, Vec<String>)>, OperatorError> {
    let selector = format!(
        "app.kubernetes.io/managed-by={},{ACTOR_LABEL_KEY}={actor}",
        troupe_render::MANAGED_BY
    );
    let mut out = Vec::new();
    for (api_version, kind) in CHILD_KINDS {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), ns, &api_resource(api_version, kind));
        let list = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(OperatorError::kube(format!("listing {kind}s in {ns}"), e)),
        };
        for item in list.items {
            let owners = item
                .metadata
                .owner_references
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.uid)
                .collect();
            out.push((
                kind.to_owned(),
                item.metadata.name.unwrap_or_default(),
                owners,
            ));
        }
    }
    Ok(out)
}

async fn delete_child(
    ctx: &Context,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<(), OperatorError> {
    let Some((api_version, _)) = CHILD_KINDS.iter().find(|(_, k)| *k == kind) else {
        return Ok(());
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &api_resource(api_version, kind));
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(OperatorError::kube(
            format!("deleting {kind} {ns}/{name}"),
            e,
        )),
    }
}

/// Deletes this actor's children the render no longer contains (a TriggerAuthentication
/// after a transport change, the ScaledObject once scaling is disabled).
async fn prune(
    actor: &AsyncActor,
    ctx: &Context,
    ns: &str,
    rendered: &[Object],
) -> Result<(), OperatorError> {
    let uid = actor.uid().unwrap_or_default();
    let current: BTreeSet<(String, String)> = rendered
        .iter()
        .map(|o| (o.kind.to_owned(), o.name.clone()))
        .collect();
    let existing = children(ctx, ns, &actor.spec.actor).await?;
    for (kind, name) in stale_children(&current, &existing, &uid) {
        tracing::info!(namespace = %ns, actor = %actor.name_any(), kind = %kind, name = %name, "deleting a child the spec no longer renders");
        delete_child(ctx, ns, &kind, &name).await?;
    }
    Ok(())
}

async fn cleanup(actor: &AsyncActor, ctx: &Context) -> Result<Action, OperatorError> {
    let ns = actor.namespace().unwrap_or_default();
    let name = actor.name_any();
    // The transport the queue was created on, else the one the spec names now.
    let recorded = actor
        .annotations()
        .get(QUEUE_TRANSPORT_ANNOTATION)
        .and_then(|k| crate::config::known(k));
    let transport = match recorded {
        Some(kind) => ctx.queues.resolve_kind(kind),
        None => ctx.queues.resolve(&actor.spec),
    };
    match transport {
        Ok(resolved) => {
            let queue = format!("asya-{ns}-{}", actor.spec.actor);
            if let QueueOutcome::Refused(p) = ctx.queues.delete(&resolved, &ns, &queue).await? {
                // The broker will not delete it (permissions): say so, and let the
                // AsyncActor go rather than block the namespace's deletion forever.
                ctx.events.problem(actor, "DeleteQueue", &p).await;
            }
        }
        // Nothing was created for an actor whose transport never resolved.
        Err(p) => {
            tracing::info!(namespace = %ns, actor = %name, "no queue to delete: {}", p.message)
        }
    }
    let uid = actor.uid().unwrap_or_default();
    for (kind, child, owners) in children(ctx, &ns, &actor.spec.actor).await? {
        if owners.contains(&uid) {
            delete_child(ctx, &ns, &kind, &child).await?;
        }
    }
    ctx.metrics.phase(&ns, &name, None);
    ctx.succeeded(&key(actor));
    ctx.pruned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(actor));
    Ok(Action::await_change())
}

/// Writes `new` to the status subresource unless it is what the object already has.
async fn write_status(
    actor: &AsyncActor,
    ctx: &Context,
    new: AsyncActorStatus,
) -> Result<(), OperatorError> {
    if actor.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let ns = actor.namespace().unwrap_or_default();
    let name = actor.name_any();
    let api: Api<AsyncActor> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({
        "apiVersion": troupe_resource::API_VERSION,
        "kind": troupe_resource::KIND,
        "status": new,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| OperatorError::kube(format!("writing the status of AsyncActor {ns}/{name}"), e))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_owned_children_missing_from_the_render_are_stale() {
        let current: BTreeSet<(String, String)> = [("Deployment", "a"), ("ScaledObject", "a")]
            .iter()
            .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
            .collect();
        let existing = vec![
            (
                "Deployment".to_owned(),
                "a".to_owned(),
                vec!["u1".to_owned()],
            ),
            (
                "TriggerAuthentication".to_owned(),
                "a-trigger-auth".to_owned(),
                vec!["u1".to_owned()],
            ),
            // Same labels, another owner (an older AsyncActor of that name): not ours.
            (
                "ConfigMap".to_owned(),
                "a-runtime".to_owned(),
                vec!["u0".to_owned()],
            ),
        ];
        assert_eq!(
            stale_children(&current, &existing, "u1"),
            [(
                "TriggerAuthentication".to_owned(),
                "a-trigger-auth".to_owned()
            )]
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let waits: Vec<u64> = (1..=11).map(|n| backoff_after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_after(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn api_resources_come_from_api_version_and_kind() {
        let ar = api_resource("keda.sh/v1alpha1", "ScaledObject");
        assert_eq!(
            (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
            ("keda.sh", "v1alpha1", "scaledobjects")
        );
        let ar = api_resource("v1", "ServiceAccount");
        assert_eq!(
            (ar.group.as_str(), ar.plural.as_str()),
            ("", "serviceaccounts")
        );
        assert_eq!(
            api_resource("keda.sh/v1alpha1", "TriggerAuthentication").plural,
            "triggerauthentications"
        );
    }
}
