//! Objects of one actor (platform.md §3 items 2–5) and the pieces crew actors share.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretEnvSource, SecretKeySelector, SecurityContext,
    ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use troupe_protocol::sidecar_env as env;
use troupe_resource::{AsyncActorSpec, CrewRole, PullPolicy};

use crate::labels::{child_labels, meta, selector, Component};
use crate::model::{
    ActorInput, Mesh, Transport, RUNTIME_CONFIG_MAP, TOKEN_SECRET, TRANSPORT_SECRET,
};
use crate::output::Object;
use crate::scaled;
use crate::RenderError;

/// Socket folder shared by runtime and sidecar.
pub(crate) const SOCKET_DIR: &str = "/var/run/asya";
/// Where the runtime file is mounted.
pub(crate) const RUNTIME_PATH: &str = "/opt/asya/asya_runtime.py";
/// Key of the runtime file in [`RUNTIME_CONFIG_MAP`].
pub(crate) const RUNTIME_KEY: &str = "asya_runtime.py";
/// The sidecar's metrics and probe port (`ASYA_METRICS_ADDR` default `:8080`).
pub(crate) const METRICS_PORT: i32 = 8080;
/// Gateway internal listener, where sidecars report (security.md).
pub(crate) const GATEWAY_INTERNAL_URL: &str = "http://troupe-gateway-internal:8081";
/// What the startup, readiness and liveness probes of the runtime run (platform.md §3).
const RUNTIME_READY: &str =
    "test -S /var/run/asya/asya-runtime.sock && test -f /var/run/asya/runtime-ready";

/// UID and GID of the Troupe image (distroless `nonroot`).
pub(crate) const TROUPE_UID: i64 = 65532;

/// The pod securityContext of a pod that runs only Troupe containers (crew, gateway): the
/// chart's `podSecurityContext`, so `scripts/helm-check.sh` finds them identical.
pub(crate) fn troupe_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

/// The pod securityContext of a user actor: the runtime runs the user's image, which may
/// run as root (Asya images do), so only seccomp is pod-wide; non-root is per container.
fn actor_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}

/// The securityContext of a Troupe container (sidecar, crew, gateway): the chart's
/// `securityContext`.
pub(crate) fn troupe_security() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(TROUPE_UID),
        run_as_group: Some(TROUPE_UID),
        ..user_security()
    }
}

/// What is safe to impose on a container running the user's image (runtime, state
/// proxies): no privilege escalation, no capabilities; it may run as root and write to its
/// filesystem (docs/decisions.md "Rendered securityContexts").
fn user_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// The objects of a user actor.
pub(crate) fn render_actor(mesh: &Mesh, a: &ActorInput) -> Result<Vec<Object>, RenderError> {
    let spec = &a.spec;
    let name = spec.actor.as_str();
    let labels = child_labels(name, Component::Actor, &a.labels);
    let owner = a.owner.as_ref();
    let scaling = spec.scaling();
    let mut out = vec![service_account(mesh, name, &labels, owner)?];
    if scaling.enabled() {
        if let Some(ta) = scaled::trigger_auth(mesh, name, &labels, owner)? {
            out.push(ta);
        }
        out.push(scaled::scaled_object(mesh, name, &scaling, &labels, owner)?);
    }
    if let Some(role) = spec.crew {
        out.push(Object::new(
            "Deployment",
            name,
            &crew_actor_deployment(mesh, spec, role, &labels, owner),
        )?);
        return Ok(out);
    }
    let runtime_map = match &a.runtime_py {
        Some(py) => {
            let cm_name = format!("{name}-runtime");
            out.push(runtime_config_map(mesh, &cm_name, py, &labels, owner)?);
            cm_name
        }
        None => RUNTIME_CONFIG_MAP.to_owned(),
    };
    out.push(Object::new(
        "Deployment",
        name,
        &actor_deployment(mesh, spec, &labels, owner, &runtime_map),
    )?);
    Ok(out)
}

/// A ConfigMap holding a runtime file under [`RUNTIME_KEY`].
pub(crate) fn runtime_config_map(
    mesh: &Mesh,
    name: &str,
    py: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Result<Object, RenderError> {
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: meta(name, &mesh.namespace, labels, owner),
        data: Some(BTreeMap::from([(RUNTIME_KEY.to_owned(), py.to_owned())])),
        ..Default::default()
    };
    Object::new("ConfigMap", name, &cm)
}

