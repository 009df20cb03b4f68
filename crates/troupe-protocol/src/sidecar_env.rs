//! The sidecar's environment variables (protocol.md §15, platform.md §3): one table that the
//! renderer writes and `troupe sidecar` reads, so a name cannot differ between the two.
//!
//! Transport variables (`ASYA_RABBITMQ_*`, `ASYA_SQS_*`, ...) belong to each transport's
//! config and are not listed here.

/// One variable: its name and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets, with its default.
    pub doc: &'static str,
}

macro_rules! vars {
    ($($(#[$meta:meta])* $id:ident = $name:literal, $doc:literal;)*) => {
        $($(#[$meta])* #[doc = $doc] pub const $id: &str = $name;)*
        /// Every variable the sidecar reads, in the order of protocol.md §15.
        pub const ALL: &[Var] = &[$(Var { name: $name, doc: $doc }),*];
    };
}

vars! {
    ACTOR_NAME = "ASYA_ACTOR_NAME", "The actor whose queue the sidecar consumes (required).";
    NAMESPACE = "ASYA_NAMESPACE", "Queue namespace (required).";
    TRANSPORT = "ASYA_TRANSPORT", "Transport name (default rabbitmq).";
    SOCKET_DIR = "ASYA_SOCKET_DIR", "Folder of the runtime socket (default /var/run/asya).";
    ACTOR_SINK = "ASYA_ACTOR_SINK", "Actor that receives finished envelopes (default x-sink).";
    ACTOR_SUMP = "ASYA_ACTOR_SUMP", "Actor that receives failed envelopes (default x-sump).";
    IS_END_ACTOR = "ASYA_IS_END_ACTOR", "A Python end actor runs behind the runtime (default false).";
    RESILIENCY_ACTOR_TIMEOUT = "ASYA_RESILIENCY_ACTOR_TIMEOUT", "Per-call timeout, Go duration (default 5m).";
    RESILIENCY_POLICIES = "ASYA_RESILIENCY_POLICIES", "Retry policies by name, JSON.";
    RESILIENCY_RULES = "ASYA_RESILIENCY_RULES", "Rules choosing a policy by error type, JSON list.";
    GATEWAY_URL = "ASYA_GATEWAY_URL", "Gateway the sidecar reports progress to (optional).";
    GATEWAY_READY_TIMEOUT = "ASYA_GATEWAY_READY_TIMEOUT", "Validated only: the sidecar does not wait for the gateway (default 5m).";
    RUNTIME_READY_TIMEOUT = "ASYA_RUNTIME_READY_TIMEOUT", "How long to wait for the runtime socket (default 5m).";
    METRICS_ENABLED = "ASYA_METRICS_ENABLED", "Serve /metrics (default true).";
    METRICS_ADDR = "ASYA_METRICS_ADDR", "Metrics and probe listener (default :8080).";
    METRICS_NAMESPACE = "ASYA_METRICS_NAMESPACE", "Metric name prefix (default asya_actor).";
    CUSTOM_METRICS = "ASYA_CUSTOM_METRICS", "Custom metric definitions (accepted, not acted on).";
    HANDLER_MODE = "ASYA_HANDLER_MODE", "Only payload (deprecated) is accepted.";
    RABBITMQ_PREFETCH = "ASYA_RABBITMQ_PREFETCH", "Lowest broker prefetch (default 1).";
    OTEL_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT", "OTLP trace endpoint (accepted, not exported yet).";
    OTEL_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL", "OTLP protocol (accepted, not exported yet).";
    CREW = "TROUPE_CREW", "Run this crew actor natively: x-sink, x-sump, x-pause, x-resume or fan-in.";
    CONCURRENCY = "TROUPE_CONCURRENCY", "In-flight messages per sidecar (default 1).";
    PIPELINE = "TROUPE_PIPELINE", "Messages per worker settling behind the one in the handler.";
    SHUTDOWN_GRACE = "TROUPE_SHUTDOWN_GRACE", "Grace period for in-flight messages on SIGTERM (default 30s).";
    GATEWAY_ALLOWED_HOSTS = "TROUPE_GATEWAY_ALLOWED_HOSTS", "Hosts the gateway token may be sent to, comma-separated.";
    GATEWAY_TOKEN = "TROUPE_GATEWAY_TOKEN", "Bearer token for the gateway's mesh API.";
    PERSISTENCE_MOUNT = "ASYA_PERSISTENCE_MOUNT", "Crew: folder where x-sink, x-sump and x-pause keep tasks.";
    SINK_HOOKS = "ASYA_SINK_HOOKS", "Crew: actors run after x-sink, comma-separated.";
    SINK_FANOUT_HOOKS = "ASYA_SINK_FANOUT_HOOKS", "Crew: also run the hooks for fan-out children (default false).";
    PAUSE_METADATA = "ASYA_PAUSE_METADATA", "Crew: x-pause's prompt and fields, JSON.";
    RESUME_MERGE_MODE = "ASYA_RESUME_MERGE_MODE", "Crew: how x-resume merges the input, shallow or deep.";
    FANIN_TIMEOUT = "TROUPE_FANIN_TIMEOUT", "Crew: how long fan-in waits for an origin's missing slices before failing it, Go duration (default 10m).";
}

/// Variables of the runtime container that the renderer sets (platform.md §3).
pub mod runtime {
    /// Handler the runtime imports (`spec.handler`).
    pub const HANDLER: &str = "ASYA_HANDLER";
    /// Folder of the runtime socket.
    pub const SOCKET_DIR: &str = super::SOCKET_DIR;
    /// State-proxy mounts (JSON), when the actor has any.
    pub const STATE_PROXY_MOUNTS: &str = "ASYA_STATE_PROXY_MOUNTS";
    /// `false` for crew runtimes.
    pub const ENABLE_VALIDATION: &str = "ASYA_ENABLE_VALIDATION";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_upper_case() {
        let mut names: Vec<&str> = ALL.iter().map(|v| v.name).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_uppercase() || c == '_')));
        names.sort_unstable();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len);
        assert_eq!(ALL[0].name, ACTOR_NAME);
    }
}
