//! The operator against a real kube-apiserver (scripts/services/kube.sh; no kubelet or
//! controller-manager, so tests write Deployment and ScaledObject status as those
//! controllers would) and real brokers (RabbitMQ, moto's SQS), grouped by what
//! platform.md §2–§3 asks: children with owner references and labels, status
//! transitions, spec changes, the finalizer, the CRD's own validation, bad input, leader
//! election.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::Client;
use troupe_operator::reconcile::api_resource;
use troupe_resource::{AsyncActor, Phase};
use troupe_transport::{ConnectOptions, Transport};
use troupe_transport_conformance::server::{self, Server};
use troupe_transports::TransportSpec;

const WAIT: Duration = Duration::from_secs(60);

async fn broker(url: &str, ns: &str) -> std::sync::Arc<dyn Transport> {
    TransportSpec::from_url(url)
        .unwrap()
        .connect(ConnectOptions::new(ns))
        .await
        .unwrap()
}

/// Whether the operator's leader gauge is 1.
fn leads(op: &Running) -> bool {
    op.metrics
        .render()
        .lines()
        .any(|l| l == "troupe_operator_leader 1")
}

async fn phase(api: &Api<AsyncActor>, name: &str) -> Option<Phase> {
    api.get(name).await.ok()?.status?.phase
}

async fn scaled_object_ready(client: &Client, ns: &str, name: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &api_resource("keda.sh/v1alpha1", "ScaledObject"),
    );
    let status = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "message": "ScaledObject is defined correctly and is ready for scaling"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// platform.md §2–§3 on RabbitMQ: the queue, then the children with owner references