/// ServiceAccount `{name}`, with the IRSA role when one is configured.
pub(crate) fn service_account(
    mesh: &Mesh,
    name: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Result<Object, RenderError> {
    let mut metadata = meta(name, &mesh.namespace, labels, owner);
    if let Some(arn) = &mesh.options.aws_role_arn {
        metadata.annotations = Some(BTreeMap::from([(
            "eks.amazonaws.com/role-arn".to_owned(),
            arn.clone(),
        )]));
    }
    let sa = ServiceAccount {
        metadata,
        ..ServiceAccount::default()
    };
    // k8s-openapi's Serialize writes apiVersion and kind itself.
    Object::new("ServiceAccount", name, &sa)
}

pub(crate) fn var(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(crate) fn secret_var(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }
}

/// `ASYA_TRANSPORT` and the broker's non-secret variables (`ASYA_AWS_REGION`, ...).
pub(crate) fn transport_env(mesh: &Mesh, transport_var: &str) -> Vec<EnvVar> {
    let mut v = vec![var(transport_var, mesh.transport.kind())];
    match &mesh.transport {
        Transport::RabbitMq { exchange } => v.push(var("ASYA_RABBITMQ_EXCHANGE", exchange)),
        Transport::Sqs { region, endpoint } => {
            v.push(var("ASYA_AWS_REGION", region));
            if let Some(e) = endpoint {
                v.push(var("ASYA_SQS_ENDPOINT", e));
            }
        }
        Transport::PubSub { project, endpoint } => {
            v.push(var("ASYA_PUBSUB_PROJECT_ID", project));
            if let Some(e) = endpoint {
                v.push(var("ASYA_PUBSUB_ENDPOINT", e));
            }
        }
        Transport::Nats { .. } | Transport::Redis { .. } => {}
    }
    v
}

/// `envFrom` of the transport secret (broker URL, cloud keys).
pub(crate) fn transport_env_from(mesh: &Mesh) -> Vec<EnvFromSource> {
    vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: TRANSPORT_SECRET.to_owned(),
            optional: (!mesh.transport.secret_required()).then_some(true),
        }),
        ..EnvFromSource::default()
    }]
}

/// Sidecar variables every sidecar gets (user actor or crew), from the one table.
pub(crate) fn sidecar_base_env(mesh: &Mesh, actor: &str) -> Vec<EnvVar> {
    let mut v = vec![
        var(env::ACTOR_NAME, actor),
        var(env::NAMESPACE, &mesh.namespace),
        var(env::ACTOR_SINK, "x-sink"),
        var(env::ACTOR_SUMP, "x-sump"),
        var(env::SOCKET_DIR, SOCKET_DIR),
    ];
    v.extend(transport_env(mesh, env::TRANSPORT));
    if mesh.options.gateway {
        let url = match &mesh.options.gateway_namespace {
            // Sidecars in other namespaces reach the gateway by its full service name.
            Some(ns) => format!("http://troupe-gateway-internal.{ns}.svc:8081"),
            None => GATEWAY_INTERNAL_URL.to_owned(),
        };
        v.push(var(env::GATEWAY_URL, &url));
        v.push(secret_var(env::GATEWAY_TOKEN, TOKEN_SECRET, "token"));
    }
    v
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The `asya-sidecar` container (`troupe sidecar`).
pub(crate) fn sidecar_container(
    mesh: &Mesh,
    env: Vec<EnvVar>,
    spec: Option<&AsyncActorSpec>,
) -> Container {
    let sc = spec.and_then(|s| s.sidecar.as_ref());
    let image = sc.and_then(|s| s.image.as_ref());
    let image_name = match image.and_then(|i| i.repository.as_deref()) {
        Some(repo) => format!(
            "{repo}:{}",
            image.and_then(|i| i.tag.as_deref()).unwrap_or("latest")
        ),
        None => match image.and_then(|i| i.tag.as_deref()) {
            Some(tag) => format!(
                "{}:{tag}",
                mesh.options
                    .image
                    .rsplit_once(':')
                    .map_or(mesh.options.image.as_str(), |(r, _)| r)
            ),
            None => mesh.options.image.clone(),
        },
    };
    let http_probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    };
    // Asya's own sidecar image reads the same ASYA_* variables but has its own entrypoint:
    // it takes no `sidecar` verb (an AsyncActor written for Asya that pins it keeps it).
    let asya_sidecar = image
        .and_then(|i| i.repository.as_deref())
        .is_some_and(|r| r.rsplit('/').next() == Some("asya-sidecar"));
    Container {
        name: "asya-sidecar".into(),
        image: Some(image_name),
        image_pull_policy: image.and_then(|i| i.pull_policy).map(pull_policy),
        args: (!asya_sidecar).then(|| vec!["sidecar".into()]),
        env: Some(env),
        env_from: Some(transport_env_from(mesh)),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe("/healthz")),
        readiness_probe: Some(http_probe("/readyz")),
        resources: sc.and_then(|s| s.resources.clone()),
        volume_mounts: Some(vec![mount("socket-dir", SOCKET_DIR)]),
        security_context: Some(troupe_security()),
        ..Container::default()
    }
}

