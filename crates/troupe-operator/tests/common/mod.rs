//! Shared by the operator's tests: a client of the test API server (kube.sh, through
//! the conformance crate), the CRDs, a namespace per test, an operator running in this
//! process, and polling helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tokio::sync::oneshot;
use troupe_operator::{Metrics, OperatorConfig, OperatorError};
use troupe_resource::AsyncActor;

/// A client of the test API server; `None` (the test passes after saying why) when no
/// server can run here.
pub async fn client() -> Option<Client> {
    // The operator's logs, shown for a failing test (RUST_LOG picks the level).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "troupe_operator=info".into()),
        )
        .with_test_writer()
        .try_init();
    let path = troupe_transport_conformance::kube::kubeconfig()?;
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig config");
    let client = Client::try_from(config).expect("client");
    // Once per test process: tests share the CRDs.
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED.get_or_init(|| install_crds(&client)).await;
    Some(client)
}

/// A namespace of this test's own (the API server is shared).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

/// KEDA's two kinds, as the operator applies them: no schema (KEDA's own CRDs are the
/// helm check's business; no KEDA controller runs here), with a status subresource
/// that tests write as KEDA would.
fn keda_crd(kind: &str, plural: &str) -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.keda.sh")},
        "spec": {
            "group": "keda.sh",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    }))
    .unwrap()
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "asyncactors.asya.sh",
        &PatchParams::apply("troupe-operator-tests").force(),
        &Patch::Apply(troupe_resource::crd()),
    )
    .await
    .unwrap();
    for (kind, plural) in [
        ("ScaledObject", "scaledobjects"),
        ("TriggerAuthentication", "triggerauthentications"),
    ] {
        // Real KEDA CRDs, if another test installed them, stay.
        match crds
            .create(&PostParams::default(), &keda_crd(kind, plural))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("cannot install the {kind} CRD: {e}"),
        }
    }
    for name in [
        "asyncactors.asya.sh",
        "scaledobjects.keda.sh",
        "triggerauthentications.keda.sh",
    ] {
        eventually(
            &format!("CRD {name} established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                async move {
                    let crd = crds.get(name).await.ok()?;
                    crd.status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(())
                }
            },
        )
        .await;
    }
}

/// Secret `troupe-transport` with `pairs`.
pub async fn transport_secret(client: &Client, ns: &str, pairs: &[(&str, &str)]) {
    let data: HashMap<&str, &str> = pairs.iter().copied().collect();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "troupe-transport"},
        "stringData": data,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

/// An operator running in this process.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), OperatorError>>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
}

impl Running {
    /// Whether it has stopped by itself (lost its lease, failed).
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it and returns how it ended.
    pub async fn stop(mut self) -> Result<(), OperatorError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("operator stops within 30 s")
            .expect("operator task")
    }
}

/// Settings for an operator watching `ns`, with environment `env`; leader election
/// over a lease in `ns` when `identity` is set (short timings).
pub fn config(ns: &str, env: &[(&str, &str)], identity: Option<&str>) -> OperatorConfig {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut config = OperatorConfig::from_lookup(
        &|k| env.get(k).cloned(),
        Some(ns.to_owned()),
        "127.0.0.1:0".parse().unwrap(),
        identity.is_some(),
    )
    .unwrap();
    if let (Some(lease), Some(id)) = (config.lease.as_mut(), identity) {
        lease.namespace = ns.to_owned();
        lease.identity = id.to_owned();
        lease.duration = Duration::from_secs(4);
        lease.retry = Duration::from_millis(500);
    }
    config
}

/// Starts an operator with `config`.
pub fn start(client: &Client, config: OperatorConfig) -> Running {
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(troupe_operator::run(
        config,
        client.clone(),
        metrics.clone(),
        async {
            let _ = rx.await;
        },
    ));
    Running {
        stop: Some(tx),
        task,
        metrics,
    }
}

/// Polls `check` every 200 ms until it gives `Some`; panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An AsyncActor from JSON `spec`.
/// Deletes AsyncActor `name` and waits until it is gone (the finalizer has run).
pub async fn delete_and_wait(actors: &Api<AsyncActor>, name: &str, limit: Duration) {
    actors
        .delete(name, &kube::api::DeleteParams::default())
        .await
        .unwrap();
    eventually("the AsyncActor gone", limit, || async {
        actors.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

pub fn actor(name: &str, labels: serde_json::Value, spec: serde_json::Value) -> AsyncActor {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "asya.sh/v1alpha1",
        "kind": "AsyncActor",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .unwrap()
}

/// Events about `name` in `ns` with `reason`: their notes.
pub async fn event_notes(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .filter_map(|e| e.note)
        .collect()
}

/// The condition `type_` of the actor's status: `(status, reason, message)`.
pub async fn condition(
    api: &Api<AsyncActor>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let a = api.get(name).await.ok()?;
    let c = a
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}
