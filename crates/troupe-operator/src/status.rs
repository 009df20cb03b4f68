//! An AsyncActor's status from what the operator saw (platform.md §2 "Status"), with no
//! I/O: `phase`, `infrastructure.{queue,keda,workload}`, conditions and
//! `observedGeneration`. The caller hands in `now` and the previous status, so a condition
//! keeps its `lastTransitionTime` while its status does not change, and writing the same
//! status twice is a no-op (no watch event, no reconcile loop).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use troupe_resource::{AsyncActorStatus, ChildReadiness, Infrastructure, Phase, WorkloadStatus};

/// Condition: the actor's transport is known and configured on the operator.
pub const TRANSPORT_CONFIGURED: &str = "TransportConfigured";
/// Condition: the queue exists on the broker.
pub const QUEUE_READY: &str = "QueueReady";
/// Condition: every rendered child was applied.
pub const CHILDREN_APPLIED: &str = "ChildrenApplied";
/// Condition: the actor is `Ready` or `Napping`.
pub const READY: &str = "Ready";

/// Something the user must fix before the actor can run; nothing is applied while it
/// lasts. It becomes a False condition and a Warning Event with the same message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The condition it fails ([`TRANSPORT_CONFIGURED`], [`QUEUE_READY`], ...).
    pub condition: &'static str,
    /// CamelCase reason (`UnknownTransport`, `SecretMissing`, `QueueRefused`, ...).
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Problem {
    /// `compositionRef` names a transport Troupe does not know.
    pub fn unknown_transport(composition: &str, known: &[&str]) -> Self {
        Problem {
            condition: TRANSPORT_CONFIGURED,
            reason: "UnknownTransport",
            message: format!(
                "spec.compositionRef.name '{composition}' names no transport Troupe knows: use one of {}, or remove compositionRef to use the cluster default",
                known
                    .iter()
                    .map(|k| format!("asyncactor-{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The transport is known but the operator has no settings for it.
    pub fn transport_not_configured(kind: &str, why: &str) -> Self {
        Problem {
            condition: TRANSPORT_CONFIGURED,
            reason: "TransportNotConfigured",
            message: format!(
                "the operator has no settings for transport '{kind}' ({why}): set them in the operator's environment (Helm value operator.env) and restart it, or pick another transport in spec.compositionRef"
            ),
        }
    }

    /// No `compositionRef` and no cluster default.
    pub fn no_default_transport() -> Self {
        Problem {
            condition: TRANSPORT_CONFIGURED,
            reason: "NoDefaultTransport",
            message: "the operator has no cluster default transport (ASYA_TRANSPORT is not set): set spec.compositionRef.name (e.g. asyncactor-rabbitmq) or ASYA_TRANSPORT and the broker's variables on the operator".to_owned(),
        }
    }

    /// Secret `troupe-transport` (or a key of it) is missing.
    pub fn secret_missing(namespace: &str, secret: &str, missing_keys: &[&str]) -> Self {
        let example = missing_keys
            .iter()
            .map(|k| format!("--from-literal={k}=..."))
            .collect::<Vec<_>>()
            .join(" ");
        Problem {
            condition: TRANSPORT_CONFIGURED,
            reason: "SecretMissing",
            message: format!(
                "Secret '{secret}' in namespace '{namespace}' must hold {} (the broker settings the sidecars and KEDA read): kubectl create secret generic {secret} -n {namespace} {example}",
                missing_keys.join(", ")
            ),
        }
    }

    /// The broker refused to create the queue.
    pub fn queue_refused(queue: &str, kind: &str, broker: &str) -> Self {
        Problem {
            condition: QUEUE_READY,
            reason: "QueueRefused",
            message: format!(
                "the {kind} broker refused to create queue '{queue}': {broker}; fix the actor name, namespace or broker permissions (queue names are asya-<namespace>-<actor>)"
            ),
        }
    }

    /// The renderer refused the spec (the CRD's rules should have caught it).
    pub fn invalid_spec(message: String) -> Self {
        Problem {
            condition: CHILDREN_APPLIED,
            reason: "InvalidSpec",
            message,
        }
    }

    /// A child kind is not installed in the cluster (KEDA's CRDs).
    pub fn kind_missing(kind: &str, api_version: &str) -> Self {
        Problem {
            condition: CHILDREN_APPLIED,
            reason: "KindNotInstalled",
            message: format!(
                "the cluster does not serve {kind} ({api_version}): install KEDA (its CRDs) or set spec.scaling.enabled: false"
            ),
        }
    }
}

/// What the operator saw of a healthy actor's children.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `metadata.generation` of the AsyncActor.
    pub generation: Option<i64>,
    /// Transport kind and where it points (no secrets).
    pub transport: String,
    /// The queue name.
    pub queue: String,
    /// Queue URL, where the transport has one.
    pub queue_url: Option<String>,
    /// Kinds applied, in order.
    pub applied: Vec<String>,
    /// The ScaledObject's readiness; `None` when scaling is disabled.
    pub keda: Option<ChildReadiness>,
    /// The Deployment as the API server returned it.
    pub deployment: Option<Deployment>,
}

/// Replicas the Deployment is asked for (KEDA or `spec.replicas`; the API default is 1).
pub fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `infrastructure.workload` from the Deployment: ready when its ready replicas reach
/// the desired count.
pub fn workload(d: &Deployment) -> WorkloadStatus {
    let desired = desired_replicas(d);
    let status = d.status.clone().unwrap_or_default();
    let ready_replicas = status.ready_replicas.unwrap_or(0);
    WorkloadStatus {
        ready: ready_replicas >= desired,
        replicas: Some(status.replicas.unwrap_or(0)),
        ready_replicas: Some(ready_replicas),
    }
}

/// `infrastructure.keda` from a ScaledObject's `status` (KEDA sets condition `Ready`).
pub fn keda(so_status: Option<&serde_json::Value>) -> ChildReadiness {
    let ready = so_status
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array())
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
        });
    match ready {
        Some(c) => ChildReadiness {
            ready: c.get("status").and_then(|s| s.as_str()) == Some("True"),
            message: c
                .get("message")
                .and_then(|m| m.as_str())
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
        },
        None => ChildReadiness {
            ready: false,
            message: Some("waiting for KEDA to report the ScaledObject Ready".to_owned()),
        },
    }
}

/// `phase`: Creating unless queue, KEDA and workload are ready; then Napping at 0
/// desired replicas, else Ready.
pub fn phase(
    queue_ready: bool,
    keda_ready: bool,
    workload: &WorkloadStatus,
    desired: i32,
) -> Phase {
    if !(queue_ready && keda_ready && workload.ready) {
        Phase::Creating
    } else if desired == 0 {
        Phase::Napping
    } else {
        Phase::Ready
    }
}

/// The status of an actor whose children were all applied.
pub fn healthy(
    prev: Option<&AsyncActorStatus>,
    seen: &Observed,
    now: Timestamp,
) -> AsyncActorStatus {
    let queue = ChildReadiness {
        ready: true,
        message: Some(format!("queue {} on {}", seen.queue, seen.transport)),
    };
    let keda_child = seen.keda.clone().unwrap_or(ChildReadiness {
        ready: true,
        message: Some("scaling disabled: fixed replicas".to_owned()),
    });
    let (workload, desired) = match &seen.deployment {
        Some(d) => (workload(d), desired_replicas(d)),
        None => (WorkloadStatus::default(), 1),
    };
    let phase = phase(queue.ready, keda_child.ready, &workload, desired);
    let prev_conditions = prev.map_or(&[][..], |p| &p.conditions[..]);
    let mut c = Conditions::new(prev_conditions, seen.generation, now);
    c.set(TRANSPORT_CONFIGURED, true, "Configured", &seen.transport);
    c.set(
        QUEUE_READY,
        true,
        "QueueCreated",
        queue.message.as_deref().unwrap_or_default(),
    );
    c.set(
        CHILDREN_APPLIED,
        true,
        "Applied",
        &format!("applied {}", seen.applied.join(", ")),
    );
    let (reason, message) = match phase {
        Phase::Ready => (
            "Ready",
            format!(
                "{} of {desired} replicas ready",
                workload.ready_replicas.unwrap_or(0)
            ),
        ),
        Phase::Napping => (
            "Napping",
            "scaled to zero; KEDA starts a replica when a message arrives".to_owned(),
        ),
        Phase::Creating if !keda_child.ready => (
            "WaitingForKeda",
            keda_child
                .message
                .clone()
                .unwrap_or_else(|| "waiting for KEDA".to_owned()),
        ),
        Phase::Creating => (
            "WaitingForWorkload",
            format!(
                "{} of {desired} replicas ready",
                workload.ready_replicas.unwrap_or(0)
            ),
        ),
    };
    c.set(READY, phase != Phase::Creating, reason, &message);
    AsyncActorStatus {
        phase: Some(phase),
        queue_url: seen.queue_url.clone(),
        queue_identifier: Some(seen.queue.clone()),
        infrastructure: Some(Infrastructure {
            queue: Some(queue),
            keda: Some(keda_child),
            workload: Some(workload),
        }),
        observed_generation: seen.generation,
        conditions: c.done(),
    }
}

/// The status of an actor held back by `problem`: phase Creating, the failing condition
/// and `Ready` False with the problem's reason and message; what was known stays.
pub fn blocked(
    prev: Option<&AsyncActorStatus>,
    generation: Option<i64>,
    problem: &Problem,
    now: Timestamp,
) -> AsyncActorStatus {
    let mut status = prev.cloned().unwrap_or_default();
    let mut c = Conditions::new(&status.conditions, generation, now);
    c.set(problem.condition, false, problem.reason, &problem.message);
    c.set(READY, false, problem.reason, &problem.message);
    if problem.condition == QUEUE_READY || problem.condition == TRANSPORT_CONFIGURED {
        let infra = status
            .infrastructure
            .get_or_insert_with(Infrastructure::default);
        infra.queue = Some(ChildReadiness {
            ready: false,
            message: Some(problem.message.clone()),
        });
    }
    status.phase = Some(Phase::Creating);
    status.observed_generation = generation;
    status.conditions = c.done();
    status
}

/// Builds a condition list from the previous one, keeping transition times.
struct Conditions<'a> {
    prev: &'a [Condition],
    out: Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl<'a> Conditions<'a> {
    fn new(prev: &'a [Condition], generation: Option<i64>, now: Timestamp) -> Self {
        Conditions {
            prev,
            out: prev.to_vec(),
            generation,
            now,
        }
    }

    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        let status = if ok { "True" } else { "False" };
        let since = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        let condition = Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: self.generation,
            last_transition_time: since,
        };
        match self.out.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = condition,
            None => self.out.push(condition),
        }
    }

    fn done(self) -> Vec<Condition> {
        self.out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    use super::*;

    fn deployment(replicas: Option<i32>, status: Option<(i32, i32)>) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas,
                ..DeploymentSpec::default()
            }),
            status: status.map(|(r, ready)| DeploymentStatus {
                replicas: Some(r),
                ready_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    fn seen(d: Deployment, keda_ready: Option<bool>) -> Observed {
        Observed {
            generation: Some(3),
            transport: "rabbitmq".into(),
            queue: "asya-prod-a".into(),
            queue_url: None,
            applied: vec!["ServiceAccount".into(), "Deployment".into()],
            keda: keda_ready.map(|ready| ChildReadiness {
                ready,
                message: None,
            }),
            deployment: Some(d),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn phase_follows_the_deployment_and_keda() {
        // Fresh Deployment (no controller has written status): Creating.
        let s = healthy(None, &seen(deployment(None, None), Some(true)), now());
        assert_eq!(s.phase, Some(Phase::Creating));
        let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "WaitingForWorkload")
        );
        assert_eq!(ready.message, "0 of 1 replicas ready");
        // One ready replica: Ready, with the numbers.
        let s = healthy(
            None,
            &seen(deployment(None, Some((1, 1))), Some(true)),
            now(),
        );
        assert_eq!(s.phase, Some(Phase::Ready));
        let w = s.infrastructure.unwrap().workload.unwrap();
        assert_eq!(
            (w.ready, w.replicas, w.ready_replicas),
            (true, Some(1), Some(1))
        );
        // Scaled to zero: Napping.
        let s = healthy(None, &seen(deployment(Some(0), None), Some(true)), now());
        assert_eq!(s.phase, Some(Phase::Napping));
        // KEDA not ready yet: Creating, and the reason says so.
        let s = healthy(None, &seen(deployment(Some(0), None), Some(false)), now());
        assert_eq!(s.phase, Some(Phase::Creating));
        let ready = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert_eq!(ready.reason, "WaitingForKeda");
        // Scaling disabled counts as KEDA ready.
        let s = healthy(None, &seen(deployment(Some(2), Some((2, 2))), None), now());
        assert_eq!(s.phase, Some(Phase::Ready));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.queue_identifier.as_deref(), Some("asya-prod-a"));
    }

    #[test]
    fn keda_readiness_comes_from_the_ready_condition() {
        let st = serde_json::json!({"conditions": [
            {"type": "Active", "status": "False"},
            {"type": "Ready", "status": "True", "message": "ScaledObject is defined correctly"}]});
        let k = keda(Some(&st));
        assert!(k.ready);
        assert_eq!(
            k.message.as_deref(),
            Some("ScaledObject is defined correctly")
        );
        assert!(!keda(None).ready);
        let st = serde_json::json!({"conditions": [{"type": "Ready", "status": "False", "message": "no scaler"}]});
        assert_eq!(keda(Some(&st)).message.as_deref(), Some("no scaler"));
    }

    #[test]
    fn an_unchanged_status_is_the_same_status() {
        let first = healthy(
            None,
            &seen(deployment(None, Some((1, 1))), Some(true)),
            now(),
        );
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        let again = healthy(
            Some(&first),
            &seen(deployment(None, Some((1, 1))), Some(true)),
            later,
        );
        assert_eq!(first, again, "no transition: times kept, nothing to write");
        // A transition takes the new time for that condition only.
        let napping = healthy(
            Some(&first),
            &seen(deployment(Some(0), None), Some(true)),
            later,
        );
        let t = |s: &AsyncActorStatus, ty: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ty)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(t(&napping, QUEUE_READY), t(&first, QUEUE_READY));
        // Ready stays True (Napping is ready), so its time stays too.
        assert_eq!(t(&napping, READY), t(&first, READY));
        let blocked = blocked(
            Some(&napping),
            Some(4),
            &Problem::no_default_transport(),
            later,
        );
        assert_eq!(t(&blocked, READY).0, later);
    }

    #[test]
    fn problems_say_what_to_fix_and_keep_what_was_known() {
        let p = Problem::unknown_transport("asyncactor-kafka", &crate::config::KNOWN_TRANSPORTS);
        assert!(p.message.contains("'asyncactor-kafka'"), "{}", p.message);
        assert!(
            p.message.contains("asyncactor-rabbitmq, asyncactor-sqs"),
            "{}",
            p.message
        );
        let p = Problem::secret_missing("prod", "troupe-transport", &["ASYA_RABBITMQ_URL"]);
        assert!(
            p.message.contains("kubectl create secret generic troupe-transport -n prod --from-literal=ASYA_RABBITMQ_URL=..."),
            "{}",
            p.message
        );
        let p = Problem::queue_refused("asya-x-y", "sqs", "InvalidParameterValue: name too long");
        assert!(p.message.contains("name too long"));
        let ok = healthy(
            None,
            &seen(deployment(None, Some((1, 1))), Some(true)),
            now(),
        );
        let s = blocked(Some(&ok), Some(4), &p, now());
        assert_eq!(s.phase, Some(Phase::Creating));
        assert_eq!(s.observed_generation, Some(4));
        let q = s
            .conditions
            .iter()
            .find(|c| c.type_ == QUEUE_READY)
            .unwrap();
        assert_eq!(
            (q.status.as_str(), q.reason.as_str()),
            ("False", "QueueRefused")
        );
        let infra = s.infrastructure.unwrap();
        assert!(!infra.queue.unwrap().ready);
        assert_eq!(
            infra.workload.unwrap().ready_replicas,
            Some(1),
            "what was known stays"
        );
    }
}
