//! An actor's KEDA objects (platform.md §3 items 3–4): the TriggerAuthentication its
//! queue scaler needs, and the ScaledObject with the `queue` trigger, the push trigger
//! (docs/decisions.md "Kubernetes: push scaler") and the actor's own triggers.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use troupe_resource::{AuthenticationRef, ScaleTrigger, Scaling};

use crate::keda::{self, metadata};
use crate::labels::meta;
use crate::model::{Mesh, Transport, TRANSPORT_SECRET};
use crate::output::Object;
use crate::RenderError;

/// Name of an actor's TriggerAuthentication.
pub(crate) fn trigger_auth_name(actor: &str) -> String {
    format!("{actor}-trigger-auth")
}

fn secret_ref(parameter: &str, key: &str) -> keda::SecretTargetRef {
    keda::SecretTargetRef {
        parameter: parameter.to_owned(),
        name: TRANSPORT_SECRET.to_owned(),
        key: key.to_owned(),
    }
}

/// TriggerAuthentication `{name}-trigger-auth`, when the transport's scaler needs one.
pub(crate) fn trigger_auth(
    mesh: &Mesh,
    name: &str,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Result<Option<Object>, RenderError> {
    let spec = match &mesh.transport {
        Transport::RabbitMq { .. } => keda::TriggerAuthenticationSpec {
            secret_target_ref: vec![secret_ref("host", "ASYA_RABBITMQ_URL")],
            ..Default::default()
        },
        Transport::Sqs { endpoint: None, .. } => keda::TriggerAuthenticationSpec {
            pod_identity: Some(keda::PodIdentity {
                provider: "aws".into(),
            }),
            ..Default::default()
        },
        Transport::Sqs {
            endpoint: Some(_), ..
        } => keda::TriggerAuthenticationSpec {
            secret_target_ref: vec![
                secret_ref("awsAccessKeyID", "AWS_ACCESS_KEY_ID"),
                secret_ref("awsSecretAccessKey", "AWS_SECRET_ACCESS_KEY"),
            ],
            ..Default::default()
        },
        Transport::PubSub { .. } => keda::TriggerAuthenticationSpec {
            secret_target_ref: vec![secret_ref(
                "GoogleApplicationCredentials",
                "GOOGLE_APPLICATION_CREDENTIALS_JSON",
            )],
            ..Default::default()
        },
        Transport::Redis { password: true, .. } => keda::TriggerAuthenticationSpec {
            secret_target_ref: vec![secret_ref("password", "REDIS_PASSWORD")],
            ..Default::default()
        },
        Transport::Nats { .. }
        | Transport::Redis {
            password: false, ..
        } => return Ok(None),
    };
    let ta_name = trigger_auth_name(name);
    let ta = keda::TriggerAuthentication {
        api_version: keda::API_VERSION.into(),
        kind: "TriggerAuthentication".into(),
        metadata: meta(&ta_name, &mesh.namespace, labels, owner),
        spec,
    };
    Object::new("TriggerAuthentication", &ta_name, &ta).map(Some)
}

/// Account of queues behind an endpoint when no IRSA role names one: LocalStack's default;
/// moto takes the account from the credentials and only reads the URL's last segment.
const EMULATOR_ACCOUNT: &str = "000000000000";

/// What KEDA's `queueURL` gets: `<endpoint>/<account>/<queue>` behind an endpoint,
/// `https://sqs.<region>.amazonaws.com/<account>/<queue>` when the IRSA role's ARN names the
/// account, else the bare name (KEDA then asks SQS by name; the account is not known at
/// render time). docs/decisions.md "SQS queueURL".
pub(crate) fn sqs_queue_url(
    mesh: &Mesh,
    region: &str,
    endpoint: Option<&str>,
    queue: &str,
) -> String {
    // arn:aws:iam::<account>:role/<name>
    let account = mesh
        .options
        .aws_role_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty());
    match (endpoint, account) {
        (Some(e), a) => format!(
            "{}/{}/{queue}",
            e.trim_end_matches('/'),
            a.unwrap_or(EMULATOR_ACCOUNT)
        ),
        (None, Some(a)) => format!("https://sqs.{region}.amazonaws.com/{a}/{queue}"),
        (None, None) => queue.to_owned(),
    }
}

