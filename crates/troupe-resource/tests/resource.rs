//! The AsyncActor types against platform.md §2: Asya's objects read unchanged, the CRD
//! (golden file), its schema constraints and CEL rules, and lossless round trips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use k8s_openapi::api::core::v1::EnvVar;
use proptest::prelude::*;
use serde_json::Value;
use troupe_resource::*;

fn read(name: &str) -> AsyncActor {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/asya")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// -- §2: objects written for Asya --------------------------------------------------------

#[test]
fn the_spec_example_reads_field_by_field() {
    let a = read("summarize.yaml");
    assert_eq!(a.metadata.name.as_deref(), Some("summarize"));
    let s = &a.spec;
    assert_eq!(s.actor, "summarize");
    assert_eq!(s.image.as_deref(), Some("ghcr.io/acme/summarize:1.4"));
    assert_eq!(s.handler, "summarize.handler.Summarizer.run");
    assert_eq!(
        s.env,
        [EnvVar {
            name: "MODEL".into(),
            value: Some("gpt-x".into()),
            value_from: None
        }]
    );
    let gpu = &s.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"];
    assert_eq!(gpu.0, "1");
    let sc = s.scaling();
    assert_eq!(
        (
            sc.min_replica_count(),
            sc.max_replica_count(),
            sc.queue_length()
        ),
        (0, 5, 2)
    );
    assert_eq!(s.actor_timeout(), "10m");
    let r = s.resiliency.as_ref().unwrap();
    let p = &r.policies["default"];
    assert_eq!(p.max_attempts, Some(3));
    assert_eq!(p.backoff, Some(Backoff::Exponential));
    assert_eq!(p.initial_delay.as_deref(), Some("2s"));
    assert_eq!(p.max_interval.as_deref(), Some("1m"));
    assert_eq!(p.jitter, Some(true));
    assert_eq!(r.rules[0].errors, ["TimeoutError"]);
    assert_eq!(r.rules[0].policy, "default");
}

#[test]
fn every_field_of_the_table_reads() {
    let a = read("every-field.yaml");
    let s = &a.spec;
    assert_eq!(s.image_pull_policy(), PullPolicy::Always);
    assert_eq!(s.python_executable(), "/opt/venv/bin/python");
    assert_eq!(s.replicas(), 2);
    assert!(s.env[1].value_from.is_some());
    assert_eq!(s.secret_refs[0].keys[0].env_var, "OPENAI_API_KEY");
    assert_eq!(s.tolerations[0].key.as_deref(), Some("nvidia.com/gpu"));
    assert_eq!(
        s.node_selector["cloud.google.com/gke-accelerator"],
        "nvidia-l4"
    );
    assert!(s.volumes[0].persistent_volume_claim.is_some());
    assert_eq!(s.volume_mounts[0].mount_path, "/models");
    assert_eq!(s.init_containers[0].name, "fetch-model");
    assert_eq!(s.sidecars[0].name, "log-shipper");
    assert_eq!(s.flavors, ["gpu-l4", "spot"]);
    let sc = s.scaling();
    assert!(sc.enabled());
    assert_eq!(
        (
            sc.polling_interval(),
            sc.cooldown_period(),
            sc.queue_length()
        ),
        (15, 600, 4)
    );
    let adv = sc.advanced.as_ref().unwrap();
    assert_eq!(adv.formula.as_deref(), Some("queue + busy"));
    assert_eq!(adv.metric_type, Some(MetricType::AverageValue));
    assert_eq!(sc.additional_triggers[0].type_, "cron");
    let r = s.resiliency.as_ref().unwrap();
    assert_eq!(r.policies["default"].on_exhausted, ["apologize"]);
    assert_eq!(r.policies["default"].max_duration.as_deref(), Some("10m"));
    let sidecar = s.sidecar.as_ref().unwrap();
    assert_eq!(sidecar.image.as_ref().unwrap().tag.as_deref(), Some("0.1"));
    assert_eq!(
        s.tracing.as_ref().unwrap().protocol.as_deref(),
        Some("grpc")
    );
    assert_eq!(s.state_proxy[0].write_mode, Some(WriteMode::Buffered));
    assert_eq!(s.composition_ref.as_ref().unwrap().transport(), Some("sqs"));
    assert_eq!((s.concurrency, s.pipeline), (Some(4), Some(2)));
    // Crossplane's claim fields, as an exported Asya object carries them.
    assert_eq!(s.resource_ref.as_ref().unwrap().kind, "XAsyncActor");
    assert_eq!(s.composition_update_policy.as_deref(), Some("Automatic"));
    let st = a.status.as_ref().unwrap();
    assert_eq!(st.phase, Some(Phase::Napping));
    let w = st
        .infrastructure
        .as_ref()
        .unwrap()
        .workload
        .as_ref()
        .unwrap();
    assert_eq!((w.replicas, w.ready_replicas), (Some(0), Some(0)));
}

#[test]
fn the_spec_defaults_apply_to_an_empty_spec() {
    let s = AsyncActorSpec::default();
    assert_eq!(s.image_pull_policy(), PullPolicy::IfNotPresent);
    assert_eq!(s.python_executable(), "python3");
    assert_eq!(s.replicas(), 1);
    assert_eq!(s.actor_timeout(), "5m");
    let sc = s.scaling();
    assert!(sc.enabled());
    assert_eq!(
        (
            sc.min_replica_count(),
            sc.max_replica_count(),
            sc.polling_interval(),
            sc.cooldown_period(),
            sc.queue_length()
        ),
        (0, 10, 30, 300, 5)
    );
}

#[test]
fn unknown_fields_are_refused_with_their_name() {
    let e = serde_yaml::from_str::<AsyncActorSpec>("actor: a\nhandler: m.f\nhandlr: x\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `handlr`"), "{e}");
    let e = serde_yaml::from_str::<Scaling>("minReplicas: 1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `minReplicas`"), "{e}");
}

