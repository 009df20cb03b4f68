//! Log setup: text or JSON lines on stderr, level from `--log-level`.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Log targets of this project (crate names); everything else logs at warn.
const OUR_CRATES: &[&str] = &[
    "troupe",
    "troupe_cli",
    "troupe_mesh",
    "troupe_engine",
    "troupe_runtime",
    "troupe_gateway",
    "troupe_mcp",
    "troupe_a2a",
    "troupe_crew",
    "troupe_sidecar",
    "troupe_transports",
    "troupe_transport_embedded",
    "troupe_transport_rabbitmq",
    "troupe_transport_sqs",
    "troupe_transport_pubsub",
    "troupe_transport_nats",
    "troupe_transport_redis",
];

/// The log level: `--log-level` / `TROUPE_LOG_LEVEL` when given, else, for the pod
/// containers (`sidecar`), §15's `ASYA_LOG_LEVEL` (`DEBUG`, `INFO`, `WARN`/`WARNING`,
/// `ERROR`), else `info`.
pub fn level(flag: Option<&str>, asya: Option<&str>, pod: bool) -> String {
    let chosen = flag
        .or(asya.filter(|_| pod))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("info")
        .to_ascii_lowercase();
    if chosen == "warning" {
        "warn".to_owned()
    } else {
        chosen
    }
}

/// Installs the global subscriber.
pub fn init(level: &str, format: Format) -> Result<(), String> {
    let level = level.to_ascii_lowercase();
    if !matches!(
        level.as_str(),
        "error" | "warn" | "info" | "debug" | "trace"
    ) {
        return Err(format!(
            "invalid --log-level '{level}': use error, warn, info, debug or trace"
        ));
    }
    // Dependencies stay at warn unless the user asks for trace.
    let deps = if level == "trace" { "trace" } else { "warn" };
    let ours: String = OUR_CRATES.iter().map(|c| format!(",{c}={level}")).collect();
    let filter = EnvFilter::try_new(format!("{deps}{ours}")).map_err(|e| e.to_string())?;
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match format {
        Format::Text => builder.try_init(),
        Format::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| e.to_string())
}
