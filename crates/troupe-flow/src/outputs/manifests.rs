//! Kubernetes manifests of a flow (platform.md §4.3 `base/`): AsyncActors of the one
//! resource type (`troupe_resource::AsyncActor`) plus ConfigMaps, written through the
//! renderer's [`Rendered`] (one file per object and a `kustomization.yaml`).
//!
//! | object | when | what |
//! |---|---|---|
//! | ConfigMap `<flow>-routers` | always | `routers.py` (Asya's Python routers) |
//! | ConfigMap `<flow>-program` | the flow has a native router | `program.json`: `[Flow]` as JSON ([`super::program_json`]) |
//! | AsyncActor per handler actor | always | `image`, `handler`, scaling 0..`max_replicas`, the actor's `resiliency` (try/except policies); a tool-style actor runs `troupe_flow_routers.adapter_<actor>` with `ASYA_HANDLER_<ACTOR>` = its function |
//! | AsyncActor per Python router | the router is not native | `router_image` (the handlers' `image` when its code needs the flow's module), handler `troupe_flow_routers.<router_code_name>`, `routers.py` mounted as [`ROUTERS_MODULE`]`.py` in [`ROUTERS_DIR`] (`PYTHONPATH`), replicas 1..2 (always on, as Asya's) |
//! | AsyncActor per fan-in | the flow fans out | `crew: fan-in` (the Troupe sidecar alone), one replica, state in an emptyDir at [`FANIN_STATE_DIR`] |
//!
//! Every AsyncActor is labelled `asya.sh/flow=<flow>` and `asya.sh/role=start|end|router|actor`.
//! Native routers have no AsyncActor: the sidecar that finished the previous step runs them.
//! For that, when the flow has a native router, every AsyncActor's sidecar gets
//! [`FLOWS_JSON_VAR`] from ConfigMap `<flow>-program` (key `program.json`) by
//! `valueFrom.configMapKeyRef`: the AsyncActor can set sidecar env but not mount a volume
//! into the sidecar, and a ConfigMap (hence the variable) holds at most 1 MiB, which
//! [`MAX_PROGRAM_BYTES`] enforces here rather than at apply time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use troupe_render::{Object, RenderError, Rendered};
use troupe_resource::{AsyncActor, AsyncActorSpec, CrewRole, Resiliency, Scaling, SidecarSpec};

use crate::{Flow, Op, RouterInfo, RouterKind};

/// Default image of the Python router actors (platform.md §4.3 `router_image`).
pub const DEFAULT_ROUTER_IMAGE: &str = "python:3.13-slim";
/// Where a fan-in actor keeps its state (`ASYA_PERSISTENCE_MOUNT`, an emptyDir).
pub const FANIN_STATE_DIR: &str = "/var/lib/troupe/fanin";
/// Default `scaling.maxReplicaCount` of handler actors (the AsyncActor default).
pub const DEFAULT_MAX_REPLICAS: u32 = 10;
/// `scaling.maxReplicaCount` of router actors.
pub const ROUTER_MAX_REPLICAS: u32 = 2;
/// Where `routers.py` is mounted in a Python router's runtime container (on `PYTHONPATH`).
pub const ROUTERS_DIR: &str = "/opt/troupe/flow";
/// Sidecar variable holding the flow's `program.json` (`[Flow]` as JSON), read by
/// [`crate::shipped::from_env`].
pub const FLOWS_JSON_VAR: &str = crate::shipped::FLOWS_JSON_ENV;
/// Key of `program.json` in ConfigMap `<flow>-program`.
pub const PROGRAM_KEY: &str = "program.json";
/// The module routers.py is imported as (as in `troupe up`: a user's own `routers.py` on
/// the handlers' image is not shadowed).
pub const ROUTERS_MODULE: &str = "troupe_flow_routers";
/// Key of `routers.py` in ConfigMap `<flow>-routers`.
pub const ROUTERS_KEY: &str = "routers.py";
/// Largest `program.json`: a ConfigMap holds at most 1 MiB (data and metadata together).
pub const MAX_PROGRAM_BYTES: usize = 1_000_000;
/// Label naming the flow of an object.
pub const FLOW_LABEL: &str = "asya.sh/flow";
/// Label naming the object's role in the flow (`start`, `end`, `router`, `actor`).
pub const ROLE_LABEL: &str = "asya.sh/role";

