//! `troupe render`: Kubernetes manifests from the mesh file (troupe-render does the work;
//! this file reads the mesh, picks the transport and writes the files), or the AsyncActor
//! CRD with `--crd`.

use std::path::{Path, PathBuf};

use troupe_mesh::MeshConfig;
use troupe_render::{ActorInput, CrewSettings, Mesh, Options, Transport};
use troupe_transports::TransportSpec;

/// Arguments of `troupe render`.
pub struct Args {
    /// Folder holding troupe.yaml, or the mesh file.
    pub mesh: PathBuf,
    /// Kubernetes (and queue) namespace; the mesh file's `namespace` when absent.
    pub namespace: Option<String>,
    /// Broker URL; the mesh file's `transport` when absent.
    pub transport: Option<String>,
    /// Folder to write one file per object into; stdout when absent.
    pub out: Option<PathBuf>,
    /// Print the CRD instead.
    pub crd: bool,
    /// `--push-scaler`: the push scaler's `host:port`, or `off`; absent: the operator's
    /// service in the namespace ([`default_push_scaler`]).
    pub push_scaler: Option<String>,
}

/// Port the push scaler serves gRPC on (`troupe scaler --listen`, the operator).
pub const PUSH_SCALER_PORT: u16 = 9090;

/// Where KEDA reaches the push scaler by default: the operator's Service in `namespace`.
pub fn default_push_scaler(namespace: &str) -> String {
    format!("troupe-operator.{namespace}.svc:{PUSH_SCALER_PORT}")
}

/// The `--push-scaler` value as the renderer takes it: `None` for `off`.
pub(crate) fn push_scaler(flag: Option<&str>, namespace: &str) -> Result<Option<String>, String> {
    let Some(v) = flag.map(str::trim) else {
        return Ok(Some(default_push_scaler(namespace)));
    };
    if v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match v.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.contains("://")
                && port.parse::<u16>().is_ok_and(|p| p > 0) =>
        {
            Ok(Some(v.to_owned()))
        }
        _ => Err(format!(
            "--push-scaler '{v}' is not host:port (e.g. {}) or off",
            default_push_scaler(namespace)
        )),
    }
}

/// Runs `troupe render`: 0 on success, 2 on input the user must fix, 1 on I/O failures.
pub fn run(args: Args) -> u8 {
    if args.crd {
        return match troupe_resource::crd_yaml() {
            Ok(yaml) => {
                crate::stdout_line(yaml.trim_end());
                0
            }
            Err(e) => {
                eprintln!("troupe render: {e}");
                1
            }
        };
    }
    let mesh = match read_mesh(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("troupe render: {e}");
            return 2;
        }
    };
    let rendered = match troupe_render::render(&mesh) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("troupe render: {e}");
            return 2;
        }
    };
    match &args.out {
        None => match rendered.stream() {
            Ok(s) => {
                crate::stdout_line(s.trim_end());
                0
            }
            Err(e) => {
                eprintln!("troupe render: {e}");
                1
            }
        },
        Some(dir) => match write_dir(dir, &rendered) {
            Ok(n) => {
                eprintln!("troupe render: wrote {n} files to {}", dir.display());
                0
            }
            Err(e) => {
                eprintln!("troupe render: {e}");
                1
            }
        },
    }
}

fn write_dir(dir: &Path, rendered: &troupe_render::Rendered) -> Result<usize, String> {
    let files = rendered.files().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.len())
}

