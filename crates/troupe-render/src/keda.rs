//! KEDA's kinds (`keda.sh/v1alpha1`) as typed structs: only the fields Troupe writes.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use troupe_resource::ScaleTrigger;

/// KEDA's API version.
pub const API_VERSION: &str = "keda.sh/v1alpha1";

/// A KEDA `ScaledObject`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObject {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `ScaledObject`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: ScaledObjectSpec,
}

/// `ScaledObject.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaledObjectSpec {
    /// The Deployment scaled.
    pub scale_target_ref: ScaleTargetRef,
    /// Seconds between polls.
    pub polling_interval: u32,
    /// Seconds idle before scaling to `minReplicaCount`.
    pub cooldown_period: u32,
    /// Fewest replicas.
    pub min_replica_count: u32,
    /// Most replicas.
    pub max_replica_count: u32,
    /// HPA behaviour and scaling modifiers.
    pub advanced: Advanced,
    /// `queue` first, then the actor's `additionalTriggers`.
    pub triggers: Vec<Trigger>,
}

/// One trigger. Unlike [`ScaleTrigger`] (which omits an empty `metadata` so an AsyncActor
/// round-trips unchanged), `metadata` is always written: KEDA's CRD requires it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// Scaler type.
    #[serde(rename = "type")]
    pub type_: String,
    /// Name, usable in `scalingModifiers.formula`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scaler settings (required by KEDA, possibly empty).
    pub metadata: BTreeMap<String, String>,
    /// TriggerAuthentication reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<troupe_resource::AuthenticationRef>,
    /// Metric type of this trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<troupe_resource::MetricType>,
    /// Serve this trigger's metric from KEDA's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
}

impl From<ScaleTrigger> for Trigger {
    fn from(t: ScaleTrigger) -> Self {
        Trigger {
            type_: t.type_,
            name: t.name,
            metadata: t.metadata,
            authentication_ref: t.authentication_ref,
            metric_type: t.metric_type,
            use_cached_metrics: t.use_cached_metrics,
        }
    }
}

/// `scaleTargetRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    /// Deployment name.
    pub name: String,
}

/// `spec.advanced`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Advanced {
    /// Restore the replica count when the ScaledObject goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
    /// The HPA's behaviour.
    pub horizontal_pod_autoscaler_config: HpaConfig,
    /// Formula over the triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_modifiers: Option<ScalingModifiers>,
}

/// `advanced.horizontalPodAutoscalerConfig`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HpaConfig {
    /// Scale-up and scale-down rules.
    pub behavior: HorizontalPodAutoscalerBehavior,
}

/// `advanced.scalingModifiers` (KEDA writes its numbers as strings).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingModifiers {
    /// Formula over trigger names.
    pub formula: String,
    /// Target of the formula.
    pub target: String,
    /// Activation target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_target: Option<String>,
    /// `AverageValue`, `Value` or `Utilization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<troupe_resource::MetricType>,
}

/// A KEDA `TriggerAuthentication`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthentication {
    /// `keda.sh/v1alpha1`.
    pub api_version: String,
    /// `TriggerAuthentication`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: TriggerAuthenticationSpec,
}

/// `TriggerAuthentication.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerAuthenticationSpec {
    /// Cloud identity of the pod (`aws`, `gcp`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_identity: Option<PodIdentity>,
    /// Scaler parameters read from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_target_ref: Vec<SecretTargetRef>,
}

/// `podIdentity`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    /// `aws`, `gcp`, `azure-workload`.
    pub provider: String,
}

/// One `secretTargetRef` entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretTargetRef {
    /// Scaler parameter it fills.
    pub parameter: String,
    /// Secret name.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

/// Trigger type of KEDA's push scaler protocol (a gRPC `StreamIsActive` stream).
pub const PUSH_TRIGGER_TYPE: &str = "external-push";
/// Name of the push trigger in a ScaledObject (usable in `scalingModifiers.formula`).
pub const PUSH_TRIGGER_NAME: &str = "push";

/// The `external-push` trigger that asks Troupe's push scaler at `address` (`host:port`)
/// about `queue`: KEDA activates the Deployment the moment the scaler pushes `true`,
/// instead of at its next poll. `queueLength` makes the metric the scaler reports target
/// the same backlog per replica as the queue trigger, so the HPA (which takes the highest
/// of its metrics) sizes 1..N exactly as before.
pub(crate) fn push_trigger(address: &str, queue: String, queue_length: u32) -> Trigger {
    Trigger {
        type_: PUSH_TRIGGER_TYPE.to_owned(),
        name: Some(PUSH_TRIGGER_NAME.to_owned()),
        metadata: metadata(&[
            ("scalerAddress", address.to_owned()),
            ("queue", queue),
            ("queueLength", queue_length.to_string()),
        ]),
        authentication_ref: None,
        metric_type: None,
        use_cached_metrics: None,
    }
}

/// Trigger metadata from pairs (sorted: KEDA ignores order, diffs do not).
pub(crate) fn metadata(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_push_trigger_names_the_scaler_the_queue_and_the_target() {
        let t = push_trigger("troupe-operator.prod.svc:9090", "asya-prod-a".into(), 7);
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!({"type": "external-push", "name": "push", "metadata": {
                "scalerAddress": "troupe-operator.prod.svc:9090",
                "queue": "asya-prod-a",
                "queueLength": "7"}})
        );
    }

    #[test]
    fn a_trigger_always_writes_metadata_as_keda_requires() {
        let t = Trigger::from(ScaleTrigger {
            type_: "cpu".into(),
            ..ScaleTrigger::default()
        });
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!({"type": "cpu", "metadata": {}})
        );
    }
}