/// The primary trigger `queue` of `actor` (platform.md §1 "KEDA trigger").
pub(crate) fn queue_trigger(mesh: &Mesh, actor: &str, queue_length: u32) -> ScaleTrigger {
    let queue = mesh.queue(actor);
    let ql = queue_length.to_string();
    let auth = Some(AuthenticationRef {
        name: trigger_auth_name(actor),
        kind: None,
    });
    let (type_, metadata, authentication_ref) = match &mesh.transport {
        Transport::RabbitMq { .. } => (
            "rabbitmq",
            metadata(&[
                ("protocol", "amqp".into()),
                ("queueName", queue),
                ("mode", "QueueLength".into()),
                ("value", ql),
            ]),
            auth,
        ),
        Transport::Sqs { region, endpoint } => {
            let mut pairs = vec![
                (
                    "queueURL",
                    sqs_queue_url(mesh, region, endpoint.as_deref(), &queue),
                ),
                ("queueLength", ql),
                ("awsRegion", region.clone()),
            ];
            if let Some(e) = endpoint {
                pairs.push(("awsEndpoint", e.clone()));
            }
            ("aws-sqs-queue", metadata(&pairs), auth)
        }
        Transport::PubSub { .. } => (
            "gcp-pubsub",
            metadata(&[
                ("subscriptionName", queue),
                ("mode", "SubscriptionSize".into()),
                ("value", ql),
            ]),
            auth,
        ),
        Transport::Nats {
            monitoring_endpoint,
        } => (
            "nats-jetstream",
            metadata(&[
                ("natsServerMonitoringEndpoint", monitoring_endpoint.clone()),
                ("account", "$G".into()),
                ("stream", queue.clone()),
                ("consumer", queue),
                ("lagThreshold", ql),
            ]),
            None,
        ),
        Transport::Redis { address, password } => (
            "redis-streams",
            metadata(&[
                ("address", address.clone()),
                ("stream", queue),
                ("consumerGroup", "asya".into()),
                ("pendingEntriesCount", ql),
            ]),
            password.then_some(AuthenticationRef {
                name: trigger_auth_name(actor),
                kind: None,
            }),
        ),
    };
    ScaleTrigger {
        type_: type_.to_owned(),
        name: Some("queue".to_owned()),
        metadata,
        authentication_ref,
        ..ScaleTrigger::default()
    }
}

