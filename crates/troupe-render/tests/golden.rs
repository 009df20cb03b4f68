//! Golden files: the mesh of `golden/actors.yaml` rendered for each transport, compared file
//! by file with `golden/<transport>/`. Regenerate with `UPDATE_GOLDEN=1 cargo test -p
//! troupe-render --test golden`, then read the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use troupe_render::keda::{ScaledObject, TriggerAuthentication};
use troupe_render::{render, ActorInput, CrewSettings, Mesh, Options, Transport};
use troupe_resource::AsyncActorSpec;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn actors() -> Vec<ActorInput> {
    let text = std::fs::read_to_string(golden_dir().join("actors.yaml")).unwrap();
    let specs: Vec<AsyncActorSpec> = serde_yaml::from_str(&text).unwrap();
    specs
        .into_iter()
        .map(|spec| {
            let mut a = ActorInput::from(spec);
            a.labels.insert("asya.sh/flow".into(), "research".into());
            a
        })
        .collect()
}

fn transports() -> Vec<(&'static str, Transport)> {
    vec![
        (
            "rabbitmq",
            Transport::RabbitMq {
                exchange: "asya".into(),
            },
        ),
        (
            "sqs",
            Transport::Sqs {
                region: "eu-west-1".into(),
                endpoint: None,
            },
        ),
        (
            "pubsub",
            Transport::PubSub {
                project: "acme-prod".into(),
                endpoint: None,
            },
        ),
        (
            "nats",
            Transport::Nats {
                monitoring_endpoint: "nats.messaging:8222".into(),
            },
        ),
        (
            "redis",
            Transport::Redis {
                address: "redis.messaging:6379".into(),
                password: true,
            },
        ),
    ]
}

fn mesh(transport: Transport) -> Mesh {
    Mesh {
        namespace: "prod".into(),
        transport,
        actors: actors(),
        options: Options {
            image: "ghcr.io/troupe-mesh/troupe:0.1.0".into(),
            runtime_py: Some("# the runtime file (shortened for the golden files)\n".into()),
            crew_settings: CrewSettings {
                sink_hooks: vec!["notify".into()],
                resume_merge_mode: Some("deep".into()),
                ..CrewSettings::default()
            },
            // What `troupe render` writes by default for namespace prod.
            push_scaler: Some("troupe-operator.prod.svc:9090".into()),
            ..Options::default()
        },
    }
}

/// Each object deserializes into its typed model: k8s-openapi for core kinds (unknown
/// fields would be dropped, so the round trip must be lossless), KEDA's structs otherwise.
fn validate(kind: &str, text: &str) {
    let value: serde_json::Value = serde_yaml::from_str(text).unwrap();
    let back = match kind {
        "Deployment" => {
            serde_json::to_value(serde_json::from_value::<Deployment>(value.clone()).unwrap())
        }
        "Service" => {
            serde_json::to_value(serde_json::from_value::<Service>(value.clone()).unwrap())
        }
        "ServiceAccount" => {
            serde_json::to_value(serde_json::from_value::<ServiceAccount>(value.clone()).unwrap())
        }
        "ConfigMap" => {
            serde_json::to_value(serde_json::from_value::<ConfigMap>(value.clone()).unwrap())
        }
        "ScaledObject" => {
            serde_json::to_value(serde_json::from_value::<ScaledObject>(value.clone()).unwrap())
        }
        "TriggerAuthentication" => serde_json::to_value(
            serde_json::from_value::<TriggerAuthentication>(value.clone()).unwrap(),
        ),
        other => panic!("unexpected kind {other}"),
    }
    .unwrap();
    assert_eq!(back, value, "{kind} does not round-trip through its type");
}

#[test]
fn every_transport_renders_its_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for (name, transport) in transports() {
        let rendered = render(&mesh(transport)).unwrap();
        let files = rendered.files().unwrap();
        let dir = golden_dir().join(name);
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (file, text) in &files {
                std::fs::write(dir.join(file), text).unwrap();
            }
        }
        let mut expected: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        expected.sort();
        let mut got: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
        got.sort();
        assert_eq!(
            got, expected,
            "{name}: file set differs (UPDATE_GOLDEN=1 to accept)"
        );
        for (file, text) in &files {
            let want = std::fs::read_to_string(dir.join(file)).unwrap();
            assert_eq!(
                text, &want,
                "{name}/{file} differs (UPDATE_GOLDEN=1 to accept)"
            );
        }
        for o in &rendered.objects {
            validate(
                o.kind,
                &files.iter().find(|(f, _)| *f == o.file_name()).unwrap().1,
            );
        }
    }
}