/// Choices the source does not make.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestOptions {
    /// Runtime image of the handler actors (Python and the handlers' code).
    pub image: Option<String>,
    /// Image of the Python router actors.
    pub router_image: String,
    /// Handlers by actor name: fills actors whose handler the front end could not tell and
    /// replaces those it could.
    pub handlers: BTreeMap<String, String>,
    /// `scaling.maxReplicaCount` of handler actors.
    pub max_replicas: u32,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions {
            image: None,
            router_image: DEFAULT_ROUTER_IMAGE.to_owned(),
            handlers: BTreeMap::new(),
            max_replicas: DEFAULT_MAX_REPLICAS,
        }
    }
}

/// Why a flow's manifests could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// An actor's handler is unknown.
    #[error("flow '{flow}': actor '{actor}' has no known handler (the flow calls a name it does not import): import it in the flow's file or pass --handler {actor}=module.function")]
    NoHandler {
        /// The flow.
        flow: String,
        /// The actor.
        actor: String,
    },
    /// No runtime image for the handler actors.
    #[error("flow '{flow}': actor '{actor}' needs a runtime image: pass --image IMAGE (the image holding Python and the flow's handlers)")]
    NoImage {
        /// The flow.
        flow: String,
        /// The first actor needing it.
        actor: String,
    },
    /// An actor's resiliency from the compiler is not an AsyncActor `resiliency`.
    #[error("flow '{flow}': the resiliency compiled for '{actor}' is not an AsyncActor resiliency (a compiler bug; please report it): {source}")]
    Resiliency {
        /// The flow.
        flow: String,
        /// The actor.
        actor: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A name is not a DNS label, so Kubernetes would refuse it.
    #[error("flow '{flow}': '{name}' is not a Kubernetes name (at most 63 lower-case letters, digits and '-'): rename the flow or the actor")]
    Name {
        /// The flow.
        flow: String,
        /// The name.
        name: String,
    },
    /// `program.json` is over the ConfigMap limit.
    #[error("flow '{flow}': its compiled program is {bytes} bytes, over the 1 MiB a ConfigMap holds: split the flow into sub-flows of their own, or compile with --no-native-routers")]
    TooLarge {
        /// The flow.
        flow: String,
        /// Size of program.json.
        bytes: usize,
    },
    /// An object did not serialize (a bug in the types).
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// The manifests of one flow (`base/`): objects in apply order.
pub fn manifests(flow: &Flow, opts: &ManifestOptions) -> Result<Rendered, ManifestError> {
    let name = &flow.name;
    let slug = name.replace('_', "-");
    let err_name = |n: &str| ManifestError::Name {
        flow: name.clone(),
        name: n.to_owned(),
    };
    let native = flow.routers().any(|r| r.native);
    let routers_map = format!("{slug}-routers");
    let program_map = format!("{slug}-program");
    let mut objects = vec![config_map(
        &routers_map,
        name,
        ROUTERS_KEY,
        crate::routers_py(std::slice::from_ref(flow)),
    )?];
    if !is_dns_label(&routers_map) {
        return Err(err_name(&routers_map));
    }
    if native {
        let json = super::program_json(std::slice::from_ref(flow));
        if json.len() > MAX_PROGRAM_BYTES {
            return Err(ManifestError::TooLarge {
                flow: name.clone(),
                bytes: json.len(),
            });
        }
        objects.push(config_map(&program_map, name, PROGRAM_KEY, json)?);
    }
    let sidecar = native.then(|| SidecarSpec {
        env: vec![EnvVar {
            name: FLOWS_JSON_VAR.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: program_map.clone(),
                    key: PROGRAM_KEY.to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        }],
        ..SidecarSpec::default()
    });
    let resiliency =
        |actor: &str, v: &serde_json::Value| -> Result<Option<Resiliency>, ManifestError> {
            if v.is_null() {
                return Ok(None);
            }
            serde_json::from_value::<Resiliency>(v.clone())
                .map(|r| (r != Resiliency::default()).then_some(r))
                .map_err(|source| ManifestError::Resiliency {
                    flow: name.clone(),
                    actor: actor.to_owned(),
                    source,
                })
        };
    let handlers: BTreeMap<&str, &str> = flow
        .actors()
        .filter_map(|a| a.handler.as_deref().map(|h| (a.name.as_str(), h)))
        .chain(opts.handlers.iter().map(|(a, h)| (a.as_str(), h.as_str())))
        .collect();
    for a in flow.actors() {
        if !is_dns_label(&a.name) {
            return Err(err_name(&a.name));
        }
        let handler = handlers
            .get(a.name.as_str())
            .ok_or_else(|| ManifestError::NoHandler {
                flow: name.clone(),
                actor: a.name.clone(),
            })?;
        let image = opts.image.clone().ok_or_else(|| ManifestError::NoImage {
            flow: name.clone(),
            actor: a.name.clone(),
        })?;
        let mut spec = AsyncActorSpec {
            actor: a.name.clone(),
            image: Some(image),
            handler: (*handler).to_owned(),
            scaling: Some(Scaling {
                min_replica_count: Some(0),
                max_replica_count: Some(opts.max_replicas),
                ..Scaling::default()
            }),
            resiliency: resiliency(&a.name, &a.resiliency)?,
            sidecar: sidecar.clone(),
            ..AsyncActorSpec::default()
        };
        if a.adapter.is_some() {
            // A tool-style actor runs routers.py's adapter, which maps the state to the
            // function's arguments and finds the function through ASYA_HANDLER_<ACTOR>.
            spec.handler = format!(
                "{ROUTERS_MODULE}.adapter_{}",
                crate::program::code_name(&a.name)
            );
            spec.env = vec![
                var("PYTHONPATH", ROUTERS_DIR),
                var(
                    &format!(
                        "ASYA_HANDLER_{}",
                        a.name.replace('-', "_").to_ascii_uppercase()
                    ),
                    handler,
                ),
            ];
            spec.volumes = vec![routers_volume(&routers_map)];
            spec.volume_mounts = vec![routers_mount()];
        }
        objects.push(async_actor(spec, name, "actor")?);
    }
    for r in flow.python_routers() {
        if !is_dns_label(&r.name) {
            return Err(err_name(&r.name));
        }
        // routers.py imports the flow's module for code outside the native subset: such a
        // router runs on the handlers' image, which holds that module.
        let image = if needs_module(r) {
            opts.image.clone().ok_or_else(|| ManifestError::NoImage {
                flow: name.clone(),
                actor: r.name.clone(),
            })?
        } else {
            opts.router_image.clone()
        };
        let spec = AsyncActorSpec {
            actor: r.name.clone(),
            image: Some(image),
            handler: format!("{ROUTERS_MODULE}.{}", r.code_name()),
            env: vec![var("PYTHONPATH", ROUTERS_DIR)],
            volumes: vec![routers_volume(&routers_map)],
            volume_mounts: vec![routers_mount()],
            scaling: Some(Scaling {
                min_replica_count: Some(1),
                max_replica_count: Some(ROUTER_MAX_REPLICAS),
                ..Scaling::default()
            }),
            resiliency: resiliency(&r.name, &r.resiliency)?,
            sidecar: sidecar.clone(),
            ..AsyncActorSpec::default()
        };
        objects.push(async_actor(spec, name, role(r))?);
    }
    for fanin in flow.fanins() {
        if !is_dns_label(fanin) {
            return Err(err_name(fanin));
        }
        // The aggregator keeps its state in files; the Troupe container's root filesystem is
        // read-only, so it gets a volume. An emptyDir survives a killed container, not a
        // lost pod: an overlay can swap in a PersistentVolumeClaim. Its files are the one
        // replica's own, hence a single replica.
        let spec = AsyncActorSpec {
            actor: fanin.to_owned(),
            crew: Some(CrewRole::FanIn),
            env: vec![var(
                troupe_resource::env::PERSISTENCE_MOUNT,
                FANIN_STATE_DIR,
            )],
            volumes: vec![Volume {
                name: "fanin-state".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }],
            volume_mounts: vec![VolumeMount {
                name: "fanin-state".to_owned(),
                mount_path: FANIN_STATE_DIR.to_owned(),
                ..VolumeMount::default()
            }],
            scaling: Some(Scaling {
                enabled: Some(false),
                ..Scaling::default()
            }),
            sidecar: sidecar.clone(),
            ..AsyncActorSpec::default()
        };
        objects.push(async_actor(spec, name, "router")?);
    }
    Ok(Rendered::new(objects))
}

/// Whether a router runs Python code outside the native subset, which routers.py evaluates
/// in the flow module's namespace (importing it).
fn needs_module(r: &RouterInfo) -> bool {
    let py = |c: &crate::Code| c.native.is_none();
    match &r.op {
        Op::If { test, .. } => py(test),
        Op::While { test, .. } => test.as_ref().is_some_and(py),
        Op::Seq { stmts } => stmts.iter().any(|s| s.native.is_none()),
        Op::Fanout { calls, .. } => calls.iter().any(|c| py(&c.arg)),
        Op::FanoutEach { iterable, arg, .. } => py(iterable) || py(arg),
        Op::Prepend { .. } | Op::Pass | Op::Jump { .. } | Op::Except { .. } | Op::Raise { .. } => {
            false
        }
    }
}

/// `asya.sh/role` of a router's AsyncActor.
fn role(r: &RouterInfo) -> &'static str {
    match r.kind {
        RouterKind::Start => "start",
        RouterKind::End => "end",
        _ => "router",
    }
}

