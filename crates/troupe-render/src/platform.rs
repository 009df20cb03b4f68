//! Mesh-wide objects: crew actors, the gateway, the runtime ConfigMap and the queue list.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, Probe, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use troupe_protocol::sidecar_env as env;
use troupe_resource::Scaling;

use crate::actor::{self, empty_dir, mount, secret_var, sidecar_base_env, sidecar_container, var};
use crate::labels::{child_labels, meta, selector, Component};
use crate::model::{
    Mesh, Transport, API_KEY_SECRET, CREW, QUEUES_CONFIG_MAP, RUNTIME_CONFIG_MAP, STORE_SECRET,
    TOKEN_SECRET,
};
use crate::output::Object;
use crate::scaled;
use crate::RenderError;

/// Name of the gateway Deployment and its public Service.
pub(crate) const GATEWAY: &str = "troupe-gateway";
/// The gateway's internal Service (sidecar routes only).
pub(crate) const GATEWAY_INTERNAL: &str = "troupe-gateway-internal";
/// Mesh API port (`ASYA_MESH_EXTERNAL_PORT`).
const EXTERNAL_PORT: i32 = 8080;
/// Internal port (`ASYA_MESH_INTERNAL_PORT`).
const INTERNAL_PORT: i32 = 8081;

/// Scaling of crew actors (platform.md §3: `minReplicaCount: 1`, `queueLength: 5`).
fn crew_scaling() -> Scaling {
    Scaling {
        min_replica_count: Some(1),
        queue_length: Some(5),
        ..Scaling::default()
    }
}

/// The objects of crew actor `crew`: the Troupe binary as `asya-sidecar` with
/// `TROUPE_CREW=<name>` and no runtime container.
pub(crate) fn render_crew(mesh: &Mesh, crew: &str) -> Result<Vec<Object>, RenderError> {
    let labels = child_labels(crew, Component::Crew, &BTreeMap::new());
    let scaling = crew_scaling();
    let mut out = vec![actor::service_account(mesh, crew, &labels, None)?];
    if let Some(ta) = scaled::trigger_auth(mesh, crew, &labels, None)? {
        out.push(ta);
    }
    out.push(scaled::scaled_object(mesh, crew, &scaling, &labels, None)?);
    let mut env = sidecar_base_env(mesh, crew);
    env.push(var(env::CREW, crew));
    let s = &mesh.options.crew_settings;
    match crew {
        "x-sink" => {
            if !s.sink_hooks.is_empty() {
                env.push(var(env::SINK_HOOKS, s.sink_hooks.join(",")));
            }
            if s.sink_fanout_hooks {
                env.push(var(env::SINK_FANOUT_HOOKS, "true"));
            }
        }
        "x-pause" => {
            if let Some(m) = &s.pause_metadata {
                env.push(var(env::PAUSE_METADATA, m.to_string()));
            }
        }
        "x-resume" => {
            if let Some(m) = &s.resume_merge_mode {
                env.push(var(env::RESUME_MERGE_MODE, m));
            }
        }
        _ => {}
    }
    let pod = PodSpec {
        service_account_name: Some(crew.to_owned()),
        termination_grace_period_seconds: Some(30),
        containers: vec![sidecar_container(mesh, env, None)],
        volumes: Some(vec![empty_dir("socket-dir")]),
        security_context: Some(actor::troupe_pod_security()),
        ..PodSpec::default()
    };
    let d = actor::deployment(mesh, crew, &labels, None, pod, None);
    out.push(Object::new("Deployment", crew, &d)?);
    Ok(out)
}

