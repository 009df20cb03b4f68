#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use troupe_crew::MergeMode;
use troupe_mesh::config::{ConfigError, MeshConfig, Scaling};
use troupe_protocol::resiliency::Backoff;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn parse(src: &str) -> Result<(MeshConfig, Vec<String>), Vec<ConfigError>> {
    MeshConfig::from_source(Path::new("/mesh/troupe.yaml"), src).map_err(|e| e.0)
}

fn ok(src: &str) -> (MeshConfig, Vec<String>) {
    match parse(src) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid mesh, got:\n{}", render(&e)),
    }
}

fn errs(src: &str) -> Vec<ConfigError> {
    match parse(src) {
        Ok((c, _)) => panic!("expected errors, got {c:#?}"),
        Err(e) => e,
    }
}

fn render(e: &[ConfigError]) -> String {
    e.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// (line, column, field) of every error.
fn where_(e: &[ConfigError]) -> Vec<(usize, usize, String)> {
    e.iter()
        .map(|e| (e.line, e.column, e.field.clone()))
        .collect()
}

/// The only error, checked for position and field.
fn single(src: &str, line: usize, column: usize, field: &str) -> ConfigError {
    let e = errs(src);
    assert_eq!(
        where_(&e),
        vec![(line, column, field.to_string())],
        "{}",
        render(&e)
    );
    e.into_iter().next().unwrap()
}

#[test]
fn full_example_parses_every_setting() {
    let (mesh, warnings) = MeshConfig::load(&fixture("full.yaml")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let dir = fixture("");
    let dir = dir.to_str().unwrap().trim_end_matches('/');
    assert_eq!(mesh.file, fixture("full.yaml"));
    assert_eq!(mesh.root, Path::new(dir));
    assert_eq!(mesh.namespace, "research");
    assert_eq!(mesh.state_dir, Path::new(dir).join("var/state"));
    assert_eq!(mesh.python, "/usr/bin/python3.12");
    assert_eq!(mesh.transport, "embedded");
    assert_eq!(
        mesh.gateway_listen,
        "127.0.0.1:8089".parse::<SocketAddr>().unwrap()
    );

    let names: Vec<_> = mesh.actors.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["preprocess", "summarize", "apologize"]);

    let pre = mesh.actor("preprocess").unwrap();
    assert_eq!(pre.handler, "pipeline.preprocess");
    assert_eq!(pre.python, "/usr/bin/python3.12");
    assert_eq!(pre.line, 8);
    assert_eq!(
        pre.env,
        [("MODEL", "small"), ("RETRIES", "3"), ("EMPTY", "")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(
        pre.scaling,
        Scaling {
            enabled: true,
            min: 0,
            max: 4,
            polling_interval: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            queue_length: 5,
            replicas: 1,
        }
    );
    assert_eq!(pre.actor_timeout, Duration::from_secs(30));
    assert_eq!(pre.concurrency, 2);
    let r = pre.resiliency.as_ref().unwrap();
    assert_eq!(r.policies.len(), 1);
    assert_eq!(r.policies[0].name, "default");
    assert_eq!(r.policies[0].max_attempts, 3);
    assert_eq!(r.policies[0].backoff, Backoff::Exponential);
    assert_eq!(r.policies[0].initial_delay, Duration::from_millis(200));
    assert_eq!(r.rules[0].errors, ["TimeoutError"]);
    assert_eq!(
        pre.policies_json,
        Some(
            serde_json::json!({"default": {"maxAttempts": 3, "backoff": "exponential", "initialDelay": "200ms"}})
        )
    );
    assert_eq!(
        pre.rules_json,
        Some(serde_json::json!([{"errors": ["TimeoutError"], "policy": "default"}]))
    );

    let sum = mesh.actor("summarize").unwrap();
    assert_eq!(sum.line, 17);
    // A relative interpreter path is anchored at the mesh file's folder.
    assert_eq!(sum.python, format!("{dir}/.venv/bin/python"));
    assert!(!sum.scaling.enabled);
    assert_eq!(sum.scaling.replicas, 2);
    assert_eq!(sum.scaling.polling_interval, Duration::from_secs(10));
    assert_eq!(sum.actor_timeout, Duration::from_secs(300));
    let slow = &sum.resiliency.as_ref().unwrap().policies[0];
    assert_eq!(slow.backoff, Backoff::Linear);
    assert_eq!(slow.max_interval, Duration::from_secs(10));
    assert_eq!(slow.max_duration, Duration::from_secs(120));
    assert!(slow.jitter);
    assert_eq!(slow.on_exhausted, ["apologize"]);
    assert_eq!(
        sum.resiliency.as_ref().unwrap().rules[0].errors,
        ["openai.RateLimitError", "TimeoutError"]
    );

    assert_eq!(mesh.crew.sink_hooks, ["apologize"]);
    assert!(mesh.crew.sink_fanout_hooks);
    assert_eq!(
        mesh.crew.pause_metadata,
        Some(
            serde_json::json!({"prompt": "Approve?", "fields": [{"name": "ok", "type": "boolean"}]})
        )
    );
    assert_eq!(mesh.crew.resume_merge_mode, MergeMode::Deep);
}

#[test]
fn defaults_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("troupe.yaml"),
        "actors:\n  - actor: echo\n    handler: echo.run\n",
    )
    .unwrap();
    // A folder means troupe.yaml inside it.
    let (mesh, warnings) = MeshConfig::load(dir.path()).unwrap();
    assert!(warnings.is_empty());
    let root = std::path::absolute(dir.path()).unwrap();
    assert_eq!(mesh.file, root.join("troupe.yaml"));
    assert_eq!(mesh.root, root);
    assert_eq!(mesh.namespace, "default");
    assert_eq!(mesh.state_dir, root.join(".troupe"));
    assert_eq!(mesh.python, "python3");
    assert_eq!(mesh.transport, "embedded");
    assert_eq!(
        mesh.gateway_listen,
        "127.0.0.1:0".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(mesh.crew.sink_hooks, Vec::<String>::new());
    assert!(!mesh.crew.sink_fanout_hooks);
    assert_eq!(mesh.crew.pause_metadata, None);
    assert_eq!(mesh.crew.resume_merge_mode, MergeMode::Shallow);

    let a = &mesh.actors[0];
    assert_eq!(
        (a.name.as_str(), a.handler.as_str(), a.python.as_str()),
        ("echo", "echo.run", "python3")
    );
    assert_eq!(a.line, 2);
    assert!(a.env.is_empty());
    assert_eq!(
        a.scaling,
        Scaling {
            enabled: true,
            min: 0,
            max: 10,
            polling_interval: Duration::from_secs(30),
            cooldown: Duration::from_secs(300),
            queue_length: 5,
            replicas: 1,
        }
    );
    assert_eq!(a.scaling, Scaling::default());
    assert_eq!(a.actor_timeout, Duration::from_secs(300));
    assert_eq!(a.resiliency, None);
    assert_eq!(
        (a.policies_json.as_ref(), a.rules_json.as_ref()),
        (None, None)
    );
    assert_eq!(a.concurrency, 1);
}

#[test]
fn absolute_state_dir_is_kept() {
    let (mesh, _) = ok("state_dir: /var/lib/troupe\nactors: [{actor: a, handler: m.f}]\n");
    assert_eq!(mesh.state_dir, Path::new("/var/lib/troupe"));
}

#[test]
fn scaling_disabled_uses_fixed_replicas() {
    let (mesh, w) = ok(
        "actors:\n  - actor: a\n    handler: m.f\n    replicas: 3\n    scaling: {enabled: false}\n",
    );
    assert!(w.is_empty());
    assert!(!mesh.actors[0].scaling.enabled);
    assert_eq!(mesh.actors[0].scaling.replicas, 3);
    // With autoscaling on, replicas has no effect: say so.
    let (_, w) = ok("actors:\n  - actor: a\n    handler: m.f\n    replicas: 3\n");
    assert_eq!(w.len(), 1);
    assert!(w[0].starts_with("/mesh/troupe.yaml:4:5: actors[0].replicas: replicas is used only when scaling.enabled is false"), "{w:?}");
}

#[test]
fn async_actor_manifests_with_leading_mesh_document() {
    let (mesh, warnings) = MeshConfig::load(&fixture("manifests.yaml")).unwrap();
    assert_eq!(mesh.namespace, "prod");
    assert_eq!(
        mesh.gateway_listen,
        "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(mesh.python, "python3");
    let names: Vec<_> = mesh
        .actors
        .iter()
        .map(|a| (a.name.as_str(), a.line))
        .collect();
    assert_eq!(names, [("summarize", 9), ("fetch", 29)]);
    let s = &mesh.actors[0];
    assert_eq!(s.handler, "summarize.handler.Summarizer.run");
    assert_eq!(s.env, [("MODEL".to_string(), "gpt-x".to_string())]);
    assert_eq!((s.scaling.max, s.scaling.queue_length), (5, 2));
    assert_eq!(s.actor_timeout, Duration::from_secs(600));
    let p = &s.resiliency.as_ref().unwrap().policies[0];
    assert_eq!(
        (p.initial_delay, p.max_interval, p.jitter),
        (Duration::from_secs(2), Duration::from_secs(60), true)
    );

    let file = fixture("manifests.yaml");
    let file = file.display();
    assert_eq!(
        warnings,
        [
            format!("{file}:13:3: spec.resources: ignored by troupe up: pod resources other than limits.memory apply only on Kubernetes"),
            format!("{file}:21:1: kind: document of kind 'ConfigMap' skipped: troupe up runs only AsyncActor documents (and an optional leading kind: Mesh)"),
            format!("{file}:32:3: spec.tolerations: ignored by troupe up: pod scheduling applies only on Kubernetes"),
            format!("{file}:33:3: spec.flavors: ignored by troupe up: flavors are not resolved locally; inline the settings you need in this actor"),
        ]
    );
}

#[test]
fn async_actor_documents_alone_take_default_settings() {
    let src = "\
apiVersion: asya.sh/v1alpha1
kind: AsyncActor
metadata: {name: a}
spec: {actor: a, image: x, handler: m.f}
---
---
apiVersion: asya.sh/v1alpha1
kind: AsyncActor
metadata: {name: b}
spec:
  actor: b
  handler: m.g
  pythonExecutable: python3.11
";
    let (mesh, w) = ok(src);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(mesh.namespace, "default");
    assert_eq!(mesh.state_dir, Path::new("/mesh/.troupe"));
    let got: Vec<_> = mesh
        .actors
        .iter()
        .map(|a| (a.name.as_str(), a.python.as_str(), a.line))
        .collect();
    assert_eq!(got, [("a", "python3", 4), ("b", "python3.11", 11)]);
}

#[test]
fn manifest_document_errors_are_located_in_their_document() {
    let src = "\
apiVersion: asya.sh/v1alpha1
kind: AsyncActor
spec: {actor: a, handler: m.f}
---
apiVersion: asya.sh/v1beta9
kind: AsyncActor
spec: {actor: b, handler: m.f, replica: 2}
---
kind: AsyncActor
spec: {actor: c, handler: m.f}
---
kind: Mesh
namespace: late
---
apiVersion: asya.sh/v1alpha1
kind: AsyncActor
metadata: {name: d}
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (5, 1, "apiVersion".to_string()),
            (7, 32, "spec.replica".to_string()),
            (9, 1, "apiVersion".to_string()),
            (12, 1, "kind".to_string()),
            (15, 1, "spec".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert!(e[0].message.contains("set apiVersion: asya.sh/v1alpha1"));
    assert!(e[1].message.contains("did you mean 'replicas'?"));
    assert!(e[2].message.contains("missing apiVersion"));
    assert!(e[3].message.contains("must be the first document"));
    assert!(e[4].message.contains("missing spec"));
}

#[test]
fn second_document_without_kind_is_rejected() {
    let e = single(
        "actors: [{actor: a, handler: m.f}]\n---\nactors: [{actor: b, handler: m.f}]\n",
        3,
        1,
        "",
    );
    assert!(e.message.contains("must be the first document"), "{e}");
}

#[test]
fn unknown_fields_name_the_allowed_ones() {
    let src = "\
namespace: default
actor: oops
actors:
  - actor: a
    handler: m.f
    scaling:
      minReplicas: 1
    resiliency: {policies: {default: {retries: 3}}}
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (2, 1, "actor".to_string()),
            (7, 7, "actors[0].scaling.minReplicas".to_string()),
            (
                8,
                39,
                "actors[0].resiliency.policies.default.retries".to_string()
            ),
        ],
        "{}",
        render(&e)
    );
    assert!(e[0].message.starts_with("unknown field 'actor'; did you mean 'actors'? allowed fields: namespace, state_dir, python, transport, fsync, gateway, actors, flows, crew"), "{}", e[0]);
    assert!(
        e[1].message.contains("did you mean 'minReplicaCount'?"),
        "{}",
        e[1]
    );
    assert!(e[1].message.contains("allowed fields: enabled, minReplicaCount, maxReplicaCount, pollingInterval, cooldownPeriod, queueLength, advanced, additionalTriggers"));
    assert!(e[2].message.contains("allowed fields: maxAttempts, backoff, initialDelay, maxInterval, maxDuration, jitter, onExhausted"));
}

#[test]
fn bad_handler_string() {
    let e = single(
        "actors:\n  - actor: a\n    handler: not-a-module.run\n",
        3,
        5,
        "actors[0].handler",
    );
    assert!(
        e.message.contains(
            "invalid handler 'not-a-module.run': use module.function or module.Class.method"
        ),
        "{e}"
    );
    single(
        "actors:\n  - actor: a\n    handler: justafunction\n",
        3,
        5,
        "actors[0].handler",
    );
    single(
        "actors:\n  - {actor: a, handler: 'pkg..f'}\n",
        2,
        16,
        "actors[0].handler",
    );
}

#[test]
fn missing_required_fields_point_at_the_entry() {
    let e = single(
        "actors:\n  - actor: a\n    env: []\n",
        2,
        5,
        "actors[0].handler",
    );
    assert!(
        e.message.contains("missing required field 'handler'"),
        "{e}"
    );
    let e = single("actors:\n  - handler: m.f\n", 2, 5, "actors[0].actor");
    assert!(e.message.contains("missing required field 'actor'"), "{e}");
}

#[test]
fn bad_actor_names() {
    let e = single(
        "actors:\n  - actor: Pre_Process\n    handler: m.f\n",
        2,
        5,
        "actors[0].actor",
    );
    assert!(
        e.message
            .contains("invalid actor name 'Pre_Process': use a DNS label"),
        "{e}"
    );
    let long = "a".repeat(64);
    single(
        &format!("actors:\n  - actor: {long}\n    handler: m.f\n"),
        2,
        5,
        "actors[0].actor",
    );
    single(
        "actors:\n  - actor: -a\n    handler: m.f\n",
        2,
        5,
        "actors[0].actor",
    );
    let e = single(
        "actors:\n  - actor: 12\n    handler: m.f\n",
        2,
        5,
        "actors[0].actor",
    );
    assert!(
        e.message.contains("expected a string, found a number (12)"),
        "{e}"
    );
}

#[test]
fn reserved_crew_names() {
    for name in ["x-sink", "x-sump", "x-pause", "x-resume"] {
        let e = single(
            &format!("actors:\n  - handler: m.f\n    actor: {name}\n"),
            3,
            5,
            "actors[0].actor",
        );
        assert!(
            e.message
                .contains(&format!("'{name}' is a crew actor name reserved by troupe")),
            "{e}"
        );
        assert!(e.message.contains("choose another name"));
    }
}

#[test]
fn duplicate_actor_points_at_the_second_and_names_the_first() {
    let src = "\
actors:
  - actor: a
    handler: m.f
  - actor: b
    handler: m.f
  - handler: m.g
    actor: a
";
    let e = single(src, 7, 5, "actors[2].actor");
    assert_eq!(
        e.message,
        "duplicate actor 'a' (first defined at line 2): actor names must be unique; rename or remove one of them"
    );
    // Across documents too.
    let src = "\
actors: [{actor: a, handler: m.f}]
---
apiVersion: asya.sh/v1alpha1
kind: AsyncActor
spec: {actor: a, handler: m.f}
";
    let e = single(src, 5, 8, "spec.actor");
    assert!(e.message.contains("first defined at line 1"), "{e}");
}

#[test]
fn bad_go_durations() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    resiliency:
      actorTimeout: abc
      policies:
        default: {initialDelay: 5, maxInterval: 10 seconds, maxDuration: 1m}
        other:
          initialDelay: -1s
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (5, 7, "actors[0].resiliency.actorTimeout".to_string()),
            (
                7,
                19,
                "actors[0].resiliency.policies.default.initialDelay".to_string()
            ),
            (
                7,
                36,
                "actors[0].resiliency.policies.default.maxInterval".to_string()
            ),
            (
                9,
                11,
                "actors[0].resiliency.policies.other.initialDelay".to_string()
            ),
        ],
        "{}",
        render(&e)
    );
    for err in &e {
        assert!(err.message.contains("use Go syntax such as 500ms"), "{err}");
    }
    assert!(
        e[0].message.starts_with("invalid duration 'abc'"),
        "{}",
        e[0]
    );
    let e = single(
        "actors:\n  - actor: a\n    handler: m.f\n    resiliency: {actorTimeout: 0s}\n",
        4,
        18,
        "actors[0].resiliency.actorTimeout",
    );
    assert!(e.message.contains("must be greater than 0"), "{e}");
}

