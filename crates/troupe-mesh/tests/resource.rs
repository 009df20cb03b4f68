//! troupe.yaml's actors are read through the AsyncActor types (troupe-resource): Asya's
//! objects and every example of this repo parse, the typed spec is the one Kubernetes would
//! see, and problems inside Kubernetes-only fields are located by line and column.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use troupe_mesh::config::{ConfigError, MeshConfig};
use troupe_resource::{AsyncActor, AsyncActorSpec};

fn asya(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../troupe-resource/tests/asya")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn parse(src: &str) -> Result<(MeshConfig, Vec<String>), Vec<ConfigError>> {
    MeshConfig::from_source(Path::new("/mesh/troupe.yaml"), src).map_err(|e| e.0)
}

/// The spec troupe-resource reads from the (only) AsyncActor document of `src`.
fn typed(src: &str) -> AsyncActorSpec {
    serde_yaml::from_str::<AsyncActor>(src).unwrap().spec
}

#[test]
fn the_spec_example_runs_under_troupe_up_unchanged() {
    let src = asya("summarize.yaml");
    let (mesh, warnings) = parse(&src).unwrap();
    let a = mesh.actor("summarize").unwrap();
    assert_eq!(a.spec, typed(&src));
    assert_eq!(a.handler, a.spec.handler);
    assert_eq!(a.scaling.max, a.spec.scaling().max_replica_count());
    // The GPU limit has no local meaning: accepted, with a notice naming the field.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("spec.resources: ignored by troupe up"),
        "{warnings:?}"
    );
}

#[test]
fn an_asya_object_with_every_field_is_accepted_with_notices() {
    let src = asya("every-field.yaml");
    // valueFrom cannot be resolved locally: the one error, located.
    let e = parse(&src).unwrap_err();
    let got: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(
            "/mesh/troupe.yaml:18:7: spec.env[1].valueFrom: valueFrom is not supported"
        ),
        "{got:#?}"
    );
    // Without it, the rest runs, every Kubernetes-only field named in a notice.
    let src = src.replace(
        "    - name: POD_IP\n      valueFrom: {fieldRef: {fieldPath: status.podIP}}\n",
        "",
    );
    let (mesh, warnings) = parse(&src).unwrap();
    let a = mesh.actor("embed").unwrap();
    assert_eq!(a.spec, typed(&src));
    assert_eq!((a.concurrency, a.pipeline), (4, 2));
    let text = warnings.join("\n");
    for field in [
        "secretRefs",
        "resources",
        "tolerations",
        "nodeSelector",
        "volumes",
        "volumeMounts",
        "initContainers",
        "sidecars",
        "flavors",
        "scaling.advanced",
        "scaling.additionalTriggers",
        "sidecar",
        "tracing",
        "stateProxy",
        "compositionRef",
        "compositionRevisionRef",
        "compositionUpdatePolicy",
        "compositeDeletePolicy",
        "resourceRef",
    ] {
        assert!(
            text.contains(&format!("spec.{field}: ignored by troupe up")),
            "{field} not named:\n{text}"
        );
    }
}

#[test]
fn every_example_of_the_repo_reads_through_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let file = entry.unwrap().path().join("troupe.yaml");
        if !file.exists() {
            continue;
        }
        let (mesh, _) =
            MeshConfig::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for a in &mesh.actors {
            assert_eq!(a.spec.actor, a.name);
            assert_eq!(a.spec.handler, a.handler);
            // What the renderer will write reads back as the same spec.
            let text = serde_yaml::to_string(&a.spec).unwrap();
            let back: AsyncActorSpec = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back, a.spec, "{}", file.display());
            seen += 1;
        }
    }
    assert!(seen >= 6, "{seen}");
}

#[test]
fn problems_inside_kubernetes_fields_are_located() {
    // The old walker only warned about these fields and never looked inside them.
    let src = "\
actors:
  - actor: a
    handler: m.f
    tolerations:
      - {key: gpu, operator: [Exists]}
    stateProxy:
      - name: cache
        connector: {image: c}
";
    let e = parse(src).unwrap_err();
    let got: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("/mesh/troupe.yaml:5:20: actors[0].tolerations[0].operator: invalid type: sequence, expected a string"),
        "{got:#?}"
    );
    let src = "\
actors:
  - actor: a
    handler: m.f
    stateProxy:
      - name: cache
        connector: {image: c}
";
    let e = parse(src).unwrap_err();
    let got: Vec<String> = e.iter().map(ToString::to_string).collect();
    assert!(
        got[0].starts_with("/mesh/troupe.yaml:5:9: actors[0].stateProxy[0]: missing field `mount`"),
        "{got:#?}"
    );
}

#[test]
fn numbers_in_env_values_become_strings_in_the_spec() {
    let (mesh, _) = parse("actors:\n  - {actor: a, handler: m.f, env: [{name: N, value: 3}, {name: B, value: true}]}\n").unwrap();
    let a = &mesh.actors[0];
    assert_eq!(
        a.env,
        [("N".into(), "3".into()), ("B".into(), "true".into())]
    );
    let values: Vec<Option<&str>> = a.spec.env.iter().map(|e| e.value.as_deref()).collect();
    assert_eq!(values, [Some("3"), Some("true")]);
}