fn pull_policy(p: PullPolicy) -> String {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
    .to_owned()
}

pub(crate) fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

pub(crate) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn exec_probe(period: i32, failures: Option<i32>) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), RUNTIME_READY.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: failures,
        ..Probe::default()
    }
}

/// The sidecar environment of a user actor: base, resiliency, Troupe extensions, tracing,
/// then `spec.sidecar.env` (last, so the user's value wins).
fn actor_sidecar_env(mesh: &Mesh, spec: &AsyncActorSpec) -> Vec<EnvVar> {
    let mut v = sidecar_base_env(mesh, &spec.actor);
    v.push(var(env::RESILIENCY_ACTOR_TIMEOUT, spec.actor_timeout()));
    if let Some(r) = &spec.resiliency {
        if !r.policies.is_empty() {
            v.push(var(env::RESILIENCY_POLICIES, json(&r.policies)));
        }
        if !r.rules.is_empty() {
            v.push(var(env::RESILIENCY_RULES, json(&r.rules)));
        }
    }
    if let Some(c) = spec.concurrency {
        v.push(var(env::CONCURRENCY, c.to_string()));
    }
    if let Some(p) = spec.pipeline {
        v.push(var(env::PIPELINE, p.to_string()));
    }
    if let Some(t) = &spec.tracing {
        if let Some(e) = &t.endpoint {
            v.push(var(env::OTEL_ENDPOINT, e));
        }
        if let Some(p) = &t.protocol {
            v.push(var(env::OTEL_PROTOCOL, p));
        }
    }
    if let Some(s) = &spec.sidecar {
        merge_env(&mut v, &s.env);
    }
    v
}

/// Adds `user` to `env`, replacing a variable of the same name in place: a list with a name
/// twice is refused by server-side apply (`name` is the merge key).
pub(crate) fn merge_env(env: &mut Vec<EnvVar>, user: &[EnvVar]) {
    for u in user {
        match env.iter_mut().find(|e| e.name == u.name) {
            Some(e) => *e = u.clone(),
            None => env.push(u.clone()),
        }
    }
}

