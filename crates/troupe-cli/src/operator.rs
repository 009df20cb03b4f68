//! `troupe operator`: the AsyncActor operator (troupe-operator does the work; this file
//! reads the settings and stops it on SIGTERM / Ctrl-C).

use std::collections::HashMap;
use std::sync::Arc;

use troupe_operator::config::TransportSetting;
use troupe_operator::{Metrics, OperatorConfig};
use troupe_transport::ConnectOptions;
use troupe_transports::TransportSpec;

/// Arguments of `troupe operator`.
pub struct Args {
    /// Watch one namespace; all when absent.
    pub namespace: Option<String>,
    /// Where `/metrics` and `/healthz` are served.
    pub metrics_addr: String,
    /// Run without leader election (a single replica).
    pub no_leader_election: bool,
    /// Where to serve KEDA's external-push scaler, or `off`.
    pub scaler_addr: String,
    /// `host:port` written into the external-push triggers, or `off`; absent: the
    /// operator's Service in `POD_NAMESPACE` when this replica serves the scaler.
    pub push_scaler: Option<String>,
}

/// The push scaler this replica serves, and the address the triggers name.
struct PushSetup {
    serve: Option<(String, TransportSpec)>,
    advertise: Option<String>,
}

fn push_setup(
    args: &Args,
    config: &OperatorConfig,
    pod_namespace: Option<&str>,
) -> Result<PushSetup, String> {
    let default = config
        .default_transport
        .and_then(|kind| config.transports.get(kind));
    let serve = match (args.scaler_addr.trim(), default) {
        ("off", _) | (_, None | Some(TransportSetting::Missing(_))) => None,
        (addr, Some(TransportSetting::Ready { spec, .. })) => {
            Some((addr.to_owned(), spec.as_ref().clone()))
        }
    };
    let advertise = match (&args.push_scaler, pod_namespace) {
        (Some(flag), ns) => crate::render::push_scaler(Some(flag), ns.unwrap_or("default"))
            .map_err(|e| e.replace("--push-scaler", "--push-scaler / TROUPE_PUSH_SCALER"))?,
        // In a pod, the chart's Service `troupe-operator` fronts every replica's scaler.
        (None, Some(ns)) if serve.is_some() => Some(crate::render::default_push_scaler(ns)),
        (None, _) => None,
    };
    Ok(PushSetup { serve, advertise })
}

/// Runs the operator: 0 after a clean shutdown, 2 on invalid settings, 1 on failures
/// (including a lost leader lease: the pod restarts as a standby).
pub async fn run(args: Args) -> u8 {
    let metrics_addr = match args.metrics_addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "troupe operator: --metrics-addr '{}' is not HOST:PORT: {e}",
                args.metrics_addr
            );
            return 2;
        }
    };
    let env: HashMap<String, String> = std::env::vars().collect();
    let mut config = match OperatorConfig::from_lookup(
        &|k| env.get(k).cloned(),
        args.namespace.clone(),
        metrics_addr,
        !args.no_leader_election,
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            return 2;
        }
    };
    let pod_namespace = env
        .get("POD_NAMESPACE")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    let push = match push_setup(&args, &config, pod_namespace.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            return 2;
        }
    };
    config.render.push_scaler = push.advertise.clone();
    let client = match troupe_operator::config::kube_client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            return 2;
        }
    };
    tracing::info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        default_transport = config.default_transport.unwrap_or("<none>"),
        "operator starting"
    );
    // The scaler runs beside the controller in every replica (KEDA may reach any of them
    // through the Service); if it fails, KEDA's polling still scales, so the operator goes on.
    let scaler = push.serve.map(|(listen, spec)| {
        let mut connect = ConnectOptions::new(pod_namespace.unwrap_or_else(|| "default".into()));
        connect.consumer_name = format!("troupe-operator-scaler-{}", connect.consumer_name);
        tokio::spawn(async move {
            let served = crate::scaler::serve(
                &listen,
                &spec,
                connect,
                troupe_scaler::ScalerOptions::default(),
                std::future::pending(),
            )
            .await;
            if let Err(crate::scaler::Failure::Setup(m) | crate::scaler::Failure::Run(m)) = served {
                tracing::error!(addr = %listen, "push scaler stopped: {m}; KEDA falls back to polling");
            }
        })
    });
    tracing::info!(
        push_scaler = push.advertise.as_deref().unwrap_or("off"),
        "external-push triggers"
    );
    let result = troupe_operator::run(
        config,
        client,
        Arc::new(Metrics::default()),
        crate::signals::terminated(),
    )
    .await;
    if let Some(s) = scaler {
        s.abort();
    }
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("troupe operator: {e}");
            1
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn config(transport: bool) -> OperatorConfig {
        let env: HashMap<&str, &str> = if transport {
            [
                ("ASYA_TRANSPORT", "rabbitmq"),
                ("ASYA_RABBITMQ_URL", "amqp://u:p@mq:5672/%2f"),
            ]
            .into()
        } else {
            HashMap::new()
        };
        OperatorConfig::from_lookup(
            &|k| env.get(k).map(|v| (*v).to_owned()),
            None,
            "127.0.0.1:0".parse().unwrap(),
            false,
        )
        .unwrap()
    }

    fn args(scaler_addr: &str, push: Option<&str>) -> Args {
        Args {
            namespace: None,
            metrics_addr: "127.0.0.1:0".into(),
            no_leader_election: true,
            scaler_addr: scaler_addr.into(),
            push_scaler: push.map(str::to_owned),
        }
    }

    #[test]
    fn in_a_pod_the_triggers_name_the_operator_service_of_its_namespace() {
        let p = push_setup(&args("0.0.0.0:9090", None), &config(true), Some("troupe")).unwrap();
        assert_eq!(p.serve.as_ref().map(|s| s.0.as_str()), Some("0.0.0.0:9090"));
        assert_eq!(
            p.advertise.as_deref(),
            Some("troupe-operator.troupe.svc:9090")
        );
    }

    #[test]
    fn outside_a_pod_or_switched_off_no_trigger_is_rendered() {
        let p = push_setup(&args("0.0.0.0:9090", None), &config(true), None).unwrap();
        assert!(p.serve.is_some());
        assert_eq!(p.advertise, None);
        let p = push_setup(&args("off", None), &config(true), Some("troupe")).unwrap();
        assert!(p.serve.is_none());
        assert_eq!(p.advertise, None, "nothing serves the scaler: no trigger");
        let p = push_setup(&args("0.0.0.0:9090", Some("off")), &config(true), Some("t")).unwrap();
        assert_eq!(p.advertise, None);
    }

    #[test]
    fn without_a_default_transport_there_is_nothing_to_serve() {
        let p = push_setup(&args("0.0.0.0:9090", None), &config(false), Some("t")).unwrap();
        assert!(p.serve.is_none());
        assert_eq!(p.advertise, None);
    }

    #[test]
    fn an_explicit_address_is_checked() {
        let p = push_setup(
            &args("127.0.0.1:1", Some("10.0.0.1:9090")),
            &config(true),
            None,
        );
        assert_eq!(p.unwrap().advertise.as_deref(), Some("10.0.0.1:9090"));
        let e = push_setup(&args("127.0.0.1:1", Some("http://x")), &config(true), None)
            .err()
            .unwrap();
        assert!(e.contains("TROUPE_PUSH_SCALER"), "{e}");
    }
}
