//! `troupe render`: `--crd` prints the golden AsyncActor CRD; a mesh file renders to stdout
//! or to a folder with a kustomization; the embedded transport is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn troupe(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn render_crd_prints_the_golden_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["render", "--crd"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../troupe-resource/tests/golden/crd.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), golden);
}

const MESH: &str = r#"
namespace: shop
transport: embedded
actors:
  - actor: summarize
    image: ghcr.io/acme/summarize:1.4
    handler: summarize.run
    resources: {limits: {nvidia.com/gpu: 1}}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    scaling: {minReplicaCount: 0, maxReplicaCount: 3}
"#;

#[test]
fn a_mesh_renders_to_a_folder_with_a_kustomization() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("troupe.yaml"), MESH).unwrap();
    let out = troupe(
        &[
            "render",
            "--transport",
            "amqp://mq:5672",
            "--namespace",
            "prod",
            "-o",
            "k8s",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k8s = dir.path().join("k8s");
    let k: serde_json::Value =
        serde_yaml_from(&std::fs::read_to_string(k8s.join("kustomization.yaml")).unwrap());
    let files = k["resources"].as_array().unwrap();
    assert!(files.iter().any(|f| f == "deployment-summarize.yaml"));
    for f in files {
        assert!(
            k8s.join(f.as_str().unwrap()).exists(),
            "{f} listed but missing"
        );
    }
    let d = std::fs::read_to_string(k8s.join("deployment-summarize.yaml")).unwrap();
    assert!(
        d.contains("namespace: prod") && d.contains("nvidia.com/gpu"),
        "{d}"
    );
    let so = std::fs::read_to_string(k8s.join("scaledobject-summarize.yaml")).unwrap();
    assert!(so.contains("queueName: asya-prod-summarize"), "{so}");
    // The built-in runtime ships in the ConfigMap the runtime container mounts.
    let cm = std::fs::read_to_string(k8s.join("configmap-asya-runtime.yaml")).unwrap();
    assert!(cm.contains("asya_runtime.py"));

    // Stdout: the same objects as one stream, in the kustomization's order.
    let out = troupe(
        &[
            "render",
            ".",
            "--transport",
            "amqp://mq:5672",
            "--namespace",
            "prod",
        ],
        dir.path(),
    );
    assert!(out.status.success());
    let stream = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stream.lines().filter(|l| *l == "---").count(), files.len());
}

fn serde_yaml_from(text: &str) -> serde_json::Value {
    // The CLI crate has no YAML dependency of its own for tests: the kustomization is simple.
    let resources: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("- "))
        .map(|f| serde_json::Value::String(f.trim().to_owned()))
        .collect();
    serde_json::json!({ "resources": resources })
}

#[test]
fn the_embedded_transport_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("troupe.yaml"), MESH).unwrap();
    let out = troupe(&["render"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no meaning on a cluster") && err.contains("--transport"),
        "{err}"
    );
}

#[test]
fn an_actor_without_an_image_is_refused_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("troupe.yaml"),
        "actors:\n  - actor: local\n    handler: m.f\n",
    )
    .unwrap();
    let out = troupe(&["render", "--transport", "nats://n:4222"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("'local'") && err.contains("troupe.yaml:2"),
        "{err}"
    );
}

#[test]
fn an_actors_own_runtime_file_ships_in_its_own_config_map() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.py"), "# my runtime\n").unwrap();
    std::fs::write(
        dir.path().join("troupe.yaml"),
        "actors:\n  - actor: custom\n    image: i:1\n    handler: m.f\n    runtime: mine.py\n  - actor: plain\n    image: i:1\n    handler: m.f\n",
    )
    .unwrap();
    let out = troupe(
        &["render", "--transport", "redis://r:6379", "-o", "out"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm = std::fs::read_to_string(dir.path().join("out/configmap-custom-runtime.yaml")).unwrap();
    assert!(cm.contains("# my runtime"), "{cm}");
    let d = std::fs::read_to_string(dir.path().join("out/deployment-custom.yaml")).unwrap();
    assert!(d.contains("name: custom-runtime"), "{d}");
    assert!(!dir.path().join("out/configmap-plain-runtime.yaml").exists());
}

#[test]
fn flavors_are_named_in_a_warning_and_the_inline_spec_renders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("troupe.yaml"),
        "actors:\n  - actor: f\n    image: i:1\n    handler: m.f\n    flavors: [gpu-l4]\n",
    )
    .unwrap();
    let out = troupe(&["render", "--transport", "nats://n:4222"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("'f'") && err.contains("gpu-l4") && err.contains("troupe.yaml:2"),
        "{err}"
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("name: f\n"));
}

#[test]
fn a_namespace_kubernetes_would_refuse_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("troupe.yaml"), MESH).unwrap();
    let out = troupe(
        &[
            "render",
            "--transport",
            "nats://n:4222",
            "--namespace",
            "Prod_1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("'Prod_1'") && err.contains("lower-case"),
        "{err}"
    );
}

/// `valueFrom` is the cluster's to resolve: `troupe render` writes it into the Deployment,
/// `troupe up` (which has no Secrets) refuses the file, naming the field.
#[test]
fn value_from_reaches_the_deployment_and_troupe_up_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = "\
transport: embedded
actors:
  - actor: a
    image: i:1
    handler: m.f
    env:
      - name: TOKEN
        valueFrom: {secretKeyRef: {name: s, key: k}}
";
    std::fs::write(dir.path().join("troupe.yaml"), mesh).unwrap();
    let out = troupe(&["render", "--transport", "amqp://mq:5672"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = String::from_utf8(out.stdout).unwrap();
    let at = text
        .find("- name: TOKEN\n")
        .expect("TOKEN in the rendered env");
    let entry: String = text[at..].lines().take(5).collect::<Vec<_>>().join("\n");
    assert!(
        entry.contains("valueFrom:")
            && entry.contains("secretKeyRef:")
            && entry.contains("key: k")
            && entry.contains("name: s"),
        "{entry}"
    );
    let out = troupe(&["up"], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("env[0].valueFrom") && stderr.contains("not supported by troupe up"),
        "{stderr}"
    );
}