#[test]
fn bad_backoff_and_max_attempts() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    resiliency:
      policies:
        default:
          backoff: fibonacci
          maxAttempts: 0
          jitter: yes please
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (
                7,
                11,
                "actors[0].resiliency.policies.default.backoff".to_string()
            ),
            (
                8,
                11,
                "actors[0].resiliency.policies.default.maxAttempts".to_string()
            ),
            (
                9,
                11,
                "actors[0].resiliency.policies.default.jitter".to_string()
            ),
        ],
        "{}",
        render(&e)
    );
    assert_eq!(
        e[0].message,
        "invalid backoff 'fibonacci': use constant, linear or exponential"
    );
    assert!(e[1]
        .message
        .contains("it must be at least 1 (it counts the first attempt)"));
    assert!(e[2].message.contains("expected true or false"));
}

#[test]
fn rule_naming_an_unknown_policy_is_a_warning() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    resiliency:
      policies: {default: {maxAttempts: 2}}
      rules:
        - {errors: [ValueError], policy: defualt}
        - {errors: [TimeoutError], policy: default}
";
    let (mesh, w) = ok(src);
    assert_eq!(
        w,
        ["/mesh/troupe.yaml:7:34: actors[0].resiliency.rules[0].policy: rule names policy 'defualt', which is not under resiliency.policies (defined: default); the rule is skipped — define the policy or fix the name"]
    );
    // The rule is dropped, the valid one kept.
    let r = mesh.actors[0].resiliency.as_ref().unwrap();
    assert_eq!(r.rules.len(), 1);
    assert_eq!(r.rules[0].policy, "default");
}