/// HPA behaviour of platform.md §3 item 4: down 1 pod / 60 s after a 300 s window; up at
/// once, max(10 pods, 100 %) / 60 s.
pub(crate) fn hpa_behavior() -> HorizontalPodAutoscalerBehavior {
    let policy = |type_: &str, value: i32| HPAScalingPolicy {
        type_: type_.to_owned(),
        value,
        period_seconds: 60,
    };
    HorizontalPodAutoscalerBehavior {
        scale_down: Some(HPAScalingRules {
            stabilization_window_seconds: Some(300),
            policies: Some(vec![policy("Pods", 1)]),
            ..HPAScalingRules::default()
        }),
        scale_up: Some(HPAScalingRules {
            stabilization_window_seconds: Some(0),
            policies: Some(vec![policy("Pods", 10), policy("Percent", 100)]),
            select_policy: Some("Max".to_owned()),
            ..HPAScalingRules::default()
        }),
    }
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(i) => i.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// ScaledObject `{name}` targeting Deployment `{name}`.
pub(crate) fn scaled_object(
    mesh: &Mesh,
    name: &str,
    scaling: &Scaling,
    labels: &BTreeMap<String, String>,
    owner: Option<&OwnerReference>,
) -> Result<Object, RenderError> {
    let mut triggers = vec![keda::Trigger::from(queue_trigger(
        mesh,
        name,
        scaling.queue_length(),
    ))];
    // KEDA is active when any trigger is: the push trigger only brings activation
    // forward (docs/decisions.md "Kubernetes: push scaler"); the queue trigger still
    // drives 1..N. Only where there is a zero to scale from, and not on Pub/Sub, whose
    // backlog the scaler cannot count (it would answer "active" for ever).
    let push = mesh
        .options
        .push_scaler
        .as_ref()
        .filter(|_| scaling.min_replica_count() == 0)
        .filter(|_| !matches!(mesh.transport, Transport::PubSub { .. }));
    if let Some(address) = push {
        triggers.push(keda::push_trigger(
            address,
            mesh.queue(name),
            scaling.queue_length(),
        ));
    }
    triggers.extend(
        scaling
            .additional_triggers
            .iter()
            .cloned()
            .map(keda::Trigger::from),
    );
    let advanced = scaling.advanced.clone().unwrap_or_default();
    let scaling_modifiers = match (&advanced.formula, &advanced.target) {
        (Some(formula), Some(target)) => Some(keda::ScalingModifiers {
            formula: formula.clone(),
            target: int_or_string(target),
            activation_target: advanced.activation_target.as_ref().map(int_or_string),
            metric_type: advanced.metric_type,
        }),
        // The CRD refuses a formula without a target; troupe.yaml is checked by troupe-mesh.
        _ => None,
    };
    let so = keda::ScaledObject {
        api_version: keda::API_VERSION.into(),
        kind: "ScaledObject".into(),
        metadata: meta(name, &mesh.namespace, labels, owner),
        spec: keda::ScaledObjectSpec {
            scale_target_ref: keda::ScaleTargetRef {
                name: name.to_owned(),
            },
            polling_interval: scaling.polling_interval(),
            cooldown_period: scaling.cooldown_period(),
            min_replica_count: scaling.min_replica_count(),
            max_replica_count: scaling.max_replica_count(),
            advanced: keda::Advanced {
                restore_to_original_replica_count: advanced.restore_to_original_replica_count,
                horizontal_pod_autoscaler_config: keda::HpaConfig {
                    behavior: hpa_behavior(),
                },
                scaling_modifiers,
            },
            triggers,
        },
    };
    Object::new("ScaledObject", name, &so)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::{mesh, spec};
    use troupe_resource::AdvancedScaling;

    #[test]
    fn each_transport_has_its_keda_trigger_named_queue() {
        let cases = [
            (
                Transport::RabbitMq {
                    exchange: "asya".into(),
                },
                "rabbitmq",
                "queueName",
                true,
            ),
            (
                Transport::Sqs {
                    region: "us-east-1".into(),
                    endpoint: Some("http://moto:5000".into()),
                },
                "aws-sqs-queue",
                "queueURL",
                true,
            ),
            (
                Transport::PubSub {
                    project: "p".into(),
                    endpoint: None,
                },
                "gcp-pubsub",
                "subscriptionName",
                true,
            ),
            (
                Transport::Nats {
                    monitoring_endpoint: "n:8222".into(),
                },
                "nats-jetstream",
                "stream",
                false,
            ),
            (
                Transport::Redis {
                    address: "r:6379".into(),
                    password: false,
                },
                "redis-streams",
                "stream",
                false,
            ),
        ];
        for (t, type_, key, auth) in cases {
            let m = mesh(t);
            let trig = queue_trigger(&m, "a", 7);
            assert_eq!(trig.type_, type_);
            assert_eq!(trig.name.as_deref(), Some("queue"));
            assert!(trig.metadata[key].ends_with("asya-ns-a"), "{type_}");
            assert!(
                trig.metadata.values().any(|v| v == "7"),
                "{type_}: queueLength"
            );
            assert_eq!(trig.authentication_ref.is_some(), auth, "{type_}");
            let ta = trigger_auth(&m, "a", &BTreeMap::new(), None).unwrap();
            assert_eq!(
                ta.is_some(),
                auth,
                "{type_}: TriggerAuthentication iff referenced"
            );
        }
    }

    #[test]
    fn sqs_uses_pod_identity_unless_an_endpoint_is_set() {
        let aws = mesh(Transport::Sqs {
            region: "eu-west-1".into(),
            endpoint: None,
        });
        let ta = trigger_auth(&aws, "a", &BTreeMap::new(), None)
            .unwrap()
            .unwrap();
        assert_eq!(ta.value["spec"]["podIdentity"]["provider"], "aws");
        assert!(!queue_trigger(&aws, "a", 5)
            .metadata
            .contains_key("awsEndpoint"));
        let moto = mesh(Transport::Sqs {
            region: "eu-west-1".into(),
            endpoint: Some("http://moto:5000".into()),
        });
        let ta = trigger_auth(&moto, "a", &BTreeMap::new(), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            ta.value["spec"]["secretTargetRef"][0]["parameter"],
            "awsAccessKeyID"
        );
        assert_eq!(
            queue_trigger(&moto, "a", 5).metadata["awsEndpoint"],
            "http://moto:5000"
        );
        assert_eq!(
            queue_trigger(&moto, "a", 5).metadata["queueURL"],
            "http://moto:5000/000000000000/asya-ns-a"
        );
        assert_eq!(
            queue_trigger(&aws, "a", 5).metadata["queueURL"],
            "asya-ns-a"
        );
        let mut irsa = aws;
        irsa.options.aws_role_arn = Some("arn:aws:iam::123456789012:role/r".into());
        assert_eq!(
            queue_trigger(&irsa, "a", 5).metadata["queueURL"],
            "https://sqs.eu-west-1.amazonaws.com/123456789012/asya-ns-a"
        );
    }

    #[test]
    fn additional_triggers_follow_queue_and_a_formula_becomes_scaling_modifiers() {
        let s = spec("{actor: a, handler: m.f, scaling: {advanced: {formula: 'queue + x', target: 3}, additionalTriggers: [{type: cron, name: x}]}}");
        let m = mesh(Transport::RabbitMq {
            exchange: "asya".into(),
        });
        let so = scaled_object(&m, "a", &s.scaling(), &BTreeMap::new(), None).unwrap();
        let t = &so.value["spec"]["triggers"];
        assert_eq!(t[0]["name"], "queue");
        assert_eq!(t[1]["name"], "x");
        let mut pushed = m.clone();
        pushed.options.push_scaler = Some("scaler:9090".into());
        let so = scaled_object(&pushed, "a", &s.scaling(), &BTreeMap::new(), None).unwrap();
        let t = &so.value["spec"]["triggers"];
        assert_eq!(
            (&t[0]["name"], &t[1]["name"], &t[2]["name"]),
            (&"queue".into(), &"push".into(), &"x".into()),
            "the push trigger follows the queue trigger"
        );
        assert_eq!(t[1]["metadata"]["queue"], "asya-ns-a");
        assert_eq!(t[1]["metadata"]["scalerAddress"], "scaler:9090");
        let triggers = |m: &Mesh, min: u32| {
            let s = spec(&format!(
                "{{actor: a, handler: m.f, scaling: {{minReplicaCount: {min}}}}}"
            ));
            let so = scaled_object(m, "a", &s.scaling(), &BTreeMap::new(), None).unwrap();
            so.value["spec"]["triggers"].as_array().unwrap().len()
        };
        assert_eq!(triggers(&pushed, 0), 2);
        assert_eq!(
            triggers(&pushed, 1),
            1,
            "no zero to scale from: no push trigger"
        );
        let mut pubsub = mesh(Transport::PubSub {
            project: "p".into(),
            endpoint: None,
        });
        pubsub.options.push_scaler = Some("scaler:9090".into());
        assert_eq!(
            triggers(&pubsub, 0),
            1,
            "Pub/Sub cannot be counted: no push trigger"
        );
        assert_eq!(
            so.value["spec"]["advanced"]["scalingModifiers"]["target"],
            "3"
        );
        // Defaults of platform.md §2 when the actor says nothing.
        let plain = scaled_object(&m, "a", &Scaling::default(), &BTreeMap::new(), None).unwrap();
        let p = &plain.value["spec"];
        assert_eq!(
            (p["minReplicaCount"].as_u64(), p["maxReplicaCount"].as_u64()),
            (Some(0), Some(10))
        );
        assert_eq!(
            (p["pollingInterval"].as_u64(), p["cooldownPeriod"].as_u64()),
            (Some(30), Some(300))
        );
        assert!(p["advanced"].get("scalingModifiers").is_none());
        let _ = AdvancedScaling::default();
    }
}
