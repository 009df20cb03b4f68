//! The CRD's CEL rules evaluated client-side with kube-cel (the cel-go semantics the API
//! server applies): invalid AsyncActors are refused with the rule's message, valid ones pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;

fn schema() -> Value {
    let crd = serde_json::to_value(troupe_resource::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The messages of the rules `spec` breaks (empty when it is accepted).
fn refused(spec: &str) -> Vec<String> {
    let spec: Value = serde_yaml::from_str(spec).unwrap();
    let object = serde_json::json!({
        "apiVersion": "asya.sh/v1alpha1",
        "kind": "AsyncActor",
        "metadata": {"name": "a"},
        "spec": spec,
    });
    match kube::core::cel::Validator::new().validate(&schema(), &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.to_string().lines().map(str::to_owned).collect(),
    }
}

const BASE: &str = "actor: a\nhandler: m.f\nimage: ghcr.io/acme/a:1\n";

#[test]
fn a_complete_spec_passes_every_rule() {
    let every = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/asya/every-field.yaml"
    ))
    .unwrap();
    let doc: Value = serde_yaml::from_str(&every).unwrap();
    let spec = serde_yaml::to_string(&doc["spec"]).unwrap();
    assert_eq!(refused(&spec), Vec::<String>::new());
    assert_eq!(refused(BASE), Vec::<String>::new());
}

#[test]
fn image_is_required_on_kubernetes() {
    let e = refused("actor: a\nhandler: m.f\n");
    assert!(
        e.iter()
            .any(|m| m.contains("spec.image is required on Kubernetes")),
        "{e:?}"
    );
}

#[test]
fn handler_is_required_except_for_a_crew_actor() {
    let e = refused("actor: a\nimage: i\n");
    assert!(
        e.iter().any(|m| m.contains("spec.handler is required")),
        "{e:?}"
    );
    // A fan-in crew actor needs neither handler nor image.
    assert_eq!(
        refused("actor: f\ncrew: fan-in\nfanIn: {timeout: 30s}\n"),
        Vec::<String>::new()
    );
    let e = refused("actor: f\ncrew: fan-in\nfanIn: {timeout: 0s}\n");
    assert!(e.iter().any(|m| m.contains("fanIn.timeout")), "{e:?}");
}

#[test]
fn formula_requires_target() {
    let e = refused(&format!(
        "{BASE}scaling: {{advanced: {{formula: queue * 2}}}}\n"
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("formula requires scaling.advanced.target")),
        "{e:?}"
    );
    let ok = refused(&format!(
        "{BASE}scaling: {{advanced: {{formula: queue * 2, target: '5'}}}}\n"
    ));
    assert_eq!(ok, Vec::<String>::new());
}

#[test]
fn min_replicas_may_not_exceed_max_with_the_defaults() {
    let e = refused(&format!("{BASE}scaling: {{minReplicaCount: 11}}\n"));
    assert!(
        e.iter()
            .any(|m| m.contains("must not exceed scaling.maxReplicaCount")),
        "{e:?}"
    );
    let e = refused(&format!(
        "{BASE}scaling: {{minReplicaCount: 3, maxReplicaCount: 2}}\n"
    ));
    assert!(!e.is_empty());
    assert_eq!(
        refused(&format!(
            "{BASE}scaling: {{minReplicaCount: 3, maxReplicaCount: 3}}\n"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn container_names_starting_asya_are_reserved() {
    for list in ["initContainers", "sidecars"] {
        let e = refused(&format!(
            "{BASE}{list}: [{{name: asya-sidecar, image: x}}]\n"
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("reserved for the containers Troupe renders")),
            "{list}: {e:?}"
        );
        assert_eq!(
            refused(&format!("{BASE}{list}: [{{name: helper, image: x}}]\n")),
            Vec::<String>::new()
        );
    }
}

#[test]
fn durations_must_parse_and_the_timeout_be_positive() {
    let e = refused(&format!("{BASE}resiliency: {{actorTimeout: 0s}}\n"));
    assert!(
        e.iter().any(|m| m.contains("positive Go duration")),
        "{e:?}"
    );
    let e = refused(&format!("{BASE}resiliency: {{actorTimeout: soon}}\n"));
    assert!(!e.is_empty(), "an unparsable duration is refused");
    let e = refused(&format!(
        "{BASE}resiliency: {{policies: {{p: {{initialDelay: 2 seconds}}}}}}\n"
    ));
    assert!(!e.is_empty());
    assert_eq!(
        refused(&format!("{BASE}resiliency: {{actorTimeout: 1m30s}}\n")),
        Vec::<String>::new()
    );
}