/// The runtime container `asya-runtime`.
fn runtime_container(spec: &AsyncActorSpec) -> Container {
    let mut env = vec![
        var(env::runtime::SOCKET_DIR, SOCKET_DIR),
        var(env::runtime::HANDLER, &spec.handler),
    ];
    merge_env(&mut env, &spec.env);
    let from_secrets: Vec<EnvVar> = spec
        .secret_refs
        .iter()
        .flat_map(|r| {
            r.keys
                .iter()
                .map(|k| secret_var(&k.env_var, &r.secret_name, &k.key))
        })
        .collect();
    merge_env(&mut env, &from_secrets);
    if !spec.state_proxy.is_empty() {
        let mounts: Vec<_> = spec
            .state_proxy
            .iter()
            .map(|s| serde_json::json!({"name": s.name, "path": s.mount.path}))
            .collect();
        env.push(var(env::runtime::STATE_PROXY_MOUNTS, json(&mounts)));
    }
    let mut mounts = vec![
        mount("socket-dir", SOCKET_DIR),
        mount("tmp", "/tmp"),
        mount("state-sockets", "/var/run/asya/state"),
        VolumeMount {
            name: "asya-runtime".into(),
            mount_path: RUNTIME_PATH.into(),
            sub_path: Some(RUNTIME_KEY.into()),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    mounts.extend(spec.volume_mounts.iter().cloned());
    Container {
        name: "asya-runtime".into(),
        image: spec.image.clone(),
        image_pull_policy: Some(pull_policy(spec.image_pull_policy())),
        command: Some(vec![
            spec.python_executable().to_owned(),
            RUNTIME_PATH.to_owned(),
        ]),
        env: Some(env),
        resources: spec.resources.clone(),
        startup_probe: Some(exec_probe(2, Some(150))),
        readiness_probe: Some(exec_probe(10, None)),
        liveness_probe: Some(exec_probe(10, None)),
        volume_mounts: Some(mounts),
        security_context: Some(user_security()),
        ..Container::default()
    }
}

/// `asya-state-proxy-{name}` containers (platform.md §5).
fn state_proxy_containers(spec: &AsyncActorSpec) -> Vec<Container> {
    spec.state_proxy
        .iter()
        .map(|s| Container {
            name: format!("asya-state-proxy-{}", s.name),
            image: Some(s.connector.image.clone()),
            image_pull_policy: s.connector.image_pull_policy.map(pull_policy),
            env: Some(
                [var("ASYA_STATE_PROXY_NAME", &s.name)]
                    .into_iter()
                    .chain(s.connector.env.iter().cloned())
                    .collect(),
            ),
            resources: s.connector.resources.clone(),
            volume_mounts: Some(vec![mount("state-sockets", "/var/run/asya/state")]),
            security_context: Some(user_security()),
            ..Container::default()
        })
        .collect()
}

/// Deployment `{actor}`: runtime, sidecar, state proxies; the user's pod settings.
fn actor_deployment(
    mesh: &Mesh,
    spec: &AsyncActorSpec,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
    runtime_map: &str,
) -> Deployment {
    let mut containers = vec![
        runtime_container(spec),
        sidecar_container(mesh, actor_sidecar_env(mesh, spec), Some(spec)),
    ];
    containers.extend(state_proxy_containers(spec));
    containers.extend(spec.sidecars.iter().cloned());
    let mut volumes = vec![
        empty_dir("socket-dir"),
        empty_dir("tmp"),
        empty_dir("state-sockets"),
        Volume {
            name: "asya-runtime".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: runtime_map.into(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(spec.volumes.iter().cloned());
    pod_deployment(
        mesh,
        spec,
        labels,
        owner,
        containers,
        volumes,
        actor_pod_security(),
    )
}

/// Deployment `{actor}` of a crew actor (`spec.crew`, e.g. a compiled fan-in): the Troupe
/// sidecar with `TROUPE_CREW` and no runtime container (platform.md §3). With no runtime,
/// the user's `env`, `volumeMounts` and state proxies go to the sidecar: that is how its
/// state (`ASYA_PERSISTENCE_MOUNT`) reaches a volume every replica shares.
fn crew_actor_deployment(
    mesh: &Mesh,
    spec: &AsyncActorSpec,
    role: CrewRole,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Deployment {
    let mut env = actor_sidecar_env(mesh, spec);
    let mut crew = vec![var(env::CREW, role.as_str())];
    if let Some(t) = spec.fan_in.as_ref().and_then(|f| f.timeout.as_ref()) {
        crew.push(var(env::FANIN_TIMEOUT, t));
    }
    merge_env(&mut env, &crew);
    merge_env(&mut env, &spec.env);
    // The sidecar overrides stay last, as for any actor.
    if let Some(sc) = &spec.sidecar {
        merge_env(&mut env, &sc.env);
    }
    let mut sidecar = sidecar_container(mesh, env, Some(spec));
    let mut mounts = vec![mount("socket-dir", SOCKET_DIR)];
    if !spec.state_proxy.is_empty() {
        mounts.push(mount("state-sockets", "/var/run/asya/state"));
    }
    mounts.extend(spec.volume_mounts.iter().cloned());
    sidecar.volume_mounts = Some(mounts);
    let mut containers = vec![sidecar];
    containers.extend(state_proxy_containers(spec));
    containers.extend(spec.sidecars.iter().cloned());
    let mut volumes = vec![empty_dir("socket-dir")];
    if !spec.state_proxy.is_empty() {
        volumes.push(empty_dir("state-sockets"));
    }
    volumes.extend(spec.volumes.iter().cloned());
    pod_deployment(
        mesh,
        spec,
        labels,
        owner,
        containers,
        volumes,
        troupe_pod_security(),
    )
}

/// An actor's Deployment: its pod with the spec's scheduling fields and init containers.
fn pod_deployment(
    mesh: &Mesh,
    spec: &AsyncActorSpec,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
    security: PodSecurityContext,
) -> Deployment {
    let name = spec.actor.as_str();
    let pod = PodSpec {
        service_account_name: Some(name.to_owned()),
        termination_grace_period_seconds: Some(30),
        init_containers: (!spec.init_containers.is_empty()).then(|| spec.init_containers.clone()),
        containers,
        volumes: Some(volumes),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        security_context: Some(security),
        ..PodSpec::default()
    };
    let replicas = (!spec.scaling().enabled()).then(|| spec.replicas());
    deployment(mesh, name, labels, owner, pod, replicas)
}

/// A Deployment around `pod`; `replicas` only when KEDA does not own the count.
pub(crate) fn deployment(
    mesh: &Mesh,
    name: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
    pod: PodSpec,
    replicas: Option<u32>,
) -> Deployment {
    Deployment {
        metadata: meta(name, &mesh.namespace, labels, owner),
        spec: Some(DeploymentSpec {
            replicas: replicas.map(|r| i32::try_from(r).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector(name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::{mesh, spec};
    use troupe_resource::SidecarSpec;

    #[test]
    fn a_fan_in_crew_actor_runs_the_sidecar_alone_with_troupe_crew() {
        let m = mesh(Transport::Nats {
            monitoring_endpoint: "n:8222".into(),
        });
        let s = spec(
            "{actor: fanin-x, crew: fan-in, fanIn: {timeout: 30s}, \
             env: [{name: ASYA_PERSISTENCE_MOUNT, value: /state}]}",
        );
        let objs = render_actor(&m, &ActorInput::from(s)).unwrap();
        let d = objs.iter().find(|o| o.kind == "Deployment").unwrap();
        let pod = &d.value["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{containers:?}");
        assert_eq!(containers[0]["name"], "asya-sidecar");
        let env: BTreeMap<String, String> = containers[0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        assert_eq!(env["TROUPE_CREW"], "fan-in");
        assert_eq!(env["TROUPE_FANIN_TIMEOUT"], "30s");
        assert_eq!(env["ASYA_PERSISTENCE_MOUNT"], "/state");
        assert!(!env.contains_key("ASYA_HANDLER"));
        assert!(!serde_json::to_string(pod).unwrap().contains("asya-runtime"));
    }

    #[test]
    fn a_disabled_scaling_gives_fixed_replicas_and_no_scaled_object() {
        let m = mesh(Transport::Nats {
            monitoring_endpoint: "n:8222".into(),
        });
        let a = ActorInput::from(spec(
            "{actor: a, image: i, handler: m.f, replicas: 3, scaling: {enabled: false}}",
        ));
        let objs = render_actor(&m, &a).unwrap();
        assert!(objs.iter().all(|o| o.kind != "ScaledObject"));
        let d = objs.iter().find(|o| o.kind == "Deployment").unwrap();
        assert_eq!(d.value["spec"]["replicas"], 3);
        let scaled = ActorInput::from(spec("{actor: a, image: i, handler: m.f}"));
        let d = render_actor(&m, &scaled).unwrap().pop().unwrap();
        assert!(
            d.value["spec"].get("replicas").is_none(),
            "KEDA owns the count"
        );
    }

    #[test]
    fn sidecar_env_comes_from_the_table_and_user_values_replace_in_place() {
        let m = mesh(Transport::RabbitMq {
            exchange: "asya".into(),
        });
        let mut s = spec("{actor: a, handler: m.f}");
        s.sidecar = Some(SidecarSpec {
            env: vec![var(env::ACTOR_SINK, "my-sink")],
            ..SidecarSpec::default()
        });
        let e = actor_sidecar_env(&m, &s);
        let names: Vec<&str> = e.iter().map(|v| v.name.as_str()).collect();
        for n in &names {
            assert!(
                env::ALL.iter().any(|v| v.name == *n) || n.starts_with("ASYA_RABBITMQ_"),
                "{n} is not in troupe_protocol::sidecar_env"
            );
        }
        assert_eq!(names.iter().filter(|n| **n == env::ACTOR_SINK).count(), 1);
        let sink = e.iter().find(|v| v.name == env::ACTOR_SINK).unwrap();
        assert_eq!(sink.value.as_deref(), Some("my-sink"));
        assert_eq!(
            e.iter()
                .find(|v| v.name == env::RESILIENCY_ACTOR_TIMEOUT)
                .unwrap()
                .value
                .as_deref(),
            Some("5m")
        );
    }

    #[test]
    fn sidecar_image_overrides_keep_the_default_repository_for_a_bare_tag() {
        let m = mesh(Transport::RabbitMq {
            exchange: "asya".into(),
        });
        let s = spec("{actor: a, handler: m.f, sidecar: {image: {tag: dev}}}");
        let c = sidecar_container(&m, vec![], Some(&s));
        assert_eq!(c.image.as_deref(), Some("ghcr.io/troupe-mesh/troupe:dev"));
        let s = spec("{actor: a, handler: m.f, sidecar: {image: {repository: ghcr.io/deliveryhero/asya-sidecar, tag: '1.0', pullPolicy: Always}}}");
        let c = sidecar_container(&m, vec![], Some(&s));
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/deliveryhero/asya-sidecar:1.0")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.args, None, "Asya's sidecar has its own entrypoint");
        let s = spec("{actor: a, handler: m.f, sidecar: {image: {repository: registry.example/mirror/troupe, tag: '1.0'}}}");
        let c = sidecar_container(&m, vec![], Some(&s));
        assert_eq!(c.args, Some(vec!["sidecar".to_owned()]));
    }

    #[test]
    fn sidecars_name_the_gateway_of_another_namespace_in_full() {
        let mut m = mesh(Transport::RabbitMq {
            exchange: "asya".into(),
        });
        let url = |m: &Mesh| {
            sidecar_base_env(m, "a")
                .into_iter()
                .find(|v| v.name == env::GATEWAY_URL)
                .and_then(|v| v.value)
        };
        assert_eq!(url(&m).as_deref(), Some(GATEWAY_INTERNAL_URL));
        m.options.gateway_namespace = Some("troupe".into());
        assert_eq!(
            url(&m).as_deref(),
            Some("http://troupe-gateway-internal.troupe.svc:8081")
        );
    }

    #[test]
    fn state_proxies_add_containers_and_their_mounts_to_the_runtime() {
        let s = spec("{actor: a, handler: m.f, stateProxy: [{name: kv, mount: {path: /state/kv}, connector: {image: c:1}}]}");
        let cs = state_proxy_containers(&s);
        assert_eq!(cs[0].name, "asya-state-proxy-kv");
        let r = runtime_container(&s);
        let mounts = r
            .env
            .unwrap()
            .into_iter()
            .find(|e| e.name == env::runtime::STATE_PROXY_MOUNTS)
            .unwrap();
        assert_eq!(
            mounts.value.as_deref(),
            Some(r#"[{"name":"kv","path":"/state/kv"}]"#)
        );
    }

    #[test]
    fn an_actor_with_its_own_runtime_file_mounts_its_own_config_map() {
        let m = mesh(Transport::Nats {
            monitoring_endpoint: "n:8222".into(),
        });
        let mut a = ActorInput::from(spec("{actor: a, image: i, handler: m.f}"));
        a.runtime_py = Some("# mine".into());
        let objs = render_actor(&m, &a).unwrap();
        let cm = objs.iter().find(|o| o.kind == "ConfigMap").unwrap();
        assert_eq!(cm.name, "a-runtime");
        assert_eq!(cm.value["data"][RUNTIME_KEY], "# mine");
        let d = objs.iter().find(|o| o.kind == "Deployment").unwrap();
        let vols = d.value["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        let rt = vols.iter().find(|v| v["name"] == "asya-runtime").unwrap();
        assert_eq!(rt["configMap"]["name"], "a-runtime");
        // Without one, the mesh's ConfigMap.
        let plain = ActorInput::from(spec("{actor: a, image: i, handler: m.f}"));
        let d = render_actor(&m, &plain).unwrap().pop().unwrap();
        let vols = d.value["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap();
        assert!(vols
            .iter()
            .any(|v| v["configMap"]["name"] == RUNTIME_CONFIG_MAP));
    }

    #[test]
    fn the_irsa_role_annotates_service_accounts() {
        let mut m = mesh(Transport::Sqs {
            region: "eu-west-1".into(),
            endpoint: None,
        });
        m.options.aws_role_arn = Some("arn:aws:iam::1:role/r".into());
        let sa = service_account(&m, "a", &BTreeMap::new(), None).unwrap();
        assert_eq!(
            sa.value["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/r"
        );
        assert_eq!(sa.value["apiVersion"], "v1");
    }
}