#[test]
fn malformed_rules_are_errors() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    resiliency:
      policies: {default: {}}
      rules:
        - {errors: [], policy: default}
        - policy: default
        - {errors: [ValueError]}
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (7, 12, "actors[0].resiliency.rules[0].errors".to_string()),
            (8, 11, "actors[0].resiliency.rules[1].errors".to_string()),
            (9, 11, "actors[0].resiliency.rules[2].policy".to_string()),
        ],
        "{}",
        render(&e)
    );
}

#[test]
fn scaling_bounds() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    scaling: {minReplicaCount: 5, maxReplicaCount: 2, queueLength: 0}
  - actor: b
    handler: m.f
    scaling:
      minReplicaCount: 11
      pollingInterval: 0
      maxReplicaCount: \"4\"
      cooldownPeriod: -1
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (4, 15, "actors[0].scaling.minReplicaCount".to_string()),
            (4, 55, "actors[0].scaling.queueLength".to_string()),
            (8, 7, "actors[1].scaling.minReplicaCount".to_string()),
            (9, 7, "actors[1].scaling.pollingInterval".to_string()),
            (10, 7, "actors[1].scaling.maxReplicaCount".to_string()),
            (11, 7, "actors[1].scaling.cooldownPeriod".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert_eq!(
        e[0].message,
        "minReplicaCount (5) is greater than maxReplicaCount (2); lower minReplicaCount or raise maxReplicaCount"
    );
    assert_eq!(
        e[1].message,
        "queueLength must be at least 1 (messages per replica)"
    );
    // The default maxReplicaCount (10) counts too.
    assert!(e[2]
        .message
        .contains("minReplicaCount (11) is greater than maxReplicaCount (10)"));
    assert!(e[4].message.ends_with("; remove the quotes"), "{}", e[4]);
    assert!(e[5]
        .message
        .contains("expected a non-negative integer, found a number (-1)"));
}

