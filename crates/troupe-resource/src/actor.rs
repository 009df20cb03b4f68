//! The AsyncActor resource, field by field as platform.md §2 lists it.
//!
//! Optional fields are `Option`/empty collections and the spec's defaults live in accessor
//! methods, so an object read and written again is the object that was read (no defaults
//! appear on the way). Kubernetes-specific parts reuse k8s-openapi's types; where their full
//! schema would bloat the CRD (volumes, extra containers) the schema only keeps what the
//! API server must check and preserves the rest (see [`crate::schema`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::schema;

/// Spec default of `pythonExecutable`.
pub const DEFAULT_PYTHON: &str = "python3";
/// Spec default of `replicas` (used only when `scaling.enabled` is false).
pub const DEFAULT_REPLICAS: u32 = 1;
/// Spec default of `resiliency.actorTimeout`.
pub const DEFAULT_ACTOR_TIMEOUT: &str = "5m";
/// Most entries `flavors` may hold.
pub const MAX_FLAVORS: usize = 8;
/// Container-name prefix reserved for the containers the renderer adds.
pub const RESERVED_CONTAINER_PREFIX: &str = "asya-";

/// `spec` of an AsyncActor: one actor, its runtime image and handler, scaling and retries.
// kube's printcolumn(...) repeats `type_ =` and friends once per column, which clippy
// takes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "asya.sh",
    version = "v1alpha1",
    kind = "AsyncActor",
    plural = "asyncactors",
    namespaced,
    status = "AsyncActorStatus",
    shortname = "asya",
    shortname = "asyas",
    derive = "PartialEq",
    doc = "An actor of the mesh: its queue, its scaled Deployment (runtime + sidecar) and its KEDA ScaledObject.",
    printcolumn(name = "Actor", type_ = "string", json_path = ".spec.actor"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.infrastructure.workload.replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.infrastructure.workload.readyReplicas",
        priority = "1"
    ),
    printcolumn(
        name = "Queue",
        type_ = "string",
        json_path = ".status.queueUrl",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
// `image` is optional for `troupe up` (it runs the handler from the local tree) but required
// on a cluster: the rule keeps one type for both uses.
#[x_kube(validation = Rule::new("has(self.crew) || (has(self.image) && self.image != '')").message("spec.image is required on Kubernetes: the runtime image holding Python and the handler code"))]
// A crew actor runs inside the Troupe sidecar: it has no handler and no runtime image.
#[x_kube(validation = Rule::new("has(self.crew) || (has(self.handler) && self.handler != '')").message("spec.handler is required: module.function or module.Class.method (only a crew actor, spec.crew, has none)"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AsyncActorSpec {
    /// Actor name: a DNS label, also the queue name part (`asya-{ns}-{actor}`).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub actor: String,
    /// Runtime image (Python + handler code); optional only for `troupe up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    /// Handler (`module.function` or `module.Class.method`) → `ASYA_HANDLER`; empty (and
    /// not written) only for a crew actor.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"))]
    pub handler: String,
    /// Pull policy of the runtime image (default `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Runtime command (default `python3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub python_executable: Option<String>,
    /// Fixed replica count, used only when `scaling.enabled` is false (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Runtime container environment: `{name, value}` or `{name, valueFrom}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Environment variables taken from Secrets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<SecretRef>,
    /// Runtime container resources (GPU, CPU, memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Pod node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Pod volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::preserved_objects")]
    pub volumes: Vec<Volume>,
    /// Runtime container volume mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    /// Extra init containers; names starting `asya-` are reserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::user_containers")]
    pub init_containers: Vec<Container>,
    /// Extra containers in the pod; names starting `asya-` are reserved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::user_containers")]
    pub sidecars: Vec<Container>,
    /// Flavor EnvironmentConfigs (partial specs) deep-merged left to right; the inline spec wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub flavors: Vec<String>,
    /// Queue-driven autoscaling (KEDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    /// Call timeout, retry policies and the rules that pick them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resiliency: Option<Resiliency>,
    /// Sidecar container overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarSpec>,
    /// Trace export → `OTEL_EXPORTER_OTLP_*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingSpec>,
    /// State-proxy connectors (platform.md §5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_proxy: Vec<StateProxy>,
    /// Transport of this actor (`asyncactor-<transport>`); the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition_ref: Option<CompositionRef>,
    /// Troupe extension: in-flight messages per sidecar → `TROUPE_CONCURRENCY` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrency: Option<u32>,
    /// Troupe extension: messages per worker settling behind the one in the handler →
    /// `TROUPE_PIPELINE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<u32>,
    /// Troupe extension: a runtime file run instead of the built-in one (`troupe up`, path
    /// relative to the mesh file). The renderer will ship it like the built-in file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Troupe extension: run this actor as a crew handler built into the Troupe sidecar
    /// (`TROUPE_CREW`), with no runtime container, handler or image (protocol.md §14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crew: Option<CrewRole>,
    /// Troupe extension: settings of a `crew: fan-in` actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan_in: Option<FanInSpec>,
    /// Crossplane claim field (Asya's objects, as `kubectl get -o yaml` shows them): the
    /// composition revision in use. Kept so those objects apply unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition_revision_ref: Option<NameRef>,
    /// Crossplane claim field: picks a composition by labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition_selector: Option<LabelSelector>,
    /// Crossplane claim field: `Automatic` or `Manual` composition revision updates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition_update_policy: Option<String>,
    /// Crossplane claim field: `Background` or `Foreground` deletion of the composite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composite_delete_policy: Option<String>,
    /// Crossplane claim field: the composite resource bound to the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ref: Option<ObjectRef>,
    /// Crossplane claim field: where connection details are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<NameRef>,
}