fn labels(flow: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (FLOW_LABEL.to_owned(), flow.to_owned()),
        (ROLE_LABEL.to_owned(), role.to_owned()),
    ])
}

fn async_actor(spec: AsyncActorSpec, flow: &str, role: &str) -> Result<Object, RenderError> {
    let name = spec.actor.clone();
    let mut a = AsyncActor::new(&name, spec);
    a.metadata.labels = Some(labels(flow, role));
    Object::new(troupe_resource::KIND, &name, &a)
}

fn config_map(name: &str, flow: &str, key: &str, text: String) -> Result<Object, RenderError> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(FLOW_LABEL.to_owned(), flow.to_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(key.to_owned(), text)])),
        ..ConfigMap::default()
    };
    Object::new("ConfigMap", name, &cm)
}

/// Volume of ConfigMap `<flow>-routers` (routers.py).
fn routers_volume(config_map: &str) -> Volume {
    Volume {
        name: "flow-routers".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            items: Some(vec![KeyToPath {
                key: ROUTERS_KEY.to_owned(),
                path: format!("{ROUTERS_MODULE}.py"),
                mode: None,
            }]),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// routers.py at [`ROUTERS_DIR`] in the runtime container.
fn routers_mount() -> VolumeMount {
    VolumeMount {
        name: "flow-routers".to_owned(),
        mount_path: ROUTERS_DIR.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

/// RFC 1123 label: what Kubernetes accepts as an object and label name here.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::outputs::graph::tests::sample;
    use crate::pipeline;
    use serde_json::{json, Value};

    fn opts() -> ManifestOptions {
        ManifestOptions {
            image: Some("ghcr.io/acme/flows:1".into()),
            handlers: BTreeMap::from([
                ("clean".into(), "text.clean".into()),
                ("analyse".into(), "text.analyse".into()),
                ("summarize".into(), "text.summarize".into()),
            ]),
            ..ManifestOptions::default()
        }
    }

    fn text_pipe() -> Flow {
        pipeline(
            "text_pipe",
            &["clean".into(), "analyse".into(), "summarize".into()],
        )
    }

    fn by_name<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
        &r.objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .value
    }

    /// Each AsyncActor reads back as the one resource type and renders (as the operator
    /// would) to a Deployment; the API server's own checks are tests/kube/test_dry_run.py's.
    fn check(r: &Rendered) {
        let mesh = troupe_render::Mesh {
            namespace: "ns".into(),
            transport: troupe_render::Transport::RabbitMq {
                exchange: "asya".into(),
            },
            actors: vec![],
            options: troupe_render::Options::default(),
        };
        for o in r.objects.iter().filter(|o| o.kind == "AsyncActor") {
            let a: AsyncActor = serde_json::from_value(o.value.clone()).unwrap();
            let input = troupe_render::ActorInput {
                spec: a.spec,
                labels: a.metadata.labels.unwrap_or_default(),
                ..troupe_render::ActorInput::default()
            };
            let children = troupe_render::render_actor(&mesh, &input).unwrap();
            assert!(
                children.iter().any(|c| c.kind == "Deployment"),
                "{}",
                o.name
            );
        }
    }

    #[test]
    fn a_pipeline_gets_one_labelled_async_actor_per_actor_and_the_routers_config_map() {
        let r = manifests(&text_pipe(), &opts()).unwrap();
        let names: Vec<String> = r.objects.iter().map(|o| o.file_name()).collect();
        assert_eq!(
            names,
            [
                "configmap-text-pipe-routers.yaml",
                "asyncactor-analyse.yaml",
                "asyncactor-clean.yaml",
                "asyncactor-summarize.yaml"
            ]
        );
        let a = by_name(&r, "AsyncActor", "clean");
        assert_eq!(a["apiVersion"], "asya.sh/v1alpha1");
        assert_eq!(
            a["metadata"]["labels"],
            json!({"asya.sh/flow": "text_pipe", "asya.sh/role": "actor"})
        );
        assert_eq!(a["spec"]["handler"], "text.clean");
        assert_eq!(a["spec"]["image"], "ghcr.io/acme/flows:1");
        assert_eq!(
            a["spec"]["scaling"],
            json!({"minReplicaCount": 0, "maxReplicaCount": 10})
        );
        // No native router: no program ConfigMap and no TROUPE_FLOWS_JSON.
        assert!(a["spec"].get("sidecar").is_none());
        let cm = by_name(&r, "ConfigMap", "text-pipe-routers");
        assert!(cm["data"]["routers.py"].is_string());
        check(&r);
        let files = r.files().unwrap();
        assert_eq!(files.last().unwrap().0, "kustomization.yaml");
    }

    #[test]
    fn python_routers_get_async_actors_and_native_ones_the_program() {
        let mut f = sample();
        for a in &mut f.program.actors {
            a.handler = Some(format!("flows.{}", a.name));
        }
        let r = manifests(&f, &opts()).unwrap();
        // The fan-in is a crew actor: the Troupe sidecar alone, one replica, its state on a volume.
        let fanin = by_name(&r, "AsyncActor", "fanin-demo-line-11");
        assert_eq!(fanin["spec"]["crew"], "fan-in");
        assert!(fanin["spec"].get("handler").is_none() && fanin["spec"].get("image").is_none());
        assert_eq!(fanin["spec"]["scaling"], json!({"enabled": false}));
        assert_eq!(
            fanin["spec"]["env"],
            json!([{"name": "ASYA_PERSISTENCE_MOUNT", "value": FANIN_STATE_DIR}])
        );
        assert_eq!(fanin["metadata"]["labels"]["asya.sh/role"], "router");
        // The only Python router is the if; native routers have no AsyncActor.
        let routers: Vec<&str> = r
            .objects
            .iter()
            .filter(|o| {
                o.kind == "AsyncActor"
                    && o.value["metadata"]["labels"]["asya.sh/role"] != "actor"
                    && o.value["spec"].get("crew").is_none()
            })
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(routers, ["router-demo-if-line-4"]);
        let router = by_name(&r, "AsyncActor", "router-demo-if-line-4");
        // Its test is not native Python (no native form): it runs on the handlers' image.
        assert_eq!(router["spec"]["image"], "ghcr.io/acme/flows:1");
        assert_eq!(
            router["spec"]["handler"],
            "troupe_flow_routers.router_demo_if_line_4"
        );
        assert_eq!(router["spec"]["scaling"]["minReplicaCount"], 1);
        assert_eq!(
            router["spec"]["volumes"][0]["configMap"]["items"],
            json!([{"key": "routers.py", "path": "troupe_flow_routers.py"}])
        );
        assert_eq!(router["spec"]["scaling"]["maxReplicaCount"], 2);
        assert_eq!(router["metadata"]["labels"]["asya.sh/role"], "router");
        assert_eq!(
            router["spec"]["volumes"][0]["configMap"]["name"],
            "demo-routers"
        );
        assert_eq!(router["spec"]["volumeMounts"][0]["mountPath"], ROUTERS_DIR);
        assert_eq!(
            router["spec"]["env"],
            json!([{"name": "PYTHONPATH", "value": ROUTERS_DIR}])
        );
        // Every flow actor's sidecar reads the program from its ConfigMap.
        let program = by_name(&r, "ConfigMap", "demo-program");
        let flows: Vec<Flow> =
            serde_json::from_str(program["data"]["program.json"].as_str().unwrap()).unwrap();
        assert_eq!(flows, vec![f.clone()]);
        for o in r.objects.iter().filter(|o| o.kind == "AsyncActor") {
            assert_eq!(
                o.value["spec"]["sidecar"]["env"],
                json!([{"name": FLOWS_JSON_VAR, "valueFrom": {"configMapKeyRef": {"name": "demo-program", "key": "program.json"}}}]),
                "{}",
                o.name
            );
        }
        // The actor inside the try carries its except policy.
        let w = by_name(&r, "AsyncActor", "w");
        assert_eq!(
            w["spec"]["resiliency"]["policies"]["try_except_line_9_0"]["onExhausted"],
            json!(["router-demo-except-line-9"])
        );
        assert_eq!(
            w["spec"]["resiliency"]["rules"][0]["errors"],
            json!(["ValueError", "KeyError"])
        );
        check(&r);
    }

    #[test]
    fn what_the_source_does_not_say_must_be_given() {
        let e = manifests(&text_pipe(), &ManifestOptions::default()).unwrap_err();
        assert!(
            e.to_string().contains("--handler clean=module.function"),
            "{e}"
        );
        let o = ManifestOptions {
            image: None,
            ..opts()
        };
        let e = manifests(&text_pipe(), &o).unwrap_err();
        assert!(e.to_string().contains("pass --image IMAGE"), "{e}");
        let mut f = text_pipe();
        f.program.actors[0].resiliency = json!({"policies": {"x": {"maxAttempts": "many"}}});
        let e = manifests(&f, &opts()).unwrap_err();
        assert!(matches!(e, ManifestError::Resiliency { .. }), "{e}");
        let f = pipeline("p", &["Bad_Name".into()]);
        let mut o = opts();
        o.handlers.insert("Bad_Name".into(), "m.f".into());
        let e = manifests(&f, &o).unwrap_err();
        assert!(matches!(e, ManifestError::Name { .. }), "{e}");
    }
}