/// The gateway: Deployment `troupe-gateway`, a public Service (mesh API) and an internal
/// one (sidecar routes), the store URL and the sidecar token from Secrets (security.md).
pub(crate) fn render_gateway(mesh: &Mesh) -> Result<Vec<Object>, RenderError> {
    let labels = child_labels(GATEWAY, Component::Gateway, &BTreeMap::new());
    let mut env: Vec<EnvVar> = vec![
        var(env::NAMESPACE, &mesh.namespace),
        var("ASYA_MESH_EXTERNAL_PORT", EXTERNAL_PORT.to_string()),
        var("ASYA_MESH_INTERNAL_PORT", INTERNAL_PORT.to_string()),
        var("ASYA_INTERNAL_URL", actor::GATEWAY_INTERNAL_URL),
    ];
    env.extend(actor::transport_env(mesh, "ASYA_QUEUE_TRANSPORT"));
    // No TROUPE_GATEWAY_ACTORS: AsyncActors come and go while the gateway runs, and a fixed
    // list would answer 404 for every actor added later (docs/decisions.md, as the chart).
    env.push(secret_var("TROUPE_GATEWAY_STORE", STORE_SECRET, "url"));
    env.push(secret_var(env::GATEWAY_TOKEN, TOKEN_SECRET, "token"));
    // Optional: client auth is on once the user creates the Secret (security.md).
    let mut api_key = secret_var("TROUPE_GATEWAY_API_KEY", API_KEY_SECRET, "key");
    if let Some(r) = api_key
        .value_from
        .as_mut()
        .and_then(|v| v.secret_key_ref.as_mut())
    {
        r.optional = Some(true);
    }
    env.push(api_key);
    if !mesh.options.cors_origins.is_empty() {
        env.push(var(
            "TROUPE_GATEWAY_CORS_ORIGINS",
            mesh.options.cors_origins.join(","),
        ));
    }
    let port = |name: &str, p: i32| ContainerPort {
        name: Some(name.to_owned()),
        container_port: p,
        ..ContainerPort::default()
    };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("internal".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "gateway".into(),
        image: Some(mesh.options.image.clone()),
        args: Some(vec!["gateway".into()]),
        env: Some(env),
        env_from: Some(actor::transport_env_from(mesh)),
        ports: Some(vec![
            port("http", EXTERNAL_PORT),
            port("internal", INTERNAL_PORT),
        ]),
        liveness_probe: Some(probe("/health")),
        readiness_probe: Some(probe("/ready")),
        volume_mounts: Some(vec![mount("tmp", "/tmp")]),
        security_context: Some(actor::troupe_security()),
        ..Container::default()
    };
    let pod = PodSpec {
        service_account_name: Some(GATEWAY.to_owned()),
        containers: vec![container],
        volumes: Some(vec![empty_dir("tmp")]),
        security_context: Some(actor::troupe_pod_security()),
        ..PodSpec::default()
    };
    let d = actor::deployment(mesh, GATEWAY, &labels, None, pod, Some(1));
    let service = |name: &str, port_name: &str, port: i32| Service {
        metadata: meta(name, &mesh.namespace, &labels, None),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(GATEWAY)),
            ports: Some(vec![ServicePort {
                name: Some(port_name.to_owned()),
                port,
                target_port: Some(IntOrString::String(port_name.to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(vec![
        actor::service_account(mesh, GATEWAY, &labels, None)?,
        Object::new("Deployment", GATEWAY, &d)?,
        Object::new("Service", GATEWAY, &service(GATEWAY, "http", EXTERNAL_PORT))?,
        Object::new(
            "Service",
            GATEWAY_INTERNAL,
            &service(GATEWAY_INTERNAL, "internal", INTERNAL_PORT),
        )?,
    ])
}

/// ConfigMap `asya-runtime` holding the runtime file, mounted by every runtime container.
pub(crate) fn runtime_config_map(mesh: &Mesh, py: &str) -> Result<Object, RenderError> {
    let labels = child_labels(RUNTIME_CONFIG_MAP, Component::Mesh, &BTreeMap::new());
    let cm = ConfigMap {
        metadata: meta(RUNTIME_CONFIG_MAP, &mesh.namespace, &labels, None),
        data: Some(BTreeMap::from([(
            actor::RUNTIME_KEY.to_owned(),
            py.to_owned(),
        )])),
        ..ConfigMap::default()
    };
    Object::new("ConfigMap", RUNTIME_CONFIG_MAP, &cm)
}

/// One queue the operator provisions (platform.md §3 item 1, §1 "entity").
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// `asya-{ns}-{actor}` or `asya-{ns}-dlq`.
    pub name: String,
    /// `ASYA_TRANSPORT` value.
    pub transport: &'static str,
    /// The actor it feeds; `None` for the dead-letter queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Broker settings from platform.md §1 (attributes, retention, bindings).
    pub settings: BTreeMap<String, String>,
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The queues of the mesh: every actor's (user and crew, sorted by name) and, where the
/// transport dead-letters to a namespace queue, `asya-{ns}-dlq` last.
pub fn queues(mesh: &Mesh) -> Vec<Queue> {
    let kind = mesh.transport.kind();
    let mut actors: Vec<&str> = mesh.actors.iter().map(|a| a.spec.actor.as_str()).collect();
    if mesh.options.crew {
        actors.extend(CREW);
    }
    actors.sort_unstable();
    let dlq = mesh.dlq();
    let mut out: Vec<Queue> = actors
        .into_iter()
        .map(|a| {
            let s = match &mesh.transport {
                Transport::RabbitMq { exchange } => {
                    let mut s = settings(&[("durable", "true"), ("routingKey", a)]);
                    s.insert("exchange".into(), exchange.clone());
                    s.insert("deadLetterExchange".into(), "asya-dlx".into());
                    s
                }
                Transport::Sqs { .. } => {
                    let mut s = settings(&[
                        ("VisibilityTimeout", "30"),
                        ("MessageRetentionPeriod", "345600"),
                        ("ReceiveMessageWaitTimeSeconds", "20"),
                        ("maxReceiveCount", "3"),
                        ("tag:asya.sh/actor", a),
                    ]);
                    s.insert("tag:asya.sh/namespace".into(), mesh.namespace.clone());
                    s.insert("deadLetterQueue".into(), dlq.clone());
                    s
                }
                Transport::PubSub { .. } => settings(&[
                    ("ackDeadlineSeconds", "300"),
                    ("messageRetentionDuration", "604800s"),
                ]),
                Transport::Nats { .. } => settings(&[
                    ("retention", "workqueue"),
                    ("storage", "file"),
                    ("ackPolicy", "explicit"),
                    ("ackWait", "30s"),
                ]),
                Transport::Redis { .. } => settings(&[("consumerGroup", "asya")]),
            };
            Queue {
                name: mesh.queue(a),
                transport: kind,
                actor: Some(a.to_owned()),
                settings: s,
            }
        })
        .collect();
    if !matches!(mesh.transport, Transport::RabbitMq { .. }) {
        out.push(Queue {
            name: dlq,
            transport: kind,
            actor: None,
            settings: BTreeMap::new(),
        });
    }
    out
}

/// ConfigMap `troupe-queues`: one key per queue, its settings as YAML. The operator
/// provisions them; GitOps users see what must exist before the actors start.
pub(crate) fn queue_config_map(mesh: &Mesh) -> Result<Object, RenderError> {
    let labels = child_labels(QUEUES_CONFIG_MAP, Component::Mesh, &BTreeMap::new());
    let mut data = BTreeMap::new();
    for q in queues(mesh) {
        let text = serde_yaml::to_string(&q).map_err(|source| RenderError::Yaml {
            file: q.name.clone(),
            source,
        })?;
        data.insert(q.name.clone(), text);
    }
    let cm = ConfigMap {
        metadata: meta(QUEUES_CONFIG_MAP, &mesh.namespace, &labels, None),
        data: Some(data),
        ..ConfigMap::default()
    };
    Object::new("ConfigMap", QUEUES_CONFIG_MAP, &cm)
}
