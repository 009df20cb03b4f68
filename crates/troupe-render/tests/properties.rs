//! Properties of the whole rendering: deterministic, and every object carries the
//! namespace, labels and owner platform.md §2 promises; plus the mesh-wide pieces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use proptest::prelude::*;
use troupe_render::{render, ActorInput, Mesh, Options, RenderError, Transport};
use troupe_resource::{AsyncActorSpec, Scaling};

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        Just(Transport::RabbitMq {
            exchange: "asya".into()
        }),
        Just(Transport::Sqs {
            region: "eu-west-1".into(),
            endpoint: None
        }),
        Just(Transport::PubSub {
            project: "p".into(),
            endpoint: Some("pubsub:8085".into())
        }),
        Just(Transport::Nats {
            monitoring_endpoint: "nats:8222".into()
        }),
        Just(Transport::Redis {
            address: "redis:6379".into(),
            password: false
        }),
    ]
}

fn actor() -> impl Strategy<Value = ActorInput> {
    (
        "[a-w][a-z0-9]{0,8}",
        proptest::option::of(0u32..3),
        any::<bool>(),
        proptest::collection::btree_map(
            "(team|asya.sh/flow|crossplane.io/x|app.kubernetes.io/y)",
            "[a-z]{1,5}",
            0..3,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, min, enabled, labels, owned, own_runtime)| ActorInput {
                runtime_py: own_runtime.then(|| format!("# runtime of {name}")),
                spec: AsyncActorSpec {
                    actor: name.clone(),
                    image: Some("img:1".into()),
                    handler: "m.f".into(),
                    scaling: Some(Scaling {
                        enabled: Some(enabled),
                        min_replica_count: min,
                        ..Scaling::default()
                    }),
                    ..AsyncActorSpec::default()
                },
                labels,
                owner: owned.then(|| OwnerReference {
                    api_version: "asya.sh/v1alpha1".into(),
                    kind: "AsyncActor".into(),
                    name: name.clone(),
                    uid: format!("uid-{name}"),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }),
            },
        )
}

fn mesh() -> impl Strategy<Value = Mesh> {
    (
        "[a-z][a-z0-9]{0,6}",
        transport(),
        proptest::collection::vec(actor(), 0..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(namespace, transport, mut actors, crew, gateway)| {
            let mut seen = std::collections::BTreeSet::new();
            actors.retain(|a| seen.insert(a.spec.actor.clone()));
            Mesh {
                namespace,
                transport,
                actors,
                options: Options {
                    crew,
                    gateway,
                    ..Options::default()
                },
            }
        })
}

proptest! {
    #[test]
    fn rendering_is_deterministic_and_every_object_is_labelled(m in mesh()) {
        let a = render(&m).unwrap();
        let b = render(&m.clone()).unwrap();
        prop_assert_eq!(a.files().unwrap(), b.files().unwrap());
        // Reversing the actors changes nothing: output is sorted by kind then name.
        let mut rev = m.clone();
        rev.actors.reverse();
        prop_assert_eq!(render(&rev).unwrap().stream().unwrap(), a.stream().unwrap());

        let mut names = std::collections::BTreeSet::new();
        for o in &a.objects {
            prop_assert!(names.insert(o.file_name()), "two objects share {}", o.file_name());
            let md = &o.value["metadata"];
            prop_assert_eq!(md["namespace"].as_str(), Some(m.namespace.as_str()));
            prop_assert_eq!(md["name"].as_str(), Some(o.name.as_str()));
            let labels = md["labels"].as_object().unwrap();
            prop_assert_eq!(labels["app.kubernetes.io/managed-by"].as_str(), Some("troupe"));
            prop_assert_eq!(labels["app.kubernetes.io/part-of"].as_str(), Some("asya"));
            prop_assert!(labels.keys().all(|k| !k.starts_with("crossplane.io/")));
            let actor = labels.get("asya.sh/actor").and_then(|v| v.as_str());
            if let Some(input) = actor.and_then(|n| m.actors.iter().find(|x| x.spec.actor == n)) {
                prop_assert_eq!(labels["app.kubernetes.io/component"].as_str(), Some("actor"));
                for (k, v) in &input.labels {
                    if !k.starts_with("crossplane.io/") && !k.starts_with("app.kubernetes.io/") {
                        prop_assert_eq!(labels[k].as_str(), Some(v.as_str()));
                    }
                }
                let owners = md.get("ownerReferences");
                match &input.owner {
                    Some(o) => prop_assert_eq!(owners.unwrap()[0]["uid"].as_str(), Some(o.uid.as_str())),
                    None => prop_assert!(owners.is_none()),
                }
            }
        }
        // Every user actor has its Deployment and ServiceAccount; a ScaledObject iff scaled.
        for x in &m.actors {
            let has = |kind: &str| a.objects.iter().any(|o| o.kind == kind && o.name == x.spec.actor);
            prop_assert!(has("Deployment") && has("ServiceAccount"));
            let own_cm = a.objects.iter().any(|o| o.kind == "ConfigMap" && o.name == format!("{}-runtime", x.spec.actor));
            prop_assert_eq!(own_cm, x.runtime_py.is_some());
            prop_assert_eq!(has("ScaledObject"), x.spec.scaling().enabled());
        }
    }
}

fn base() -> Mesh {
    Mesh {
        namespace: "ns".into(),
        transport: Transport::RabbitMq {
            exchange: "asya".into(),
        },
        actors: vec![],
        options: Options::default(),
    }
}

fn env_of(o: &serde_json::Value, container: usize) -> BTreeMap<String, serde_json::Value> {
    o["spec"]["template"]["spec"]["containers"][container]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e.get("value")
                    .cloned()
                    .unwrap_or_else(|| e["valueFrom"].clone()),
            )
        })
        .collect()
}

