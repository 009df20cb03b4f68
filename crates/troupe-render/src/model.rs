//! The renderer's input: a mesh of AsyncActor specs, the cluster's transport and options.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use troupe_resource::AsyncActorSpec;

/// Crew actors, in the order they are rendered.
pub const CREW: [&str; 4] = ["x-sink", "x-sump", "x-pause", "x-resume"];
/// Secret holding broker credentials (`envFrom` of every sidecar and the gateway; KEDA's
/// TriggerAuthentication reads its keys).
pub const TRANSPORT_SECRET: &str = "troupe-transport";
/// Secret holding the sidecar token (key `token`), security.md "Kubernetes".
pub const TOKEN_SECRET: &str = "troupe-gateway-token";
/// Secret holding the gateway's PostgreSQL URL (key `url`).
pub const STORE_SECRET: &str = "troupe-gateway-store";
/// Secret holding the client API key of the mesh API (key `key`; optional: without it the
/// public listener has no client auth, and the gateway WARNs).
pub const API_KEY_SECRET: &str = "troupe-gateway-api-key";
/// ConfigMap holding the Python runtime file (as Asya ships it).
pub const RUNTIME_CONFIG_MAP: &str = "asya-runtime";
/// ConfigMap listing the queues the operator provisions.
pub const QUEUES_CONFIG_MAP: &str = "troupe-queues";
/// Default Troupe image (sidecar, crew, gateway).
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/troupe-mesh/troupe:", env!("CARGO_PKG_VERSION"));

/// The cluster transport: what the manifests need to know about the broker. Secrets (URLs
/// with passwords, keys) are never here: they live in [`TRANSPORT_SECRET`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// RabbitMQ; the AMQP URL is `ASYA_RABBITMQ_URL` in the secret.
    RabbitMq {
        /// Topic exchange (`ASYA_RABBITMQ_EXCHANGE`).
        exchange: String,
    },
    /// Amazon SQS.
    Sqs {
        /// `ASYA_AWS_REGION`.
        region: String,
        /// `ASYA_SQS_ENDPOINT` (moto, LocalStack); access keys then come from the secret,
        /// else KEDA uses the pod's identity (IRSA).
        endpoint: Option<String>,
    },
    /// Google Cloud Pub/Sub.
    PubSub {
        /// `ASYA_PUBSUB_PROJECT_ID`.
        project: String,
        /// `ASYA_PUBSUB_ENDPOINT` (emulator).
        endpoint: Option<String>,
    },
    /// NATS JetStream; the URL is `TROUPE_NATS_URL` in the secret.
    Nats {
        /// `host:port` of the NATS monitoring endpoint (KEDA reads `/jsz` there).
        monitoring_endpoint: String,
    },
    /// Redis Streams; the URL is `TROUPE_REDIS_URL` in the secret.
    Redis {
        /// `host:port` KEDA connects to.
        address: String,
        /// The URL carries a password: KEDA reads it from the secret's `REDIS_PASSWORD`.
        password: bool,
    },
}

impl Transport {
    /// `ASYA_TRANSPORT` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::RabbitMq { .. } => "rabbitmq",
            Transport::Sqs { .. } => "sqs",
            Transport::PubSub { .. } => "pubsub",
            Transport::Nats { .. } => "nats",
            Transport::Redis { .. } => "redis",
        }
    }

    /// Whether the secret is required (the broker URL lives there) rather than optional
    /// (cloud credentials that pod identity may replace).
    pub fn secret_required(&self) -> bool {
        matches!(
            self,
            Transport::RabbitMq { .. } | Transport::Nats { .. } | Transport::Redis { .. }
        )
    }
}

/// Options that are not in the actors.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The Troupe image (sidecar, crew, gateway).
    pub image: String,
    /// Render the crew actors.
    pub crew: bool,
    /// Render the gateway (and point sidecars at it).
    pub gateway: bool,
    /// The Python runtime file to ship in [`RUNTIME_CONFIG_MAP`]; `None` leaves the
    /// ConfigMap to whoever installs it (the Helm chart).
    pub runtime_py: Option<String>,
    /// IAM role for the ServiceAccounts (`eks.amazonaws.com/role-arn`).
    pub aws_role_arn: Option<String>,
    /// Crew settings (mesh file `crew:`).
    pub crew_settings: CrewSettings,
    /// Browser origins the gateway allows (mesh file `gateway.cors_origins`).
    pub cors_origins: Vec<String>,
    /// `host:port` of Troupe's KEDA push scaler (`troupe scaler`, or the operator's): each
    /// ScaledObject with `minReplicaCount: 0` then gets an `external-push` trigger after
    /// `queue` (not on Pub/Sub, which the scaler cannot count), so an actor scaled to zero
    /// starts the moment a message arrives. `None`: KEDA polls only.
    pub push_scaler: Option<String>,
    /// Namespace of the gateway, when actors live in other namespaces (the operator's):
    /// sidecars then use its full service name. `None`: the actor's own namespace.
    pub gateway_namespace: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: DEFAULT_IMAGE.to_owned(),
            crew: true,
            gateway: true,
            runtime_py: None,
            aws_role_arn: None,
            crew_settings: CrewSettings::default(),
            cors_origins: Vec::new(),
            push_scaler: None,
            gateway_namespace: None,
        }
    }
}

/// Crew settings passed to the crew sidecars as their `ASYA_*` variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CrewSettings {
    /// `ASYA_SINK_HOOKS`.
    pub sink_hooks: Vec<String>,
    /// `ASYA_SINK_FANOUT_HOOKS`.
    pub sink_fanout_hooks: bool,
    /// `ASYA_PAUSE_METADATA` (JSON).
    pub pause_metadata: Option<serde_json::Value>,
    /// `ASYA_RESUME_MERGE_MODE` (`shallow` or `deep`).
    pub resume_merge_mode: Option<String>,
}

/// One actor to render: its spec, and what the AsyncActor object adds around it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActorInput {
    /// The spec (troupe.yaml's actor or the AsyncActor's `spec`).
    pub spec: AsyncActorSpec,
    /// The AsyncActor's labels; propagated except `crossplane.io/*` and
    /// `app.kubernetes.io/*`.
    pub labels: BTreeMap<String, String>,
    /// Owner of every child (the operator passes the AsyncActor; `troupe render` none).
    pub owner: Option<OwnerReference>,
    /// This actor's own runtime file (troupe.yaml's per-actor `runtime:`), shipped in
    /// ConfigMap `{actor}-runtime` instead of the mesh's [`RUNTIME_CONFIG_MAP`].
    pub runtime_py: Option<String>,
}

impl From<AsyncActorSpec> for ActorInput {
    fn from(spec: AsyncActorSpec) -> Self {
        ActorInput {
            spec,
            ..ActorInput::default()
        }
    }
}

/// Everything [`crate::render`] reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Mesh {
    /// Kubernetes namespace, also the queue namespace (`asya-{ns}-{actor}`), as in Asya.
    pub namespace: String,
    /// The cluster transport.
    pub transport: Transport,
    /// Actors in file order.
    pub actors: Vec<ActorInput>,
    /// The rest.
    pub options: Options,
}

impl Mesh {
    /// Queue of `actor` (protocol.md §4).
    pub fn queue(&self, actor: &str) -> String {
        format!("asya-{}-{actor}", self.namespace)
    }

    /// Dead-letter queue of the namespace.
    pub fn dlq(&self) -> String {
        format!("asya-{}-dlq", self.namespace)
    }
}