impl AsyncActorSpec {
    /// Pull policy with the spec default.
    pub fn image_pull_policy(&self) -> PullPolicy {
        self.image_pull_policy.unwrap_or_default()
    }

    /// Runtime command with the spec default.
    pub fn python_executable(&self) -> &str {
        self.python_executable.as_deref().unwrap_or(DEFAULT_PYTHON)
    }

    /// Fixed replica count with the spec default.
    pub fn replicas(&self) -> u32 {
        self.replicas.unwrap_or(DEFAULT_REPLICAS)
    }

    /// Scaling settings (all defaults when absent).
    pub fn scaling(&self) -> Scaling {
        self.scaling.clone().unwrap_or_default()
    }

    /// `resiliency.actorTimeout` as written, or the spec default `5m`.
    pub fn actor_timeout(&self) -> &str {
        self.resiliency
            .as_ref()
            .and_then(|r| r.actor_timeout.as_deref())
            .unwrap_or(DEFAULT_ACTOR_TIMEOUT)
    }
}

/// A crew handler an AsyncActor can run (`spec.crew`). Only fan-in: the other crew
/// actors are the mesh's own (one each), rendered by the crew chart.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum CrewRole {
    /// The fan-in aggregator (protocol.md §14.4) → `TROUPE_CREW=fan-in`.
    #[serde(rename = "fan-in")]
    FanIn,
}

impl CrewRole {
    /// The `TROUPE_CREW` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CrewRole::FanIn => "fan-in",
        }
    }
}

/// `fanIn`: settings of a fan-in crew actor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FanInSpec {
    /// How long an origin waits for its missing slices before it fails, Go duration →
    /// `TROUPE_FANIN_TIMEOUT` (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("fanIn.timeout must be a positive Go duration such as 30s or 10m"))]
    #[schemars(length(max = 32))]
    pub timeout: Option<String>,
}

/// Image pull policy (`imagePullPolicy`, `sidecar.image.pullPolicy`).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image (default).
    #[default]
    IfNotPresent,
    /// Never pull.
    Never,
}

/// `secretRefs[]`: environment variables from one Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Secret name in the actor's namespace.
    pub secret_name: String,
    /// Keys to expose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<SecretKey>,
}