#[test]
fn env_value_from_is_not_supported() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    env:
      - name: OK
        value: x
      - name: SECRET
        valueFrom: {secretKeyRef: {name: s, key: k}}
      - {value: nameless}
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (8, 9, "actors[0].env[1].valueFrom".to_string()),
            (9, 9, "actors[0].env[2].name".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert!(e[0]
        .message
        .contains("valueFrom is not supported by troupe up"));
    assert!(e[0].message.contains("set value directly"));
}

#[test]
fn env_value_from_passes_through_for_kubernetes() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    env:
      - name: OK
        value: x
      - name: SECRET
        valueFrom: {secretKeyRef: {name: s, key: k}}
";
    let (mesh, _) =
        MeshConfig::from_source_for_kubernetes(Path::new("/mesh/troupe.yaml"), src).unwrap();
    let a = mesh.actor("a").unwrap();
    let secret = a.spec.env.iter().find(|e| e.name == "SECRET").unwrap();
    let r = secret
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap();
    assert_eq!((r.name.as_str(), r.key.as_str()), ("s", "k"));
    // Nothing runs it here: the local environment holds only what has a value.
    assert_eq!(a.env, [("OK".to_owned(), "x".to_owned())]);
    // Other mistakes are still refused.
    let bad = src.replace("name: SECRET\n", "");
    assert!(MeshConfig::from_source_for_kubernetes(Path::new("/mesh/troupe.yaml"), &bad).is_err());
}