fn read_mesh(args: &Args) -> Result<Mesh, String> {
    let (config, _warnings) = MeshConfig::load_for_kubernetes(&args.mesh)
        .map_err(|e| format!("invalid mesh file:\n{e}"))?;
    let url = args.transport.as_deref().unwrap_or(&config.transport);
    let transport = cluster_transport(url)?;
    let missing: Vec<String> = config
        .actors
        .iter()
        // A crew actor (crew: fan-in) runs in the Troupe image: it has no runtime image.
        .filter(|a| a.spec.crew.is_none() && a.spec.image.as_deref().is_none_or(str::is_empty))
        .map(|a| format!("'{}' ({}:{})", a.name, config.file.display(), a.line))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "actors without `image:` cannot run on Kubernetes: {}; add the image that holds Python and the handler code",
            missing.join(", ")
        ));
    }
    let runtime_py = match &config.runtime {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the runtime file {}: {e}", p.display()))?,
        None => troupe_runtime::RUNTIME_PY.to_owned(),
    };
    let mut actors = Vec::with_capacity(config.actors.len());
    for a in &config.actors {
        if !a.spec.flavors.is_empty() {
            // Flavors are Crossplane EnvironmentConfigs in the cluster: nothing here can
            // read them, so the rendered actor is the inline spec alone.
            eprintln!(
                "troupe render: warning: actor '{}' ({}:{}) lists flavors [{}]; they are cluster objects troupe render cannot read, so only the inline spec is rendered: copy their fields into the actor",
                a.name,
                config.file.display(),
                a.line,
                a.spec.flavors.join(", ")
            );
        }
        let mut input = ActorInput::from(a.spec.clone());
        // ActorConfig::runtime is the actor's file, else the mesh's: only a file of its
        // own needs its own ConfigMap.
        if let Some(p) = a
            .runtime
            .as_ref()
            .filter(|p| Some(*p) != config.runtime.as_ref())
        {
            input.runtime_py = Some(std::fs::read_to_string(p).map_err(|e| {
                format!(
                    "cannot read actor '{}''s runtime file {}: {e}",
                    a.name,
                    p.display()
                )
            })?);
        }
        actors.push(input);
    }
    let crew = &config.crew;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.namespace.clone());
    let push_scaler = push_scaler(args.push_scaler.as_deref(), &namespace)?;
    Ok(Mesh {
        namespace,
        transport,
        actors,
        options: Options {
            runtime_py: Some(runtime_py),
            crew_settings: CrewSettings {
                sink_hooks: crew.sink_hooks.clone(),
                sink_fanout_hooks: crew.sink_fanout_hooks,
                pause_metadata: crew.pause_metadata.clone(),
                resume_merge_mode: Some(
                    match crew.resume_merge_mode {
                        troupe_crew::MergeMode::Shallow => "shallow",
                        troupe_crew::MergeMode::Deep => "deep",
                    }
                    .to_owned(),
                ),
            },
            cors_origins: config.gateway.cors_origins.clone(),
            push_scaler,
            ..Options::default()
        },
    })
}