// -- the CRD ------------------------------------------------------------------------------

fn crd_json() -> Value {
    serde_json::to_value(crd()).unwrap()
}

fn spec_schema() -> Value {
    crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

#[test]
fn crd_names_group_version_and_scope() {
    let c = crd_json();
    assert_eq!(c["metadata"]["name"], "asyncactors.asya.sh");
    assert_eq!(c["spec"]["group"], "asya.sh");
    assert_eq!(c["spec"]["scope"], "Namespaced");
    assert_eq!(c["spec"]["names"]["kind"], "AsyncActor");
    assert_eq!(
        c["spec"]["names"]["shortNames"],
        serde_json::json!(["asya", "asyas"])
    );
    let v = &c["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_object());
}

#[test]
fn crd_printer_columns_follow_the_spec() {
    let c = crd_json();
    let cols = c["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .clone();
    let got: Vec<(String, String, i64)> = cols
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["jsonPath"].as_str().unwrap().to_owned(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("Actor", ".spec.actor", 0),
        ("Status", ".status.phase", 0),
        ("Replicas", ".status.infrastructure.workload.replicas", 0),
        ("Ready", ".status.infrastructure.workload.readyReplicas", 1),
        ("Queue", ".status.queueUrl", 1),
        ("Age", ".metadata.creationTimestamp", 0),
    ];
    let want: Vec<(String, String, i64)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn crd_schema_has_every_field_of_the_table() {
    let s = spec_schema();
    let props: Vec<&str> = s["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in [
        "actor",
        "image",
        "handler",
        "imagePullPolicy",
        "pythonExecutable",
        "replicas",
        "env",
        "secretRefs",
        "resources",
        "tolerations",
        "nodeSelector",
        "volumes",
        "volumeMounts",
        "initContainers",
        "sidecars",
        "flavors",
        "scaling",
        "resiliency",
        "sidecar",
        "tracing",
        "stateProxy",
        "compositionRef",
    ] {
        assert!(props.contains(&f), "{f} missing from {props:?}");
    }
    // `handler` is required by a CEL rule instead: a crew actor (spec.crew) has none.
    assert_eq!(s["required"], serde_json::json!(["actor"]));
    assert_eq!(
        s["properties"]["crew"]["enum"],
        serde_json::json!(["fan-in"])
    );
    assert!(s["properties"]["fanIn"]["properties"]["timeout"].is_object());
    assert_eq!(s["properties"]["flavors"]["maxItems"], 8);
    assert_eq!(s["properties"]["actor"]["maxLength"], 63);
    assert_eq!(
        s["properties"]["imagePullPolicy"]["enum"],
        serde_json::json!(["Always", "IfNotPresent", "Never"])
    );
    let policy = &s["properties"]["resiliency"]["properties"]["policies"]["additionalProperties"];
    assert_eq!(
        policy["properties"]["maxAttempts"]["minimum"].as_f64(),
        Some(1.0)
    );
    let rule = &s["properties"]["resiliency"]["properties"]["rules"]["items"];
    assert_eq!(rule["properties"]["errors"]["minItems"], 1);
    let meta = &s["properties"]["scaling"]["properties"]["advanced"]["properties"]["metricType"];
    assert_eq!(
        meta["enum"],
        serde_json::json!(["AverageValue", "Value", "Utilization"])
    );
    let status =
        &crd_json()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(
        status["properties"]["phase"]["enum"],
        serde_json::json!(["Creating", "Ready", "Napping"])
    );
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crd_cel_rules_say_what_the_schema_cannot() {
    let s = spec_schema();
    assert!(
        rules(&s).iter().any(|r| r.contains("has(self.image)")),
        "{:?}",
        rules(&s)
    );
    let scaling = &s["properties"]["scaling"];
    assert!(rules(scaling)
        .iter()
        .any(|r| r.contains("minReplicaCount") && r.contains("<=")));
    let adv = &scaling["properties"]["advanced"];
    assert_eq!(rules(adv), ["!has(self.formula) || has(self.target)"]);
    for list in ["initContainers", "sidecars"] {
        assert_eq!(
            rules(&s["properties"][list]["items"]),
            ["!self.name.startsWith('asya-')"],
            "{list}"
        );
    }
    let timeout = &s["properties"]["resiliency"]["properties"]["actorTimeout"];
    assert_eq!(rules(timeout), ["duration(self) > duration('0s')"]);
    // Every rule carries a message that tells the user what to fix.
    let mut all = Vec::new();
    collect_rules(&crd_json(), &mut all);
    assert!(all.len() >= 7, "{all:?}");
    for r in &all {
        let message = r["message"].as_str().unwrap_or_default();
        assert!(message.len() > 20, "{r}");
    }
}

fn collect_rules(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(rs)) = o.get("x-kubernetes-validations") {
                out.extend(rs.iter().cloned());
            }
            o.values().for_each(|v| collect_rules(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

#[test]
fn crd_is_small_enough_for_client_side_apply() {
    // kubectl apply (client side) keeps the object in a 256 KiB annotation.
    let len = crd_yaml().unwrap().len();
    assert!(len < 128 * 1024, "{len}");
}

#[test]
fn crd_golden_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/crd.yaml");
    let now = crd_yaml().unwrap();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &now).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .expect("tests/golden/crd.yaml missing: run with UPDATE_GOLDEN=1");
    assert!(
        now == want,
        "the CRD changed; review the diff and rerun with UPDATE_GOLDEN=1 to accept it"
    );
}

// -- round trips --------------------------------------------------------------------------

#[test]
fn asya_objects_round_trip_unchanged() {
    for name in ["summarize.yaml", "every-field.yaml"] {
        let a = read(name);
        let text = serde_yaml::to_string(&a).unwrap();
        let back: AsyncActor = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, a, "{name}");
        // Nothing added on the way: the JSON forms agree too.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/asya")
            .join(name);
        let raw: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut written = serde_json::to_value(&a).unwrap();
        // k8s-openapi writes quantities as strings; the example has a bare 1.
        let mut raw = raw;
        normalise_quantities(&mut raw);
        normalise_quantities(&mut written);
        assert_eq!(written, raw, "{name}");
    }
}

fn normalise_quantities(v: &mut Value) {
    match v {
        Value::Number(n) => *v = Value::String(n.to_string()),
        Value::Array(a) => a.iter_mut().for_each(normalise_quantities),
        Value::Object(o) => o.values_mut().for_each(normalise_quantities),
        _ => {}
    }
}

fn opt<T: std::fmt::Debug + Clone + 'static>(
    s: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop::option::of(s).boxed()
}

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]"
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        opt(1u32..10),
        opt(prop_oneof![
            Just(Backoff::Constant),
            Just(Backoff::Linear),
            Just(Backoff::Exponential)
        ]),
        opt("[1-9][0-9]{0,2}(ms|s|m)"),
        opt("[1-9][0-9]{0,2}(s|m)"),
        opt(any::<bool>()),
        prop::collection::vec(name(), 0..3),
    )
        .prop_map(
            |(max_attempts, backoff, initial_delay, max_interval, jitter, on_exhausted)| Policy {
                max_attempts,
                backoff,
                initial_delay,
                max_interval,
                max_duration: None,
                jitter,
                on_exhausted,
            },
        )
}