#[test]
fn transport_urls_name_a_broker() {
    for url in [
        "amqp://guest:guest@localhost:5672/%2f",
        "sqs://us-east-1?endpoint=http://127.0.0.1:5000",
        "pubsub://proj?endpoint=127.0.0.1:8085",
        "nats://127.0.0.1:4222",
        "redis://127.0.0.1:6379/0",
    ] {
        let (c, _) = ok(&format!(
            "transport: '{url}'\nactors: [{{actor: a, handler: m.f}}]\n"
        ));
        assert_eq!(c.transport, url);
    }
    let e = single(
        "transport: kafka://u:secret@localhost:9092\nactors: [{actor: a, handler: m.f}]\n",
        1,
        1,
        "transport",
    );
    assert!(e.message.contains("unknown transport URL"), "{e}");
    assert!(e.message.contains("use embedded"), "{e}");
    assert!(!e.message.contains("secret"), "{e}");
}

#[test]
fn bad_top_level_settings() {
    let src = "\
namespace: My_NS
python: ''
gateway: {listen: 'nowhere', port: 3}
crew: {resume_merge_mode: sideways, sink_hooks: [Bad]}
actors: [{actor: a, handler: m.f}]
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (1, 1, "namespace".to_string()),
            (2, 1, "python".to_string()),
            (3, 11, "gateway.listen".to_string()),
            (3, 30, "gateway.port".to_string()),
            (4, 8, "crew.resume_merge_mode".to_string()),
            (4, 50, "crew.sink_hooks[0]".to_string()),
        ],
        "{}",
        render(&e)
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let src = "actors:\n  - actor: a\n    handler: m.f\n   bad: [unclosed\n";
    let e = errs(src);
    assert_eq!(e.len(), 1, "{}", render(&e));
    assert_eq!((e[0].line, e[0].field.as_str()), (4, ""));
    assert!(e[0].column > 0);
    assert!(e[0].message.starts_with("YAML syntax error: "), "{}", e[0]);
    // The problem's own position is in the prefix, not repeated in the message.
    assert!(!e[0].message.contains("line 4"), "{}", e[0]);

    let e = errs("actors:\n  - actor: a\n    handler: m.f\n    actor: b\n");
    assert_eq!(e.len(), 1);
    // serde_yaml reports a duplicate key at the mapping holding it.
    assert_eq!((e[0].line, e[0].column), (2, 5), "{}", e[0]);
    assert!(
        e[0].message
            .contains("actors[0]: duplicate entry with key \"actor\""),
        "{}",
        e[0]
    );
}

#[test]
fn type_errors_are_located() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    env: {MODEL: small}
    concurrency: 0
    scaling: [1]
  - just a string
