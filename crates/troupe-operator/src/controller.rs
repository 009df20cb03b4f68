//! The controller: serves `/metrics` and `/healthz`, waits for the leader lease, then
//! watches AsyncActors (all namespaces or one) and the Deployments and ScaledObjects
//! they own, and reconciles each actor ([`crate::reconcile`]) until shutdown or until the
//! lease is lost.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube::Client;
use tokio::sync::watch;
use troupe_resource::AsyncActor;

use crate::config::OperatorConfig;
use crate::error::is_not_found;
use crate::events::Events;
use crate::leader::Elector;
use crate::metrics::{self, Metrics};
use crate::queues::Queues;
use crate::reconcile::{api_resource, error_policy, reconcile, Context};
use crate::OperatorError;

/// Children the controller watches are those the renderer labels as Troupe's.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=troupe";

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Resolves once `rx` turns true.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Waits until AsyncActors can be listed: the CRD may be installed after the operator
/// (or be briefly unavailable while the API server reloads it).
async fn crd_installed(actors: &Api<AsyncActor>) {
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match actors.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => return,
            Err(e) if is_not_found(&e) => tracing::warn!(
                "the AsyncActor CRD (asyncactors.asya.sh) is not installed: run `troupe render --crd | kubectl apply -f -` or install the Helm chart; retrying"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot list AsyncActors; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}

/// Runs the operator until `shutdown` resolves (Ok) or the leader lease is lost (Err).
/// `metrics` is shared so callers (tests, benchmarks) can read it.
pub async fn run(
    config: OperatorConfig,
    client: Client,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), OperatorError> {
    let (stop, rx) = watch::channel(false);
    let (addr, server) =
        metrics::serve(config.metrics_addr, metrics.clone(), stopped(rx.clone())).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    let stop_on_signal = tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let elector = config
        .lease
        .clone()
        .map(|l| Elector::new(client.clone(), l));
    let result = lead(&config, &client, &metrics, elector.as_ref(), rx).await;
    metrics.set_leader(false);
    if let Some(e) = &elector {
        e.release().await;
    }
    stop_on_signal.abort();
    server.abort();
    result
}

async fn lead(
    config: &OperatorConfig,
    client: &Client,
    metrics: &Arc<Metrics>,
    elector: Option<&Elector>,
    rx: watch::Receiver<bool>,
) -> Result<(), OperatorError> {
    if let Some(e) = elector {
        tokio::select! {
            () = e.acquire() => {}
            () = stopped(rx.clone()) => return Ok(()),
        }
        metrics.set_leader(true);
    }
    let ns = config.namespace.as_deref();
    let actors: Api<AsyncActor> = api(client, ns);
    tokio::select! {
        () = crd_installed(&actors) => {}
        () = stopped(rx.clone()) => return Ok(()),
    }
    let identity =
        elector.map_or_else(|| "troupe-operator".to_owned(), |e| e.identity().to_owned());
    let ctx = Arc::new(Context::new(
        client.clone(),
        Queues::new(config.default_transport, config.transports.clone()),
        Events::new(client.clone(), &identity),
        metrics.clone(),
        config.render.clone(),
        config.resync,
    ));
    let so_resource = api_resource("keda.sh/v1alpha1", "ScaledObject");
    let scaled_objects: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &so_resource),
        None => Api::all_with(client.clone(), &so_resource),
    };
    let children = watcher::Config::default().labels(CHILD_SELECTOR);
    let controller = Controller::new(actors, watcher::Config::default())
        .owns(api::<Deployment>(client, ns), children.clone())
        .owns_with(scaled_objects, so_resource, children)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(stopped(rx))
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            // Reconcile failures are logged by the error policy; what reaches here is
            // the watch side (a kind not served, such as ScaledObject without KEDA).
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller");
            }
        });
    let result = match elector {
        Some(e) => tokio::select! {
            () = controller => Ok(()),
            lost = e.keep() => Err(lost),
        },
        None => {
            controller.await;
            Ok(())
        }
    };
    ctx.queues.close().await;
    result
}