fn spec() -> impl Strategy<Value = AsyncActorSpec> {
    let scaling = (
        opt(any::<bool>()),
        opt(0u32..5),
        opt(5u32..50),
        opt(1u32..600),
        opt(1u32..20),
        opt(("[a-z +*]{1,12}", 1i32..100)),
        prop::collection::vec(
            (name(), prop::collection::btree_map(name(), ".{0,8}", 0..3)),
            0..2,
        ),
    )
        .prop_map(
            |(enabled, min, max, cooldown, queue, adv, triggers)| Scaling {
                enabled,
                min_replica_count: min,
                max_replica_count: max,
                polling_interval: None,
                cooldown_period: cooldown,
                queue_length: queue,
                advanced: adv.map(|(formula, target)| AdvancedScaling {
                    formula: Some(formula),
                    target: Some(
                        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(target),
                    ),
                    ..AdvancedScaling::default()
                }),
                additional_triggers: triggers
                    .into_iter()
                    .map(|(t, metadata)| ScaleTrigger {
                        type_: t,
                        metadata,
                        ..ScaleTrigger::default()
                    })
                    .collect(),
            },
        );
    let resiliency = (
        opt("[1-9][0-9]?(s|m|h)"),
        prop::collection::btree_map(name(), policy(), 0..3),
        prop::collection::vec(
            (prop::collection::vec("[A-Za-z]{1,12}", 1..3), name()),
            0..3,
        ),
    )
        .prop_map(|(actor_timeout, policies, rules)| Resiliency {
            actor_timeout,
            policies,
            rules: rules
                .into_iter()
                .map(|(errors, policy)| ResiliencyRule { errors, policy })
                .collect(),
        });
    (
        (
            name(),
            opt("[a-z./:0-9]{1,20}"),
            "[a-z]{1,6}(\\.[a-z]{1,6}){1,3}",
        ),
        (
            opt(prop_oneof![
                Just(PullPolicy::Always),
                Just(PullPolicy::IfNotPresent),
                Just(PullPolicy::Never)
            ]),
            opt("[a-z0-9/.]{1,12}"),
            opt(0u32..10),
            prop::collection::vec(("[A-Z_]{1,8}", ".{0,10}"), 0..4),
        ),
        (
            opt(scaling),
            opt(resiliency),
            prop::collection::vec(name(), 0..8),
            opt(name()),
            prop::collection::btree_map("[a-z./]{1,10}", "[a-z0-9]{0,6}", 0..3),
            (opt(1u32..64), opt(0u32..8)),
        ),
    )
        .prop_map(
            |(
                (actor, image, handler),
                (pull, python, replicas, env),
                (scaling, resiliency, flavors, composition, node_selector, (concurrency, pipeline)),
            )| AsyncActorSpec {
                actor,
                image,
                handler,
                image_pull_policy: pull,
                python_executable: python,
                replicas,
                env: env
                    .into_iter()
                    .map(|(name, value)| EnvVar {
                        name,
                        value: Some(value),
                        value_from: None,
                    })
                    .collect(),
                scaling,
                resiliency,
                flavors,
                composition_ref: composition.map(|n| CompositionRef {
                    name: format!("asyncactor-{n}"),
                }),
                node_selector,
                concurrency,
                pipeline,
                ..AsyncActorSpec::default()
            },
        )
}

proptest! {
    #[test]
    fn any_spec_round_trips_through_yaml_and_json(spec in spec()) {
        let a = AsyncActor::new(&spec.actor.clone(), spec);
        let yaml = serde_yaml::to_string(&a).unwrap();
        let back: AsyncActor = serde_yaml::from_str(&yaml).unwrap();
        prop_assert_eq!(&back, &a);
        let json = serde_json::to_string(&a).unwrap();
        let back: AsyncActor = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, a);
    }
}