#[test]
fn crew_actors_run_the_troupe_image_with_troupe_crew_and_no_runtime() {
    let r = render(&base()).unwrap();
    for crew in ["x-sink", "x-sump", "x-pause", "x-resume"] {
        let d = r
            .objects
            .iter()
            .find(|o| o.kind == "Deployment" && o.name == crew)
            .unwrap();
        let containers = d.value["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1, "{crew}");
        assert_eq!(containers[0]["name"], "asya-sidecar");
        assert_eq!(env_of(&d.value, 0)["TROUPE_CREW"], crew);
        let so = r
            .objects
            .iter()
            .find(|o| o.kind == "ScaledObject" && o.name == crew)
            .unwrap();
        assert_eq!(so.value["spec"]["minReplicaCount"], 1);
        assert_eq!(so.value["spec"]["triggers"][0]["metadata"]["value"], "5");
    }
}

#[test]
fn the_gateway_takes_its_store_and_token_from_secrets_and_splits_its_listeners() {
    let r = render(&base()).unwrap();
    let d = r
        .objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "troupe-gateway")
        .unwrap();
    let env = env_of(&d.value, 0);
    assert_eq!(
        env["TROUPE_GATEWAY_STORE"]["secretKeyRef"]["name"],
        "troupe-gateway-store"
    );
    assert_eq!(
        env["TROUPE_GATEWAY_TOKEN"]["secretKeyRef"]["name"],
        "troupe-gateway-token"
    );
    assert_eq!(env["ASYA_QUEUE_TRANSPORT"], "rabbitmq");
    // Unset: the gateway accepts actors created after it started (as the chart's default).
    assert!(!env.contains_key("TROUPE_GATEWAY_ACTORS"));
    assert_eq!(
        env["ASYA_INTERNAL_URL"],
        "http://troupe-gateway-internal:8081"
    );
    let public = r
        .objects
        .iter()
        .find(|o| o.kind == "Service" && o.name == "troupe-gateway")
        .unwrap();
    let internal = r
        .objects
        .iter()
        .find(|o| o.kind == "Service" && o.name == "troupe-gateway-internal")
        .unwrap();
    assert_eq!(public.value["spec"]["ports"][0]["port"], 8080);
    assert_eq!(internal.value["spec"]["ports"][0]["port"], 8081);
    assert_eq!(
        public.value["spec"]["ports"].as_array().unwrap().len(),
        1,
        "no sidecar routes on the public Service"
    );
    // Sidecars report to the internal Service with the token.
    let sink = r
        .objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "x-sink")
        .unwrap();
    assert_eq!(
        env_of(&sink.value, 0)["ASYA_GATEWAY_URL"],
        "http://troupe-gateway-internal:8081"
    );
    // Without the gateway, nothing points at it.
    let mut m = base();
    m.options.gateway = false;
    let r = render(&m).unwrap();
    assert!(r
        .objects
        .iter()
        .all(|o| !o.name.starts_with("troupe-gateway")));
    let sink = r
        .objects
        .iter()
        .find(|o| o.kind == "Deployment" && o.name == "x-sink")
        .unwrap();
    assert!(!env_of(&sink.value, 0).contains_key("ASYA_GATEWAY_URL"));
}

#[test]
fn queues_list_every_actor_and_the_dead_letter_queue_where_there_is_one() {
    let mut m = base();
    m.actors.push(ActorInput::from(AsyncActorSpec {
        actor: "b".into(),
        handler: "m.f".into(),
        ..Default::default()
    }));
    let names: Vec<String> = troupe_render::queues(&m)
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(
        names,
        [
            "asya-ns-b",
            "asya-ns-x-pause",
            "asya-ns-x-resume",
            "asya-ns-x-sink",
            "asya-ns-x-sump"
        ]
    );
    m.transport = Transport::Sqs {
        region: "eu-west-1".into(),
        endpoint: None,
    };
    let qs = troupe_render::queues(&m);
    assert_eq!(qs.last().unwrap().name, "asya-ns-dlq");
    assert_eq!(qs[0].settings["VisibilityTimeout"], "30");
    assert_eq!(qs[0].settings["deadLetterQueue"], "asya-ns-dlq");
}

#[test]
fn reserved_and_duplicate_names_are_refused() {
    let mut m = base();
    m.actors.push(ActorInput::from(AsyncActorSpec {
        actor: "x-sink".into(),
        handler: "m.f".into(),
        ..Default::default()
    }));
    assert!(matches!(render(&m), Err(RenderError::ReservedName(n)) if n == "x-sink"));
    let mut m = base();
    let a = ActorInput::from(AsyncActorSpec {
        actor: "a".into(),
        handler: "m.f".into(),
        ..Default::default()
    });
    m.actors = vec![a.clone(), a];
    assert!(matches!(render(&m), Err(RenderError::Duplicate(n)) if n == "a"));
    // compositionRef picks the transport per actor: only the cluster's one can be rendered.
    let mut m = base();
    let spec: AsyncActorSpec =
        serde_yaml::from_str("{actor: a, handler: m.f, compositionRef: {name: asyncactor-sqs}}")
            .unwrap();
    m.actors = vec![ActorInput::from(spec.clone())];
    let err = render(&m).unwrap_err().to_string();
    assert!(err.contains("'sqs'") && err.contains("'rabbitmq'"), "{err}");
    m.transport = Transport::Sqs {
        region: "eu-west-1".into(),
        endpoint: None,
    };
    assert!(render(&m).is_ok());
}