/// One key of a [`SecretRef`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKey {
    /// Key in the Secret.
    pub key: String,
    /// Environment variable it becomes.
    pub env_var: String,
}

/// `scaling`: KEDA on queue length.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.minReplicaCount) ? self.minReplicaCount : 0) <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 10)").message("scaling.minReplicaCount must not exceed scaling.maxReplicaCount (defaults 0 and 10)"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scaling {
    /// False → no ScaledObject; `replicas` fixed (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Fewest replicas (default 0: scale to zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replica_count: Option<u32>,
    /// Most replicas (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_count: Option<u32>,
    /// Seconds between queue-depth polls (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<u32>,
    /// Seconds after the last message before scaling to zero (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_period: Option<u32>,
    /// Messages per replica (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub queue_length: Option<u32>,
    /// KEDA scaling modifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced: Option<AdvancedScaling>,
    /// KEDA triggers appended after the primary trigger `queue`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_triggers: Vec<ScaleTrigger>,
}

impl Scaling {
    /// `enabled` with its default.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }
    /// `minReplicaCount` with its default.
    pub fn min_replica_count(&self) -> u32 {
        self.min_replica_count.unwrap_or(0)
    }
    /// `maxReplicaCount` with its default.
    pub fn max_replica_count(&self) -> u32 {
        self.max_replica_count.unwrap_or(10)
    }
    /// `pollingInterval` (seconds) with its default.
    pub fn polling_interval(&self) -> u32 {
        self.polling_interval.unwrap_or(30)
    }
    /// `cooldownPeriod` (seconds) with its default.
    pub fn cooldown_period(&self) -> u32 {
        self.cooldown_period.unwrap_or(300)
    }
    /// `queueLength` with its default.
    pub fn queue_length(&self) -> u32 {
        self.queue_length.unwrap_or(5)
    }
}

/// `scaling.advanced`: KEDA `scalingModifiers` and restore behaviour.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.formula) || has(self.target)").message("scaling.advanced.formula requires scaling.advanced.target (the value the formula's result is compared with)"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdvancedScaling {
    /// Restore the Deployment's replica count when the ScaledObject is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to_original_replica_count: Option<bool>,
    /// KEDA formula over the triggers; the primary trigger is named `queue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formula: Option<String>,
    /// Target value of the formula.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<IntOrString>,
    /// Activation target of the formula.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_target: Option<IntOrString>,
    /// How the formula's metric is compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<MetricType>,
}

/// HPA metric type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum MetricType {
    /// Per-pod average.
    AverageValue,
    /// Total value.
    Value,
    /// Percentage of the request.
    Utilization,
}

/// One KEDA trigger in `scaling.additionalTriggers` (passed through as written).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTrigger {
    /// Scaler type (`cron`, `prometheus`, ...).
    #[serde(rename = "type")]
    pub type_: String,
    /// Trigger name, usable in `scaling.advanced.formula`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Scaler settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// TriggerAuthentication reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_ref: Option<AuthenticationRef>,
    /// Metric type of this trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_type: Option<MetricType>,
    /// Serve this trigger's metric from KEDA's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cached_metrics: Option<bool>,
}

/// KEDA `authenticationRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationRef {
    /// TriggerAuthentication name.
    pub name: String,
    /// `TriggerAuthentication` (default) or `ClusterTriggerAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `resiliency`: call timeout and retry policies (protocol.md §9).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resiliency {
    /// Go duration → `ASYA_RESILIENCY_ACTOR_TIMEOUT` (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("resiliency.actorTimeout must be a positive Go duration such as 30s or 5m"))]
    #[schemars(length(max = 32))]
    pub actor_timeout: Option<String>,
    /// Policies by name → `ASYA_RESILIENCY_POLICIES` (JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 64))]
    pub policies: BTreeMap<String, Policy>,
    /// Rules in order → `ASYA_RESILIENCY_RULES` (JSON, order kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<ResiliencyRule>,
}