/// What the manifests need to know about the broker at `url`; secrets stay out.
fn cluster_transport(url: &str) -> Result<Transport, String> {
    if url.trim() == "embedded" {
        return Err("the embedded transport runs inside `troupe up` only and has no meaning on a cluster: pass a broker with --transport (amqp://…, sqs://REGION, pubsub://PROJECT, nats://…, redis://…)".into());
    }
    let spec = TransportSpec::from_url(url).map_err(|e| e.to_string())?;
    // The operator maps its environment's transport the same way.
    Ok(troupe_operator::config::render_transport(&spec))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn transports_map_to_what_manifests_need() {
        assert_eq!(
            cluster_transport("amqp://u:p@mq:5672/%2f?exchange=ex").unwrap(),
            Transport::RabbitMq {
                exchange: "ex".into()
            }
        );
        assert_eq!(
            cluster_transport("nats://user:pw@nats.messaging:4222").unwrap(),
            Transport::Nats {
                monitoring_endpoint: "nats.messaging:8222".into()
            }
        );
        assert_eq!(
            cluster_transport("redis://:secret@redis:6380/0").unwrap(),
            Transport::Redis {
                address: "redis:6380".into(),
                password: true
            }
        );
        assert_eq!(
            cluster_transport("redis://redis").unwrap(),
            Transport::Redis {
                address: "redis:6379".into(),
                password: false
            }
        );
        assert!(
            matches!(cluster_transport("sqs://eu-west-1").unwrap(), Transport::Sqs { region, endpoint: None } if region == "eu-west-1")
        );
        assert!(cluster_transport("embedded")
            .unwrap_err()
            .contains("no meaning on a cluster"));
        assert!(cluster_transport("kafka://x").is_err());
    }

    #[test]
    fn the_push_scaler_defaults_to_the_operator_and_can_be_turned_off() {
        assert_eq!(
            push_scaler(None, "prod").unwrap().as_deref(),
            Some("troupe-operator.prod.svc:9090")
        );
        assert_eq!(push_scaler(Some("off"), "prod").unwrap(), None);
        assert_eq!(
            push_scaler(Some("scaler.ops:7000"), "prod")
                .unwrap()
                .as_deref(),
            Some("scaler.ops:7000")
        );
        for bad in ["scaler", "scaler:", ":9090", "http://s:9090", "s:99999"] {
            let e = push_scaler(Some(bad), "prod").unwrap_err();
            assert!(e.contains("host:port"), "{bad}: {e}");
        }
    }

    /// The Secret `troupe-transport` a user would create, per transport.
    fn secret(kind: &str) -> Vec<(&'static str, &'static str)> {
        match kind {
            "rabbitmq" => vec![("ASYA_RABBITMQ_URL", "amqp://u:p@mq:5672/%2f")],
            "nats" => vec![("TROUPE_NATS_URL", "nats://nats:4222")],
            "redis" => vec![("TROUPE_REDIS_URL", "redis://:pw@redis:6379/0")],
            "sqs" => vec![("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")],
            _ => vec![("GOOGLE_OAUTH_ACCESS_TOKEN", "t")],
        }
    }

    /// A container's environment as the kubelet would build it: `envFrom` first, then
    /// `env` (later wins), `secretKeyRef` resolved to a placeholder.
    fn container_env(
        c: &serde_json::Value,
        kind: &str,
    ) -> std::collections::HashMap<String, String> {
        let mut env: std::collections::HashMap<String, String> = secret(kind)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        for e in c["env"].as_array().unwrap() {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = match e.get("value") {
                Some(v) => v.as_str().unwrap().to_owned(),
                None if name == "TROUPE_GATEWAY_STORE" => "postgres://u@db:5432/troupe".into(),
                None => "from-a-secret".into(),
            };
            env.insert(name, value);
        }
        env
    }

    /// Every rendered sidecar (actors and crew) and the gateway start with their rendered
    /// environment: the real parsers of `troupe sidecar` and `troupe gateway` accept it
    /// with no warning, for every transport.
    #[test]
    fn rendered_environments_are_accepted_by_troupe_sidecar_and_troupe_gateway() {
        let spec: troupe_resource::AsyncActorSpec = serde_json::from_value(serde_json::json!({
            "actor": "a", "image": "i", "handler": "m.f", "concurrency": 2,
            "resiliency": {"actorTimeout": "10m",
                "policies": {"default": {"maxAttempts": 3, "backoff": "exponential", "initialDelay": "2s"}},
                "rules": [{"errors": ["TimeoutError"], "policy": "default"}]},
            "tracing": {"endpoint": "http://otel:4317", "protocol": "grpc"}
        }))
        .unwrap();
        for url in [
            "amqp://mq:5672",
            "sqs://eu-west-1?endpoint=http://moto:5000",
            "pubsub://proj?endpoint=pubsub:8085",
            "nats://nats:4222",
            "redis://redis:6379",
        ] {
            let transport = cluster_transport(url).unwrap();
            let kind = transport.kind();
            let mesh = Mesh {
                namespace: "prod".into(),
                transport,
                actors: vec![ActorInput::from(spec.clone())],
                options: Options::default(),
            };
            let rendered = troupe_render::render(&mesh).unwrap();
            let mut sidecars = 0;
            for d in rendered.objects.iter().filter(|o| o.kind == "Deployment") {
                for c in d.value["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                {
                    let env = container_env(c, kind);
                    let get = |k: &str| env.get(k).cloned();
                    match c["name"].as_str().unwrap() {
                        "asya-sidecar" => {
                            sidecars += 1;
                            let config = troupe_sidecar::SidecarConfig::from_lookup(&get)
                                .unwrap_or_else(|e| panic!("{url} {}: {e}", d.name));
                            // Tracing is rendered per spec; this build only warns that it
                            // does not export yet. Anything else would be a wrong variable.
                            let other: Vec<_> = config
                                .warnings
                                .iter()
                                .filter(|w| !w.starts_with("OTEL_"))
                                .collect();
                            assert!(other.is_empty(), "{url} {}: {other:?}", d.name);
                            assert_eq!(config.transport, kind);
                            TransportSpec::from_env(kind, &get)
                                .unwrap_or_else(|e| panic!("{url} {}: {e}", d.name));
                        }
                        "gateway" => {
                            crate::gateway::parse_env(&get)
                                .unwrap_or_else(|e| panic!("{url} gateway: {e}"));
                        }
                        _ => {}
                    }
                }
            }
            assert_eq!(sidecars, 5, "{url}: the actor and four crew");
        }
    }
}