/// and labels; Creating → Ready → Napping as KEDA and the Deployment report; a spec change
/// reaches the Deployment; delete runs the finalizer (queue deleted, children gone).
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_actor_lifecycle() {
    let Some(client) = client().await else { return };
    let Some(mq) = Server::start(&server::RABBITMQ, &[]) else {
        return;
    };
    let ns = namespace(&client, "op-life").await;
    transport_secret(&client, &ns, &[("ASYA_RABBITMQ_URL", mq.url.as_str())]).await;
    let op = start(
        &client,
        config(
            &ns,
            &[
                ("ASYA_TRANSPORT", "rabbitmq"),
                ("ASYA_RABBITMQ_URL", mq.url.as_str()),
            ],
            None,
        ),
    );
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let a = actor(
        "summarize",
        serde_json::json!({"asya.sh/flow": "research", "app.kubernetes.io/version": "9"}),
        serde_json::json!({"actor": "summarize", "image": "acme/summarize:1.4", "handler": "summarize.handler.run"}),
    );
    let created = actors.create(&PostParams::default(), &a).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();

    // Children, each owned by the AsyncActor (controller, blockOwnerDeletion) and labelled.
    let d = eventually("the Deployment", WAIT, || async {
        deployments.get_opt("summarize").await.unwrap()
    })
    .await;
    let owner = &d.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("AsyncActor", "summarize", uid.as_str())
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let labels = d.metadata.labels.clone().unwrap();
    assert_eq!(labels["asya.sh/actor"], "summarize");
    assert_eq!(labels["asya.sh/flow"], "research", "user labels propagate");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "troupe");
    assert!(
        !labels.contains_key("app.kubernetes.io/version"),
        "app.kubernetes.io/* user labels stay on the AsyncActor"
    );
    for (api_version, kind, name) in [
        ("v1", "ServiceAccount", "summarize"),
        (
            "keda.sh/v1alpha1",
            "TriggerAuthentication",
            "summarize-trigger-auth",
        ),
        ("keda.sh/v1alpha1", "ScaledObject", "summarize"),
    ] {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &api_resource(api_version, kind));
        let o = api
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
        let owners = o.metadata.owner_references.unwrap();
        assert_eq!(owners[0].uid, uid, "{kind}");
        assert_eq!(owners[0].controller, Some(true), "{kind}");
    }
    // The queue exists before anything else: a message sent to it stays there.
    let mq_client = broker(&mq.url, &ns).await;
    let queue = format!("asya-{ns}-summarize");
    mq_client
        .send(&queue, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let depth = mq_client.depth(&queue).await.unwrap();
    assert_eq!(depth.ready, 1, "{depth:?}");

    // Creating until KEDA and the workload are ready.
    let s = eventually("a status", WAIT, || async {
        actors.get("summarize").await.ok()?.status
    })
    .await;
    assert_eq!(s.phase, Some(Phase::Creating));
    assert_eq!(s.queue_identifier.as_deref(), Some(queue.as_str()));
    assert_eq!(s.observed_generation, created.metadata.generation);
    scaled_object_ready(&client, &ns, "summarize").await;
    let ready = serde_json::json!({"status": {"replicas": 1, "readyReplicas": 1}});
    deployments
        .patch_status("summarize", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .unwrap();
    eventually("Ready", WAIT, || async {
        (phase(&actors, "summarize").await == Some(Phase::Ready)).then_some(())
    })
    .await;
    let s = actors.get("summarize").await.unwrap().status.unwrap();
    let w = s.infrastructure.unwrap().workload.unwrap();
    assert_eq!((w.replicas, w.ready_replicas), (Some(1), Some(1)));
    // KEDA scales to zero: Napping.
    let zero =
        serde_json::json!({"spec": {"replicas": 0}, "status": {"replicas": 0, "readyReplicas": 0}});
    deployments
        .patch(
            "summarize",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    deployments
        .patch_status("summarize", &PatchParams::default(), &Patch::Merge(&zero))
        .await
        .unwrap();
    eventually("Napping", WAIT, || async {
        (phase(&actors, "summarize").await == Some(Phase::Napping)).then_some(())
    })
    .await;

    // A spec change reaches the Deployment.
    actors
        .patch(
            "summarize",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"image": "acme/summarize:1.5"}})),
        )
        .await
        .unwrap();
    eventually("the new image", WAIT, || async {
        let d = deployments.get("summarize").await.ok()?;
        let image = d
            .spec?
            .template
            .spec?
            .containers
            .into_iter()
            .find(|c| c.name == "asya-runtime")?
            .image?;
        (image == "acme/summarize:1.5").then_some(())
    })
    .await;
    // Disabling scaling drops the ScaledObject and TriggerAuthentication (no longer rendered).
    actors
        .patch(
            "summarize",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"scaling": {"enabled": false}}})),
        )
        .await
        .unwrap();
    let scaled: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &api_resource("keda.sh/v1alpha1", "ScaledObject"),
    );
    eventually("the ScaledObject pruned", WAIT, || async {
        scaled
            .get_opt("summarize")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let auths: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &api_resource("keda.sh/v1alpha1", "TriggerAuthentication"),
    );
    eventually("the TriggerAuthentication pruned", WAIT, || async {
        auths
            .get_opt("summarize-trigger-auth")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        deployments.get_opt("summarize").await.unwrap().is_some(),
        "only what the render dropped goes"
    );

    // Delete: the finalizer deletes the queue (and its message), then the children.
    delete_and_wait(&actors, "summarize", WAIT).await;
    let fresh = broker(&mq.url, &ns).await;
    assert_eq!(
        fresh.depth(&queue).await.unwrap().ready,
        0,
        "queue deleted with its message"
    );
    assert!(deployments.get_opt("summarize").await.unwrap().is_none());
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    assert!(sas.get_opt("summarize").await.unwrap().is_none());
    assert!(op.metrics.render().contains(&format!(
        "troupe_operator_reconciles_total{{namespace=\"{ns}\",actor=\"summarize\"}}"
    )));
    op.stop().await.unwrap();
}

/// On moto's SQS: the operator creates the queue (reachable by name) and the finalizer
/// deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn sqs_queue_created_and_deleted_by_the_finalizer() {
    let Some(client) = client().await else { return };
    let Some(sqs) = Server::start(&server::SQS, &[]) else {
        return;
    };
    let ns = namespace(&client, "op-sqs").await;
    let env = [
        ("ASYA_TRANSPORT", "sqs"),
        ("ASYA_AWS_REGION", "us-east-1"),
        ("ASYA_SQS_ENDPOINT", sqs.url.as_str()),
    ];
    let op = start(&client, config(&ns, &env, None));
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    actors
        .create(
            &PostParams::default(),
            &actor(
                "embed",
                serde_json::json!({}),
                serde_json::json!({"actor": "embed", "image": "i", "handler": "m.f"}),
            ),
        )
        .await
        .unwrap();
    eventually("the Deployment", WAIT, || async {
        deployments.get_opt("embed").await.unwrap()
    })
    .await;
    let url = format!("sqs://us-east-1?endpoint={}", sqs.url);
    let queue = format!("asya-{ns}-embed");
    let t = broker(&url, &ns).await;
    t.send(&queue, Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(t.depth(&queue).await.unwrap().ready, 1);
    delete_and_wait(&actors, "embed", WAIT).await;
    let fresh = broker(&url, &ns).await;
    match fresh.depth(&queue).await {
        Ok(d) => assert_eq!(d.ready, 0, "queue deleted: {d:?}"),
        Err(e) => println!("deleted queue: {e}"),
    }
    assert!(deployments.get_opt("embed").await.unwrap().is_none());
    op.stop().await.unwrap();
}

/// The CRD refuses invalid specs itself, with messages that say what to fix.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_refused_by_the_crd_with_readable_messages() {
    let Some(client) = client().await else { return };
    let ns = namespace(&client, "op-crd").await;
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    for (spec, expected) in [
        (
            serde_json::json!({"actor": "a", "image": "i", "handler": "m.f",
                "sidecars": [{"name": "asya-extra", "image": "busybox"}]}),
            "container names starting with asya- are reserved",
        ),
        (
            serde_json::json!({"actor": "a", "image": "i", "handler": "m.f",
                "scaling": {"advanced": {"formula": "queue * 2"}}}),
            "scaling.advanced.formula requires scaling.advanced.target",
        ),
        (
            serde_json::json!({"actor": "a", "handler": "m.f"}),
            "spec.image is required on Kubernetes",
        ),
    ] {
        let err = actors
            .create(
                &PostParams::default(),
                &actor("a", serde_json::json!({}), spec),
            )
            .await
            .unwrap_err();
        let kube::Error::Api(status) = &err else {
            panic!("expected a refusal, got {err}")
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(status.message.contains(expected), "{}", status.message);
    }
}

/// Bad input → a False condition and a Warning Event that say what to fix, and no
/// Deployment: an unknown transport, a missing Secret, a queue the broker refuses.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gives_a_condition_and_an_event_and_nothing_applied() {
    let Some(client) = client().await else { return };
    let Some(sqs) = Server::start(&server::SQS, &[]) else {
        return;
    };
    // Long enough that asya-<ns>-<actor> passes SQS's 80 characters.
    let ns = namespace(&client, "op-bad-input-with-a-rather-long-namespace-name").await;
    let env = [
        ("ASYA_TRANSPORT", "rabbitmq"),
        ("ASYA_RABBITMQ_URL", "amqp://127.0.0.1:1/%2f"),
        ("ASYA_AWS_REGION", "us-east-1"),
        ("ASYA_SQS_ENDPOINT", sqs.url.as_str()),
    ];
    let op = start(&client, config(&ns, &env, None));
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let long_actor = "an-actor-whose-name-makes-the-queue-too-long";
    let cases = [
        (
            "kafka",
            serde_json::json!({"actor": "kafka", "image": "i", "handler": "m.f",
                "compositionRef": {"name": "asyncactor-kafka"}}),
            "TransportConfigured",
            "UnknownTransport",
            "use one of asyncactor-rabbitmq, asyncactor-sqs",
        ),
        (
            "nosecret",
            serde_json::json!({"actor": "nosecret", "image": "i", "handler": "m.f"}),
            "TransportConfigured",
            "SecretMissing",
            "kubectl create secret generic troupe-transport",
        ),
        (
            long_actor,
            serde_json::json!({"actor": long_actor, "image": "i", "handler": "m.f",
                "compositionRef": {"name": "asyncactor-sqs"}}),
            "QueueReady",
            "QueueRefused",
            "refused to create queue",
        ),
    ];
    for (name, spec, _, _, _) in &cases {
        actors
            .create(
                &PostParams::default(),
                &actor(name, serde_json::json!({}), spec.clone()),
            )
            .await
            .unwrap();
    }
    for (name, _, condition_type, reason, fix) in cases {
        let (status, got_reason, message) =
            eventually(&format!("{reason} on {name}"), WAIT, || async {
                condition(&actors, name, condition_type)
                    .await
                    .filter(|c| c.0 == "False")
            })
            .await;
        assert_eq!(
            (status.as_str(), got_reason.as_str()),
            ("False", reason),
            "{message}"
        );
        assert!(message.contains(fix), "{name}: {message}");
        let ready = condition(&actors, name, "Ready").await.unwrap();
        assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", reason));
        let notes = eventually(&format!("the {reason} Event"), WAIT, || async {
            let n = event_notes(&client, &ns, name, reason).await;
            (!n.is_empty()).then_some(n)
        })
        .await;
        assert!(notes.iter().any(|n| n.contains(fix)), "{notes:?}");
        println!("{name}: {reason}: {message}");
        assert_eq!(phase(&actors, name).await, Some(Phase::Creating));
        assert!(
            deployments.get_opt(name).await.unwrap().is_none(),
            "{name}: nothing applied"
        );
    }
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    assert!(sas
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .all(|s| s.metadata.name.as_deref() == Some("default")));
    assert!(op.metrics.render().contains("reason=\"SecretMissing\""));
    // A deleted bad actor goes (its finalizer has no queue to delete).
    actors
        .delete("kafka", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the bad AsyncActor gone", WAIT, || async {
        actors
            .get_opt("kafka")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    op.stop().await.unwrap();
}

/// Two operators, one lease: only the leader reconciles; when it stops, the standby
/// takes over.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_reconciles() {
    let Some(client) = client().await else { return };
    let Some(sqs) = Server::start(&server::SQS, &[]) else {
        return;
    };
    let ns = namespace(&client, "op-leader").await;
    let env = [
        ("ASYA_TRANSPORT", "sqs"),
        ("ASYA_AWS_REGION", "us-east-1"),
        ("ASYA_SQS_ENDPOINT", sqs.url.as_str()),
    ];
    let first = start(&client, config(&ns, &env, Some("first")));
    eventually("a leader", WAIT, || async { leads(&first).then_some(()) }).await;
    let second = start(&client, config(&ns, &env, Some("second")));
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    actors
        .create(
            &PostParams::default(),
            &actor(
                "one",
                serde_json::json!({}),
                serde_json::json!({"actor": "one", "image": "i", "handler": "m.f"}),
            ),
        )
        .await
        .unwrap();
    eventually("one's Deployment", WAIT, || async {
        deployments.get_opt("one").await.unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if first.finished() {
        panic!("the leader stopped by itself: {:?}", first.stop().await);
    }
    assert!(
        first.metrics.reconciles_total() > 0,
        "first:\n{}\nsecond:\n{}",
        first.metrics.render(),
        second.metrics.render()
    );
    assert_eq!(
        second.metrics.reconciles_total(),
        0,
        "the standby reconciled"
    );
    assert!(!leads(&second));

    first.stop().await.unwrap();
    actors
        .create(
            &PostParams::default(),
            &actor(
                "two",
                serde_json::json!({}),
                serde_json::json!({"actor": "two", "image": "i", "handler": "m.f"}),
            ),
        )
        .await
        .unwrap();
    eventually("two's Deployment, from the new leader", WAIT, || async {
        deployments.get_opt("two").await.unwrap()
    })
    .await;
    assert!(second.metrics.reconciles_total() > 0);
    assert!(leads(&second));
    second.stop().await.unwrap();
}

/// `compositionRef` moves an actor to another transport: the queue is created there,
/// the Deployment's sidecar follows, and the queue on the old transport is deleted; the
/// finalizer then deletes the queue on the new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_transport_change_moves_the_queue() {
    let Some(client) = client().await else { return };
    let Some(mq) = Server::start(&server::RABBITMQ, &[]) else {
        return;
    };
    let Some(sqs) = Server::start(&server::SQS, &[]) else {
        return;
    };
    let ns = namespace(&client, "op-move").await;
    transport_secret(&client, &ns, &[("ASYA_RABBITMQ_URL", mq.url.as_str())]).await;
    let env = [
        ("ASYA_TRANSPORT", "rabbitmq"),
        ("ASYA_RABBITMQ_URL", mq.url.as_str()),
        ("ASYA_AWS_REGION", "us-east-1"),
        ("ASYA_SQS_ENDPOINT", sqs.url.as_str()),
    ];
    let op = start(&client, config(&ns, &env, None));
    let actors: Api<AsyncActor> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    actors
        .create(
            &PostParams::default(),
            &actor(
                "mover",
                serde_json::json!({}),
                serde_json::json!({"actor": "mover", "image": "i", "handler": "m.f"}),
            ),
        )
        .await
        .unwrap();
    let sidecar_transport = |d: Deployment| {
        d.spec?
            .template
            .spec?
            .containers
            .into_iter()
            .find(|c| c.name == "asya-sidecar")?
            .env?
            .into_iter()
            .find(|e| e.name == "ASYA_TRANSPORT")?
            .value
    };
    eventually("the rabbitmq Deployment", WAIT, || async {
        let d = deployments.get_opt("mover").await.unwrap()?;
        (sidecar_transport(d).as_deref() == Some("rabbitmq")).then_some(())
    })
    .await;
    let queue = format!("asya-{ns}-mover");
    let mq_client = broker(&mq.url, &ns).await;
    mq_client
        .send(&queue, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(mq_client.depth(&queue).await.unwrap().ready, 1);

    actors
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({"spec": {"compositionRef": {"name": "asyncactor-sqs"}}}),
            ),
        )
        .await
        .unwrap();
    eventually("the sqs Deployment", WAIT, || async {
        let d = deployments.get_opt("mover").await.unwrap()?;
        (sidecar_transport(d).as_deref() == Some("sqs")).then_some(())
    })
    .await;
    eventually("the rabbitmq queue deleted", WAIT, || async {
        let fresh = broker(&mq.url, &ns).await;
        (fresh.depth(&queue).await.unwrap().ready == 0).then_some(())
    })
    .await;
    let url = format!("sqs://us-east-1?endpoint={}", sqs.url);
    let sqs_client = broker(&url, &ns).await;
    sqs_client
        .send(&queue, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(
        sqs_client.depth(&queue).await.unwrap().ready,
        1,
        "the queue exists on SQS"
    );
    let notes = event_notes(&client, &ns, "mover", "TransportChanged").await;
    assert!(
        notes.iter().any(|n| n.contains("from rabbitmq to sqs")),
        "{notes:?}"
    );

    delete_and_wait(&actors, "mover", WAIT).await;
    match broker(&url, &ns).await.depth(&queue).await {
        Ok(d) => assert_eq!(d.ready, 0, "the SQS queue deleted: {d:?}"),
        Err(e) => println!("deleted queue: {e}"),
    }
    op.stop().await.unwrap();
}