/// One retry policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Attempts including the first (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_attempts: Option<u32>,
    /// Delay growth between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// First delay (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')").message("initialDelay must be a Go duration such as 500ms or 2s"))]
    #[schemars(length(max = 32))]
    pub initial_delay: Option<String>,
    /// Longest delay (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')").message("maxInterval must be a Go duration such as 30s or 1m"))]
    #[schemars(length(max = 32))]
    pub max_interval: Option<String>,
    /// Time budget of all attempts (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s')").message("maxDuration must be a Go duration such as 2m"))]
    #[schemars(length(max = 32))]
    pub max_duration: Option<String>,
    /// Randomise delays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// Actors the message goes to when attempts run out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_exhausted: Vec<String>,
}

/// Retry delay growth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Same delay every time.
    Constant,
    /// Delay grows linearly.
    Linear,
    /// Delay doubles.
    Exponential,
}

/// One rule: errors matching any pattern use the named policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResiliencyRule {
    /// Error type patterns (at least one).
    #[schemars(length(min = 1))]
    pub errors: Vec<String>,
    /// Policy name under `resiliency.policies`.
    pub policy: String,
}

/// `sidecar`: overrides of the sidecar container.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarSpec {
    /// Sidecar image (Troupe's default repository is the Troupe image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// Extra sidecar environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Sidecar container resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// An image as `repository`, `tag`, `pullPolicy`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Image tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
}

/// `tracing`: OTLP export.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingSpec {
    /// → `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// → `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `stateProxy[]`: one state-proxy connector (platform.md §5).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateProxy {
    /// Connector name (container `asya-state-proxy-{name}`).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Where the handler sees the state.
    pub mount: StateMount,
    /// `buffered` or `passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_mode: Option<WriteMode>,
    /// The connector container.
    pub connector: Connector,
}

/// `stateProxy[].mount`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateMount {
    /// Path in the runtime container.
    pub path: String,
}

/// State-proxy write mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Writes are buffered and flushed on close.
    Buffered,
    /// Writes go straight to the connector.
    Passthrough,
}

/// `stateProxy[].connector`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connector {
    /// Connector image.
    pub image: String,
    /// Pull policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Connector environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Connector resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// `compositionRef`: the transport of this actor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompositionRef {
    /// `asyncactor-<transport>` (`asyncactor-sqs`, `asyncactor-rabbitmq`, `asyncactor-nats`, ...).
    #[schemars(regex(pattern = r"^asyncactor-[a-z0-9-]+$"))]
    pub name: String,
}

impl CompositionRef {
    /// The transport it names (`sqs` for `asyncactor-sqs`).
    pub fn transport(&self) -> Option<&str> {
        self.name.strip_prefix("asyncactor-")
    }
}

/// A reference by name (Crossplane claim fields).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameRef {
    /// Object name.
    pub name: String,
}

/// Labels to match (Crossplane `compositionSelector`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels the composition must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// A reference to another object (Crossplane `resourceRef`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// `status` of an AsyncActor, patched from its children.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AsyncActorStatus {
    /// `Creating`, `Ready` or `Napping`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The queue's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// The queue's identifier (e.g. an ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_identifier: Option<String>,
    /// Readiness of each child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<Infrastructure>,
    /// `metadata.generation` this status was written for (Troupe's operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions with machine-readable reasons and messages that say what to fix
    /// (Troupe's operator: `Ready`, `TransportConfigured`, `QueueReady`, `ChildrenApplied`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// `status.phase`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Phase {
    /// Anything not ready yet.
    Creating,
    /// Queue, KEDA and workload ready, replicas > 0.
    Ready,
    /// All ready, replicas = 0.
    Napping,
}

/// `status.infrastructure`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Infrastructure {
    /// The queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<ChildReadiness>,
    /// The ScaledObject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keda: Option<ChildReadiness>,
    /// The Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadStatus>,
}

/// `infrastructure.queue` / `infrastructure.keda`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChildReadiness {
    /// Ready.
    pub ready: bool,
    /// Why not, or what it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `infrastructure.workload`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Ready.
    pub ready: bool,
    /// Desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}
