//! `troupe scaler`: KEDA's external-push scaler on its own (troupe-scaler), connected to
//! the cluster broker from the same `ASYA_TRANSPORT` / `ASYA_*` variables as `troupe
//! sidecar` (protocol.md §15), so a ScaledObject's `external-push` trigger starts an actor
//! scaled to zero as soon as its queue holds a message.

use std::collections::HashMap;
use std::time::Duration;

use troupe_scaler::ScalerOptions;
use troupe_transport::ConnectOptions;
use troupe_transports::TransportSpec;

/// `troupe scaler`'s flags.
#[derive(Debug, Clone)]
pub struct Args {
    /// `host:port` to serve gRPC on.
    pub listen: String,
    /// Time between depth samples of a watched queue (Go duration), if given.
    pub poll_interval: Option<String>,
}

/// What `troupe scaler` runs with, from one lookup of the environment.
#[derive(Debug)]
struct Startup {
    spec: TransportSpec,
    connect: ConnectOptions,
    options: ScalerOptions,
}

fn configure(args: &Args, get: &dyn Fn(&str) -> Option<String>) -> Result<Startup, String> {
    let kind = get("ASYA_TRANSPORT")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or("ASYA_TRANSPORT is required (rabbitmq, sqs, pubsub, nats or redis), with the broker variables a sidecar uses")?;
    let spec = TransportSpec::from_env(&kind, get).map_err(|e| e.to_string())?;
    // Queue names come whole from the trigger metadata; the namespace only names this
    // connection's own objects.
    let namespace = get("ASYA_NAMESPACE")
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let mut connect = ConnectOptions::new(namespace);
    connect.consumer_name = format!("troupe-scaler-{}", connect.consumer_name);
    let mut options = ScalerOptions::default();
    if let Some(v) = &args.poll_interval {
        let d = troupe_protocol::duration::parse_go_duration(v.trim()).map_err(|e| {
            format!("--poll-interval '{v}' is not a duration ({e}); write e.g. 250ms")
        })?;
        if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
            return Err(format!(
                "--poll-interval {d:?} is out of range: use 10ms to 60s (default 250ms)"
            ));
        }
        options.poll_interval = d;
    }
    Ok(Startup {
        spec,
        connect,
        options,
    })
}

/// Runs the scaler until SIGTERM / Ctrl-C. Returns the exit code.
pub async fn run(args: Args) -> u8 {
    let env: HashMap<String, String> = std::env::vars().collect();
    let Startup {
        spec,
        connect,
        options,
    } = match configure(&args, &|k| env.get(k).cloned()) {
        Ok(s) => s,
        Err(message) => {
            eprintln!("troupe scaler: {message}");
            return 2;
        }
    };
    let shutdown = crate::signals::terminated();
    match serve(&args.listen, &spec, connect, options, shutdown).await {
        Ok(()) => 0,
        Err(Failure::Setup(message)) => {
            eprintln!("troupe scaler: {message}");
            2
        }
        Err(Failure::Run(message)) => {
            eprintln!("troupe scaler: {message}");
            1
        }
    }
}

/// Why the scaler stopped: settings the user must fix, or a broker/server failure.
pub enum Failure {
    /// The address cannot be listened on.
    Setup(String),
    /// The broker refused the connection or the server failed.
    Run(String),
}

/// Listens on `listen`, connects to the broker and serves the scaler until `shutdown`
/// (`troupe scaler`, and every `troupe operator` replica).
pub async fn serve(
    listen: &str,
    spec: &TransportSpec,
    connect: ConnectOptions,
    options: ScalerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Failure::Setup(format!(
            "cannot listen on {listen}: {e}; pick a free host:port for the scaler"
        ))
    })?;
    let transport = spec
        .connect(connect)
        .await
        .map_err(|e| Failure::Run(e.to_string()))?;
    let result =
        troupe_scaler::serve_with_shutdown(listener, transport.clone(), options, shutdown).await;
    transport.close().await;
    result.map_err(|e| Failure::Run(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn start(pairs: &[(&str, &str)], poll: Option<&str>) -> Result<Startup, String> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let args = Args {
            listen: "127.0.0.1:0".into(),
            poll_interval: poll.map(str::to_owned),
        };
        configure(&args, &|k| env.get(k).cloned())
    }

    #[test]
    fn the_broker_comes_from_the_sidecar_variables() {
        let s = start(
            &[
                ("ASYA_TRANSPORT", "redis"),
                ("TROUPE_REDIS_URL", "redis://r:6379/0"),
                ("ASYA_NAMESPACE", "prod"),
            ],
            Some("100ms"),
        )
        .unwrap();
        assert_eq!(
            s.spec,
            TransportSpec::Redis {
                url: "redis://r:6379/0".into()
            }
        );
        assert_eq!(s.connect.namespace, "prod");
        assert_eq!(s.options.poll_interval, Duration::from_millis(100));
        let d = start(
            &[
                ("ASYA_TRANSPORT", "rabbitmq"),
                ("ASYA_RABBITMQ_URL", "amqp://u:p@h:5672/%2f"),
            ],
            None,
        )
        .unwrap();
        assert!(matches!(d.spec, TransportSpec::RabbitMq { .. }));
        assert_eq!(d.connect.namespace, "default");
        assert_eq!(d.options.poll_interval, Duration::from_millis(250));
    }

    #[test]
    fn missing_or_bad_settings_say_what_to_set() {
        let e = start(&[], None).unwrap_err();
        assert!(e.contains("ASYA_TRANSPORT is required"), "{e}");
        let e = start(&[("ASYA_TRANSPORT", "redis")], None).unwrap_err();
        assert!(e.contains("TROUPE_REDIS_URL"), "{e}");
        let redis = [
            ("ASYA_TRANSPORT", "redis"),
            ("TROUPE_REDIS_URL", "redis://r:6379/0"),
        ];
        let e = start(&redis, Some("soon")).unwrap_err();
        assert!(e.contains("--poll-interval 'soon'"), "{e}");
        let e = start(&redis, Some("1ms")).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }
}