";
    let e = errs(src);
    assert_eq!(
        where_(&e),
        [
            (4, 5, "actors[0].env".to_string()),
            (5, 5, "actors[0].concurrency".to_string()),
            (6, 5, "actors[0].scaling".to_string()),
            (7, 5, "actors[1]".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert_eq!(e[0].message, "expected a list, found a mapping");
    assert!(e[1].message.contains("concurrency must be at least 1"));
    assert!(e[3].message.contains(
        "expected an actor (a mapping of key: value), found a string (\"just a string\")"
    ));
}

#[test]
fn every_error_is_collected_and_rendered_one_per_line() {
    let path = fixture("errors.yaml");
    let e = MeshConfig::load(&path).unwrap_err();
    let shown = path.display();
    // Sorted by position; the missing handler is reported at the entry, before the typo.
    let expected = [
        format!("{shown}:3:5: actors[0].handler: missing required field 'handler': add handler: module.function"),
        format!("{shown}:4:5: actors[0].handlr: unknown field 'handlr'; did you mean 'handler'? allowed fields: actor, image, handler, imagePullPolicy, pythonExecutable, replicas, env, secretRefs, resources, tolerations, nodeSelector, volumes, volumeMounts, initContainers, sidecars, flavors, scaling, resiliency, sidecar, tracing, stateProxy, compositionRef, concurrency"),
        format!("{shown}:6:5: actors[1].actor: 'x-sink' is a crew actor name reserved by troupe (x-sink, x-sump, x-pause, x-resume); choose another name"),
        format!("{shown}:10:7: actors[2].resiliency.actorTimeout: invalid duration 'soon'"),
        format!("{shown}:11:20: actors[3].actor: duplicate actor 'fine' (first defined at line 7): actor names must be unique; rename or remove one of them"),
    ];
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{text}");
    for (got, want) in lines.iter().zip(&expected) {
        assert!(
            got.starts_with(want.as_str()),
            "\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn ignored_kubernetes_fields_are_warnings() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    image: ghcr.io/acme/a:1
    imagePullPolicy: Never
    secretRefs: [{secretName: s, keys: [{key: k, envVar: K}]}]
    resources: {limits: {cpu: 1}}
    nodeSelector: {pool: gpu}
    volumes: []
    volumeMounts: []
    initContainers: []
    sidecars: []
    tracing: {endpoint: 'http://otel:4317'}
    stateProxy: []
    compositionRef: {name: asyncactor-sqs}
    sidecar: {image: {repository: r}}
    scaling:
      advanced: {formula: queue * 2, target: '5'}
      additionalTriggers: [{type: cron}]
";
    let (mesh, w) = ok(src);
    assert_eq!(mesh.actors.len(), 1);
    let got: Vec<String> = w
        .iter()
        .map(|s| {
            s.split(": ignored by troupe up")
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let want: Vec<String> = [
        (6, "secretRefs"),
        (7, "resources"),
        (8, "nodeSelector"),
        (9, "volumes"),
        (10, "volumeMounts"),
        (11, "initContainers"),
        (12, "sidecars"),
        (13, "tracing"),
        (14, "stateProxy"),
        (15, "compositionRef"),
        (16, "sidecar"),
    ]
    .iter()
    .map(|(l, f)| format!("/mesh/troupe.yaml:{l}:5: actors[0].{f}"))
    .chain([
        "/mesh/troupe.yaml:18:7: actors[0].scaling.advanced".to_string(),
        "/mesh/troupe.yaml:19:7: actors[0].scaling.additionalTriggers".to_string(),
    ])
    .collect();
    assert_eq!(got, want, "{w:#?}");
    assert!(w[0].contains("put the values under env"), "{}", w[0]);
    // A bad value in an otherwise ignored field is still an error.
    single(
        "actors:\n  - {actor: a, handler: m.f, imagePullPolicy: Sometimes}\n",
        2,
        30,
        "actors[0].imagePullPolicy",
    );
}

#[test]
fn references_to_unknown_actors_are_warnings() {
    let src = "\
crew: {sink_hooks: [notify, x-pause]}
actors:
  - actor: a
    handler: m.f
    resiliency:
      policies: {fallback: {onExhausted: [apologise, a]}}
";
    let (_, w) = ok(src);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w[0].starts_with("/mesh/troupe.yaml:1:21: crew.sink_hooks[0]: sink hook 'notify' is not an actor of this mesh"), "{}", w[0]);
    assert!(w[1].starts_with("/mesh/troupe.yaml:6:43: actors[0].resiliency.policies.fallback.onExhausted[0]: onExhausted target 'apologise' is not an actor of this mesh"), "{}", w[1]);
}

#[test]
fn empty_or_actorless_files_are_errors() {
    let e = errs("");
    assert_eq!(e.len(), 1);
    assert!(e[0].message.starts_with("no actors defined"), "{}", e[0]);
    let e = errs("namespace: x\nactors: []\n");
    assert!(e[0].message.starts_with("no actors defined"), "{}", e[0]);
    let e = single("- a\n- b\n", 1, 1, "");
    assert!(
        e.message
            .contains("expected a mesh file or an AsyncActor document"),
        "{e}"
    );
}

#[test]
fn missing_mesh_file_in_folder() {
    let dir = tempfile::tempdir().unwrap();
    let e = MeshConfig::load(dir.path()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!((e.0[0].line, e.0[0].column), (0, 0));
    assert_eq!(e.0[0].file, dir.path().join("troupe.yaml"));
    assert!(
        e.to_string().ends_with(
            "troupe.yaml: no troupe.yaml in this folder: create one, or pass the mesh file's path"
        ),
        "{e}"
    );
    let e = MeshConfig::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .contains("nope.yaml: cannot read the mesh file:"),
        "{e}"
    );
}

#[test]
fn display_path_drops_leading_dot_slash() {
    let e = MeshConfig::from_source(
        Path::new("./troupe.yaml"),
        "actors: [{actor: A, handler: m.f}]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("troupe.yaml:1:11: actors[0].actor: invalid actor name 'A'"),
        "{e}"
    );
}

#[test]
fn fsync_policy_is_parsed_and_validated() {
    use troupe_transport_embedded::FsyncPolicy;
    let dir = tempfile::tempdir().unwrap();
    let load = |fsync: &str| {
        let path = dir.path().join("troupe.yaml");
        std::fs::write(
            &path,
            format!("fsync: {fsync}\nactors: [{{actor: a, handler: m.f}}]\n"),
        )
        .unwrap();
        troupe_mesh::MeshConfig::load(&path).map(|(c, _)| c.fsync)
    };
    assert_eq!(load("never").unwrap(), FsyncPolicy::Never);
    assert_eq!(load("always").unwrap(), FsyncPolicy::Always);
    assert_eq!(
        load("100ms").unwrap(),
        FsyncPolicy::Interval(std::time::Duration::from_millis(100))
    );
    let err = load("sometimes").unwrap_err().to_string();
    assert!(
        err.contains("troupe.yaml:1:") && err.contains("fsync: invalid fsync 'sometimes'"),
        "{err}"
    );
}

#[test]
fn gateway_store_and_adapters() {
    let (c, _) = ok("\
gateway:
  listen: 127.0.0.1:8080
  store: postgres://troupe@127.0.0.1:5432/troupe
  backstop_interval: 500ms
  mcp:
    listen: 127.0.0.1:8082
    tools_dir: tools
    poll_interval: 1s
    api_key: secret
    tools: [{name: echo, actor: a, progress: true}]
  a2a:
    agents_dir: /etc/agents
    name: Troupe
    jwt_issuer: https://idp
    agents:
      - {name: research, actor: a, skills: [{id: r, name: R}]}
actors: [{actor: a, handler: m.f}]
");
    use troupe_mesh::config::GatewayStore;
    let g = &c.gateway;
    assert_eq!(
        g.store,
        GatewayStore::Postgres("postgres://troupe@127.0.0.1:5432/troupe".into())
    );
    assert_eq!(g.backstop_interval, Some(Duration::from_millis(500)));
    assert_eq!(g.mcp.listen, Some("127.0.0.1:8082".parse().unwrap()));
    assert_eq!(g.mcp.registry_dir, Some(PathBuf::from("/mesh/tools")));
    assert_eq!(g.mcp.poll_interval, Some(Duration::from_secs(1)));
    assert_eq!(
        g.mcp.options.get("api_key").map(String::as_str),
        Some("secret")
    );
    assert_eq!(
        g.mcp.inline,
        vec![serde_json::json!({"name": "echo", "actor": "a", "progress": true})]
    );
    assert_eq!(g.a2a.listen, None);
    assert_eq!(g.a2a.registry_dir, Some(PathBuf::from("/etc/agents")));
    assert_eq!(
        g.a2a.options.get("name").map(String::as_str),
        Some("Troupe")
    );
    assert_eq!(g.a2a.inline.len(), 1);
    assert_eq!(g.a2a.inline[0]["skills"][0]["id"], "r");

    let (c, _) = ok("actors: [{actor: a, handler: m.f}]\n");
    assert_eq!(c.gateway.store, GatewayStore::Sqlite);
    assert!(c.gateway.mcp.inline.is_empty() && c.gateway.mcp.listen.is_none());
    let (c, _) = ok("gateway: {store: memory}\nactors: [{actor: a, handler: m.f}]\n");
    assert_eq!(c.gateway.store, GatewayStore::Memory);
}

#[test]
fn gateway_security_settings() {
    let (c, _) = ok("\
gateway:
  api_key: k1
  cors_origins: [https://app.example/, 'http://localhost:3000']
  trusted_hosts: [troupe.local]
actors: [{actor: a, handler: m.f}]
");
    assert_eq!(c.gateway.api_key.as_deref(), Some("k1"));
    assert_eq!(
        c.gateway.cors_origins,
        ["https://app.example", "http://localhost:3000"]
    );
    assert_eq!(c.gateway.trusted_hosts, ["troupe.local"]);
    let e = errs(
        "\
gateway:
  cors_origins: [app.example, 'https://ok.example', 'https://a.example/path']
  trusted_hosts: ['http://x:8080']
actors: [{actor: a, handler: m.f}]
",
    );
    assert_eq!(
        where_(&e),
        [
            (2, 18, "gateway.cors_origins[0]".to_string()),
            (2, 53, "gateway.cors_origins[2]".to_string()),
            (3, 19, "gateway.trusted_hosts[0]".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert!(e[0].message.contains("scheme://host"), "{}", e[0]);
}

#[test]
fn bad_gateway_settings_are_located() {
    let e = errs(
        "\
gateway:
  store: mysql://x
  mcp: {listen: nowhere, tools: [3], colour: red}
  a2a: {poll_interval: often}
actors: [{actor: a, handler: m.f}]
",
    );
    assert_eq!(
        where_(&e),
        [
            (2, 3, "gateway.store".to_string()),
            (3, 9, "gateway.mcp.listen".to_string()),
            (3, 34, "gateway.mcp.tools[0]".to_string()),
            (3, 38, "gateway.mcp.colour".to_string()),
            (4, 9, "gateway.a2a.poll_interval".to_string()),
        ],
        "{}",
        render(&e)
    );
    assert!(e[0].message.contains("postgres://"), "{}", e[0]);
}

#[test]
fn memory_limit_reaches_the_runtime_environment() {
    let src = "\
actors:
  - actor: a
    handler: m.f
    resources: {limits: {memory: 256Mi}}
  - actor: b
    handler: m.f
    resources: {limits: {memory: 1.5G, cpu: 2}, requests: {memory: 1Gi}}
";
    let (mesh, w) = ok(src);
    let limit = |i: usize| -> Vec<(String, String)> {
        mesh.actors[i]
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("TROUPE_MEMORY_LIMIT"))
            .cloned()
            .collect()
    };
    assert_eq!(
        limit(0),
        [
            ("TROUPE_MEMORY_LIMIT".to_owned(), "268435456".to_owned()),
            ("TROUPE_MEMORY_LIMIT_TEXT".to_owned(), "256Mi".to_owned())
        ]
    );
    assert_eq!(limit(1)[0].1, "1500000000");
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("actors[1].resources") && w[0].contains("other than limits.memory"),
        "{w:?}"
    );
    assert!(w.iter().all(|x| !x.contains("actors[0]")), "{w:?}");

    let e = render(&errs(
        "actors:\n  - actor: a\n    handler: m.f\n    resources: {limits: {memory: lots}}\n",
    ));
    assert!(e.contains("invalid memory quantity 'lots'"), "{e}");
    for (text, bytes) in [
        ("1Ki", 1024),
        ("64Mi", 64 << 20),
        ("2Gi", 2 << 30),
        ("500M", 500_000_000),
        ("1e6", 1_000_000),
        ("4096", 4096),
    ] {
        assert_eq!(
            troupe_mesh::config::parse_memory_quantity(text),
            Some(bytes),
            "{text}"
        );
    }
    assert_eq!(troupe_mesh::config::parse_memory_quantity("12Xi"), None);
}

/// Issue 9 item 19: `runtime:` runs another runtime file, mesh-wide or per actor; the
/// file must exist, checked when the mesh file is read, with its position.
#[test]
fn runtime_file_mesh_wide_and_per_actor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("asya_runtime.py"), "# runtime\n").unwrap();
    std::fs::create_dir(dir.path().join("rt")).unwrap();
    std::fs::write(dir.path().join("rt/other.py"), "# other\n").unwrap();
    let file = dir.path().join("troupe.yaml");
    std::fs::write(
        &file,
        "runtime: asya_runtime.py\nactors:\n  - actor: a\n    handler: m.f\n  - actor: b\n    handler: m.g\n    runtime: rt/other.py\n",
    )
    .unwrap();
    let (c, _) = MeshConfig::load(&file).unwrap();
    let root = c.root.clone();
    assert_eq!(c.runtime, Some(root.join("asya_runtime.py")));
    assert_eq!(
        c.actor("a").unwrap().runtime,
        Some(root.join("asya_runtime.py"))
    );
    assert_eq!(
        c.actor("b").unwrap().runtime,
        Some(root.join("rt/other.py"))
    );
    assert_eq!(
        ok("actors:\n  - {actor: a, handler: m.f}\n").0.actors[0].runtime,
        None
    );

    std::fs::write(
        &file,
        "runtime: missing.py\nactors:\n  - actor: a\n    handler: m.f\n    runtime: rt/nope.py\n",
    )
    .unwrap();
    let e = MeshConfig::load(&file).unwrap_err().0;
    assert_eq!(
        where_(&e),
        vec![
            (1, 1, "runtime".to_string()),
            (5, 5, "actors[0].runtime".to_string())
        ],
        "{}",
        render(&e)
    );
    assert!(
        e[0].message.contains("missing.py does not exist"),
        "{}",
        e[0]
    );
}

/// Issue 9 item 16 under `troupe up`: Asya settings written into an actor's env (which
/// only the runtime sees) are honoured with a warning or refused, never ignored.
#[test]
fn older_asya_settings_in_actor_env_are_honoured_or_refused() {
    let (c, warnings) = ok("actors:\n  - actor: a\n    handler: m.f\n    env: [{name: ASYA_RUNTIME_TIMEOUT, value: 42s}]\n");
    assert_eq!(c.actors[0].actor_timeout, Duration::from_secs(42));
    assert!(
        warnings.iter().any(|w| w.contains("actorTimeout: 42s")),
        "{warnings:?}"
    );
    for (name, value, needle) in [
        (
            "ASYA_HANDLER_MODE",
            "envelope",
            "envelope mode is not supported",
        ),
        ("ASYA_RESILIENCY_RETRY_MAX_ATTEMPTS", "5", "resiliency"),
        ("ASYA_ACTOR_HAPPY_END", "happy-end", "x-sink"),
    ] {
        let src = format!(
            "actors:\n  - actor: a\n    handler: m.f\n    env: [{{name: {name}, value: {value}}}]\n"
        );
        let e = single(&src, 4, 5, "actors[0].env");
        assert!(
            e.message.contains(name) && e.message.contains(needle),
            "{}",
            e.message
        );
    }
}

#[test]
fn flows_are_read_and_checked_with_their_locations() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flows.py"),
        "def research(p):\n    return p\n",
    )
    .unwrap();
    let file = dir.path().join("troupe.yaml");
    let ok = "\
flows:
  - {name: research, source: flows.py:research}
  - name: text
    route: [a, b]
    description: Two steps.
actors:
  - {actor: a, handler: m.f}
  - {actor: b, handler: m.g}
";
    let (mesh, _) = troupe_mesh::MeshConfig::from_source(&file, ok).unwrap();
    assert_eq!(mesh.flows.len(), 2);
    assert_eq!(mesh.flows[0].name, "research");
    assert_eq!(
        mesh.flows[0].body,
        troupe_mesh::config::FlowBody::Source {
            file: dir.path().join("flows.py"),
            function: Some("research".into())
        }
    );
    assert_eq!(mesh.flows[0].line, 2);
    assert_eq!(
        mesh.flows[1].body,
        troupe_mesh::config::FlowBody::Route(vec!["a".into(), "b".into()])
    );
    assert_eq!(mesh.flows[1].description.as_deref(), Some("Two steps."));

    let bad = "\
flows:
  - {name: Research, source: flows.py}
  - {name: two, source: flows.py, route: [a]}
  - {name: none}
  - {name: gone, source: missing.py:f}
  - {name: text, route: [a]}
  - {name: text, route: [b]}
  - {name: notpy, source: flows.txt:f}
actors:
  - {actor: a, handler: m.f}
";
    let e = troupe_mesh::MeshConfig::from_source(&file, bad)
        .unwrap_err()
        .0;
    let messages: Vec<String> = e
        .iter()
        .map(|e| format!("{}:{}: {}", e.line, e.field, e.message))
        .collect();
    let all = messages.join("\n");
    for want in [
        "2:flows[0].name: invalid flow name 'Research'",
        "3:flows[1]: flow 'two' has both source and route",
        "4:flows[2]: flow 'none' has neither source nor route",
        "5:flows[3].source: flow source",
        "7:flows[5].name: flow 'text' is defined twice",
        "8:flows[6].source: invalid source 'flows.txt:f'",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(want)),
            "missing {want:?} in:\n{all}"
        );
    }
}
