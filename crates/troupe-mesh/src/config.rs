//! The mesh file read by `troupe up`: parsing, defaults and validation.
//!
//! # Formats
//!
//! **Mesh file** (`troupe.yaml`), one YAML document:
//!
//! ```yaml
//! namespace: default          # queue namespace (DNS label)
//! state_dir: .troupe          # relative to the mesh file's folder
//! python: python3             # interpreter for runtimes (a path with a folder part, such as
//!                             # .venv/bin/python, is relative to the mesh file's folder)
//! runtime: asya_runtime.py    # optional: a runtime .py file run instead of the built-in one
//!                             # (relative to the mesh file's folder; also per actor)
//! transport: embedded         # or a broker URL: amqp://…, sqs://…, pubsub://…, nats://…, redis://…
//! fsync: never                 # embedded queue: never | always | <duration> (power-loss durability)
//! gateway: {listen: "127.0.0.1:0", api_key: …, cors_origins: [https://app.example],
//!           trusted_hosts: [troupe.local], mcp: {…}, a2a: {…}}
//! actors:                     # AsyncActor spec fields (platform.md §2), `image` optional
//!   - actor: preprocess
//!     handler: pipeline.preprocess
//!     concurrency: 1          # Troupe extension (TROUPE_CONCURRENCY)
//!     pipeline: 4             # Troupe extension (TROUPE_PIPELINE): most messages settling per worker
//!   - actor: merge            # a crew actor run inside troupe: no handler, no runtime
//!     crew: fan-in            # the fan-in aggregator (protocol.md §14.4)
//!     fanIn: {timeout: 10m}   # fail an origin whose slices are still missing after this
//! crew: {sink_hooks: [], sink_fanout_hooks: false, pause_metadata: {...}, resume_merge_mode: shallow,
//!        persist_results: true}
//! flows:                      # see config/flows.rs
//!   - {name: research, source: flows.py:research}
//!   - {name: text, route: [clean, analyse, summarize]}
//! ```
//!
//! **Kubernetes manifests**: several documents, each `apiVersion: asya.sh/v1alpha1`,
//! `kind: AsyncActor` with `metadata` and `spec` (`status` is tolerated so `kubectl get -o yaml`
//! output works). The *first* document may instead be a mesh document — one without `kind`, or
//! with `kind: Mesh` (and any `apiVersion`) — carrying the top-level settings above (and
//! optionally `actors`); without it every setting takes its default. Documents of other kinds
//! are skipped with a warning; empty documents are skipped silently.
//!
//! # Diagnostics
//!
//! Every problem found is collected (not only the first) as a [`ConfigError`] rendered as
//! `file:line:column: field.path: message`; positions come from the YAML parser itself (see
//! `Locator`), so flow mappings (`{a: 1}`) are located as precisely as block ones. Unknown
//! fields are errors; the allowed names of an actor's fields come from the AsyncActor types
//! (`troupe_resource::fields`), and each checked actor is then read through
//! [`AsyncActorSpec`] (kept as [`ActorConfig::spec`]), whose own errors are located through
//! their serde path. Warnings, in the same format, cover settings without local effect
//! (`resources`, `flavors`, `scaling.advanced`, ...), resiliency rules naming an undefined
//! policy (skipped, as the sidecar does), and sink hooks or `onExhausted` targets that are not
//! actors of the mesh. Handler importability is not checked here.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use troupe_crew::MergeMode;
use troupe_protocol::duration::parse_go_duration;
use troupe_protocol::resiliency::Resiliency;
use troupe_resource::{fields, AsyncActorSpec};

mod flows;
pub use flows::{FlowBody, FlowEntry};

/// A Kubernetes memory quantity (`256Mi`, `1Gi`, `500M`, `1e9`, `1048576`) in bytes.
pub fn parse_memory_quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    let bytes = (number * factor).round();
    // The cast saturates; the guard keeps a NaN or an absurd exponent out.
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// File name looked up when `troupe up` is given a folder.
pub const MESH_FILE_NAME: &str = "troupe.yaml";

/// Actor names reserved for the crew; user actors may not take them.
pub const RESERVED_ACTORS: [&str; 4] = ["x-sink", "x-sump", "x-pause", "x-resume"];

/// `apiVersion` of AsyncActor documents.
pub const ASYNC_ACTOR_API_VERSION: &str = troupe_resource::API_VERSION;

/// Default `resiliency.actorTimeout` (platform.md §2).
pub const DEFAULT_ACTOR_TIMEOUT: Duration = Duration::from_secs(300);

/// Default gateway listener: loopback, any free port.
pub const DEFAULT_GATEWAY_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

const MESH_FIELDS: &[&str] = &[
    "namespace",
    "state_dir",
    "python",
    "transport",
    "fsync",
    "gateway",
    "actors",
    "flows",
    "crew",
    "kind",
    "apiVersion",
    "runtime",
];

/// Actor fields accepted for Kubernetes compatibility but without local effect, with the advice
/// given in the warning.
const IGNORED_ACTOR_FIELDS: &[(&str, &str)] = &[
    (
        "secretRefs",
        "secrets exist only on Kubernetes; put the values under env for local runs",
    ),
    ("tolerations", "pod scheduling applies only on Kubernetes"),
    ("nodeSelector", "pod scheduling applies only on Kubernetes"),
    (
        "volumes",
        "pod volumes apply only on Kubernetes; handlers see the local filesystem",
    ),
    (
        "volumeMounts",
        "pod volumes apply only on Kubernetes; handlers see the local filesystem",
    ),
    ("initContainers", "extra containers run only on Kubernetes"),
    ("sidecars", "extra containers run only on Kubernetes"),
    (
        "flavors",
        "flavors are not resolved locally; inline the settings you need in this actor",
    ),
    ("tracing", "troupe up exports no traces"),
    (
        "stateProxy",
        "state-proxy connectors do not run locally; handlers see the local filesystem",
    ),
    (
        "compositionRef",
        "troupe up picks its transport from the mesh file's `transport:`",
    ),
    ("sidecar", "troupe up runs the sidecar in-process"),
    ("compositionRevisionRef", CROSSPLANE),
    ("compositionSelector", CROSSPLANE),
    ("compositionUpdatePolicy", CROSSPLANE),
    ("compositeDeletePolicy", CROSSPLANE),
    ("resourceRef", CROSSPLANE),
    ("writeConnectionSecretToRef", CROSSPLANE),
];

/// Advice for the Crossplane claim fields of Asya's AsyncActors.
const CROSSPLANE: &str = "a Crossplane claim field of Asya's AsyncActors, kept for Kubernetes";

const GATEWAY_FIELDS: &[&str] = &[
    "listen",
    "store",
    "backstop_interval",
    "api_key",
    "cors_origins",
    "trusted_hosts",
    "mcp",
    "a2a",
];
const MCP_FIELDS: &[&str] = &["listen", "tools_dir", "poll_interval", "api_key", "tools"];
const A2A_FIELDS: &[&str] = &[
    "listen",
    "agents_dir",
    "poll_interval",
    "name",
    "description",
    "version",
    "public_url",
    "provider_org",
    "provider_url",
    "api_key",
    "jwt_jwks_url",
    "jwt_issuer",
    "jwt_audience",
    "agents",
];
const CREW_FIELDS: &[&str] = &[
    "sink_hooks",
    "sink_fanout_hooks",
    "pause_metadata",
    "resume_merge_mode",
    "persist_results",
];

/// A parsed and validated mesh.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    /// Absolute path of the mesh file.
    pub file: PathBuf,
    /// Absolute folder of the mesh file; relative paths in it are resolved against it.
    pub root: PathBuf,
    /// Queue namespace (`ASYA_NAMESPACE`).
    pub namespace: String,
    /// Absolute state folder.
    pub state_dir: PathBuf,
    /// Default interpreter for runtimes.
    pub python: String,
    /// `runtime:` a runtime file run instead of the built-in one (absolute; checked to
    /// exist when the file was read).
    pub runtime: Option<PathBuf>,
    /// `embedded` (default) or a broker URL (`amqp://…`, `sqs://…`, `pubsub://…`,
    /// `nats://…`, `redis://…`).
    pub transport: String,
    /// When the embedded queue flushes to stable storage (`fsync: never | always |
    /// <duration>`; default never: survives process crashes, not power loss).
    pub fsync: troupe_transport_embedded::FsyncPolicy,
    /// Address of the control/mesh API listener (port 0 = any free port).
    pub gateway_listen: SocketAddr,
    /// The rest of the `gateway:` section: store and adapters.
    pub gateway: GatewaySettings,
    /// User actors in file order.
    pub actors: Vec<ActorConfig>,
    /// `flows:` in file order (compiled when the mesh starts).
    pub flows: Vec<FlowEntry>,
    /// Crew settings.
    pub crew: CrewSettings,
}

/// One user actor.
#[derive(Debug, Clone, PartialEq)]
pub struct ActorConfig {
    /// Actor name (DNS label, also its queue name).
    pub name: String,
    /// `ASYA_HANDLER`.
    pub handler: String,
    /// Interpreter (`pythonExecutable`, else the mesh's `python`).
    pub python: String,
    /// Runtime file (`runtime`, else the mesh's `runtime`; `None` = the built-in one).
    pub runtime: Option<PathBuf>,
    /// Runtime environment in file order.
    pub env: Vec<(String, String)>,
    /// Replica settings.
    pub scaling: Scaling,
    /// Per-call runtime timeout (`resiliency.actorTimeout`).
    pub actor_timeout: Duration,
    /// Parsed retry policies and rules; `None` when neither is configured.
    pub resiliency: Option<Resiliency>,
    /// `resiliency.policies` as written, as JSON (`ASYA_RESILIENCY_POLICIES`).
    pub policies_json: Option<serde_json::Value>,
    /// `resiliency.rules` as written, as JSON (`ASYA_RESILIENCY_RULES`).
    pub rules_json: Option<serde_json::Value>,
    /// In-flight messages per sidecar (`TROUPE_CONCURRENCY`).
    pub concurrency: usize,
    /// Messages per worker settling behind the one in the handler (`TROUPE_PIPELINE`).
    pub pipeline: usize,
    /// 1-based line of the actor's `actor` field in the mesh file.
    pub line: usize,
    /// The actor as written, read through the AsyncActor types (what `troupe render` and
    /// the operator use); the fields above are its local interpretation.
    pub spec: AsyncActorSpec,
    /// `crew: fan-in`: a crew handler run inside the mesh, with no runtime (`handler` is
    /// then empty).
    pub crew: Option<CrewActor>,
}

/// A crew actor declared among the actors of the mesh file (`crew:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrewActor {
    /// The fan-in aggregator (protocol.md §14.4) and how long an origin waits for its
    /// missing slices (`fanIn.timeout`, default 10m).
    FanIn {
        /// `fanIn.timeout`.
        timeout: Duration,
    },
}

impl ActorConfig {
    /// A `crew: fan-in` actor named `name`, as the mesh file declares it with
    /// `- {actor: NAME, crew: fan-in, fanIn: {timeout: …}}` (`None`: the default timeout).
    /// For compilers that add fan-in actors to a mesh (flows).
    pub fn fan_in(name: impl Into<String>, timeout: Option<Duration>) -> ActorConfig {
        let name = name.into();
        let spec = AsyncActorSpec {
            actor: name.clone(),
            crew: Some(troupe_resource::CrewRole::FanIn),
            fan_in: timeout.map(|t| troupe_resource::FanInSpec {
                timeout: Some(troupe_protocol::duration::format_go_duration(t)),
            }),
            ..AsyncActorSpec::default()
        };
        ActorConfig {
            name,
            handler: String::new(),
            python: String::new(),
            runtime: None,
            env: Vec::new(),
            // Like the crew: one replica, always on (the mesh runs it in-process).
            scaling: Scaling {
                enabled: false,
                ..Scaling::default()
            },
            actor_timeout: DEFAULT_ACTOR_TIMEOUT,
            resiliency: None,
            policies_json: None,
            rules_json: None,
            concurrency: 1,
            pipeline: troupe_engine::settings::DEFAULT_PIPELINE,
            line: 0,
            spec,
            crew: Some(CrewActor::FanIn {
                timeout: timeout.unwrap_or(troupe_crew::DEFAULT_FANIN_TIMEOUT),
            }),
        }
    }
}

/// Replica settings of an actor (platform.md §2 `scaling`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaling {
    /// Autoscale on queue length; false → run exactly `replicas`.
    pub enabled: bool,
    /// `minReplicaCount`.
    pub min: u32,
    /// `maxReplicaCount`.
    pub max: u32,
    /// `pollingInterval`.
    pub polling_interval: Duration,
    /// `cooldownPeriod`.
    pub cooldown: Duration,
    /// `queueLength`: messages per replica.
    pub queue_length: u32,
    /// Fixed replica count used when `enabled` is false.
    pub replicas: u32,
}

impl Default for Scaling {
    fn default() -> Self {
        Self {
            enabled: true,
            min: 0,
            max: 10,
            polling_interval: Duration::from_secs(30),
            cooldown: Duration::from_secs(300),
            queue_length: 5,
            replicas: 1,
        }
    }
}

/// Where the gateway keeps its tasks (`gateway.store`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GatewayStore {
    /// `{state_dir}/gateway.db` (default).
    #[default]
    Sqlite,
    /// In memory: tasks are lost when the mesh stops.
    Memory,
    /// A PostgreSQL URL (`postgres://…`), shared with `troupe gateway` replicas.
    Postgres(String),
}

/// `gateway:` settings besides `listen`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewaySettings {
    /// Task store.
    pub store: GatewayStore,
    /// SLA backstop period (`ASYA_BACKSTOP_INTERVAL`); `None` = the gateway default (5 s).
    pub backstop_interval: Option<Duration>,
    /// MCP adapter settings (`gateway.mcp`).
    pub mcp: AdapterSettings,
    /// A2A adapter settings (`gateway.a2a`).
    pub a2a: AdapterSettings,
    /// Key for the mesh API (`gateway.api_key`); the adapters' keys are accepted too.
    pub api_key: Option<String>,
    /// Browser origins allowed to call (`gateway.cors_origins`), e.g. `https://app.example`.
    pub cors_origins: Vec<String>,
    /// Extra `Host` names a loopback listener accepts (`gateway.trusted_hosts`), e.g. the
    /// name a local reverse proxy forwards.
    pub trusted_hosts: Vec<String>,
}

/// One adapter (MCP or A2A) of the gateway.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdapterSettings {
    /// Own listener; `None` serves the adapter on the mesh API listener.
    pub listen: Option<SocketAddr>,
    /// Registry folder (`tools_dir` / `agents_dir`), absolute.
    pub registry_dir: Option<PathBuf>,
    /// Registry re-read period.
    pub poll_interval: Option<Duration>,
    /// Entries declared inline (`tools:` / `agents:`), as JSON.
    pub inline: Vec<serde_json::Value>,
    /// Other string settings (`api_key`, A2A card and JWT fields) by field name.
    pub options: std::collections::BTreeMap<String, String>,
}

/// Crew settings (`crew:` section).
#[derive(Debug, Clone, PartialEq)]
pub struct CrewSettings {
    /// x-sink / x-sump write `succeeded/`, `failed/` under the state dir (default
    /// true; `troupe result` reads them). Paused tasks are always persisted.
    pub persist_results: bool,
    /// `ASYA_SINK_HOOKS`: actors run after x-sink, in order.
    pub sink_hooks: Vec<String>,
    /// `ASYA_SINK_FANOUT_HOOKS`: also run hooks for fan-out children.
    pub sink_fanout_hooks: bool,
    /// `ASYA_PAUSE_METADATA` as JSON; `None` = x-pause's default.
    pub pause_metadata: Option<serde_json::Value>,
    /// `ASYA_RESUME_MERGE_MODE`.
    pub resume_merge_mode: MergeMode,
}

impl Default for CrewSettings {
    fn default() -> Self {
        Self {
            persist_results: true,
            sink_hooks: Vec::new(),
            sink_fanout_hooks: false,
            pause_metadata: None,
            resume_merge_mode: MergeMode::default(),
        }
    }
}

/// One problem in a mesh file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The mesh file as the user named it.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no position (unreadable file).
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// Field path such as `actors[1].resiliency.actorTimeout`; empty for the whole file.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut out = self.file.display().to_string();
        if self.line > 0 {
            out.push_str(&format!(":{}", self.line));
            if self.column > 0 {
                out.push_str(&format!(":{}", self.column));
            }
        }
        out.push_str(": ");
        if !self.field.is_empty() {
            out.push_str(&self.field);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Every problem found in a mesh file, sorted by position; displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl MeshConfig {
    /// Loads a mesh from a file, or from `troupe.yaml` inside `path` when it is a folder.
    /// Returns the mesh and warnings (rendered like errors) about settings without local effect.
    pub fn load(path: &Path) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
        Self::load_as(path, Use::Local)
    }

    /// As [`MeshConfig::load`], for Kubernetes (`troupe render`): settings only a cluster can
    /// resolve (an env entry's `valueFrom`) are accepted, kept in each actor's `spec`.
    pub fn load_for_kubernetes(path: &Path) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
        Self::load_as(path, Use::Kubernetes)
    }

    fn load_as(path: &Path, use_: Use) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
        let file = if path.is_dir() {
            path.join(MESH_FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let shown = display_path(&file);
        let source = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) => {
                let message = if path.is_dir() && e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "no {MESH_FILE_NAME} in this folder: create one, or pass the mesh file's path"
                    )
                } else {
                    format!("cannot read the mesh file: {e}")
                };
                return Err(ConfigErrors(vec![ConfigError {
                    file: shown,
                    line: 0,
                    column: 0,
                    field: String::new(),
                    message,
                }]));
            }
        };
        parse_source(&file, shown, &source, use_)
    }

    /// Parses mesh file text as if read from `file` (which only names it and anchors relative
    /// paths; it is not read).
    pub fn from_source(
        file: &Path,
        source: &str,
    ) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
        parse_source(file, display_path(file), source, Use::Local)
    }

    /// As [`MeshConfig::from_source`], for Kubernetes (see [`MeshConfig::load_for_kubernetes`]).
    pub fn from_source_for_kubernetes(
        file: &Path,
        source: &str,
    ) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
        parse_source(file, display_path(file), source, Use::Kubernetes)
    }

    /// The actor named `name`.
    pub fn actor(&self, name: &str) -> Option<&ActorConfig> {
        self.actors.iter().find(|a| a.name == name)
    }
}

/// The path as the user wrote it, minus a leading `./`.
fn display_path(p: &Path) -> PathBuf {
    let mut comps = p.components().peekable();
    if comps.peek() == Some(&Component::CurDir) && p.components().count() > 1 {
        comps.next();
    }
    comps.collect()
}

/// Who reads the mesh file: `troupe up` runs it here; `troupe render` writes it for a
/// cluster, which resolves what cannot be resolved here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Local,
    Kubernetes,
}

fn parse_source(
    file: &Path,
    shown: PathBuf,
    source: &str,
    use_: Use,
) -> Result<(MeshConfig, Vec<String>), ConfigErrors> {
    let file_abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let root = file_abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));

    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(source) {
        match Value::deserialize(de) {
            Ok(v) => docs.push(v),
            Err(e) => {
                let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
                return Err(ConfigErrors(vec![ConfigError {
                    file: shown,
                    line,
                    column,
                    field: String::new(),
                    message: format!(
                        "YAML syntax error: {}; fix the YAML (check indentation, quoting and duplicate keys)",
                        strip_position(&e.to_string())
                    ),
                }]));
            }
        }
    }

    let mut ck = Checker {
        locator: Locator::new(source),
        doc: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
        use_,
    };
    let mesh = ck.mesh(&docs, file_abs, root);

    let resolve = |notes: Vec<Note>, loc: &mut Locator<'_>| -> Vec<ConfigError> {
        let mut out: Vec<ConfigError> = notes
            .into_iter()
            .map(|n| {
                let (line, column) = loc.locate(n.doc, &n.path).unwrap_or((0, 0));
                ConfigError {
                    file: shown.clone(),
                    line,
                    column,
                    field: n.path.to_string(),
                    message: n.message,
                }
            })
            .collect();
        out.sort_by_key(|e| (e.line, e.column));
        out
    };
    let warnings = resolve(std::mem::take(&mut ck.warnings), &mut ck.locator);
    let errors = resolve(std::mem::take(&mut ck.errors), &mut ck.locator);
    if errors.is_empty() {
        Ok((mesh, warnings.iter().map(ToString::to_string).collect()))
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Removes the " at line L column C" that serde_yaml puts into its messages; the position is
/// reported separately.
fn strip_position(msg: &str) -> String {
    let Some(start) = msg.find(" at line ") else {
        return msg.to_string();
    };
    let rest = &msg[start + " at line ".len()..];
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest
        .strip_prefix(" column ")
        .map_or(rest, |r| r.trim_start_matches(|c: char| c.is_ascii_digit()));
    format!("{}{rest}", &msg[..start])
}

// ---------------------------------------------------------------------------------------------
// Field paths and locations

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path from a document's root, displayed as `actors[1].scaling.queueLength`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct FieldPath(Vec<Seg>);

impl FieldPath {
    fn key(&self, k: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        Self(v)
    }

    fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        Self(v)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Finds where a field path sits in the source.
///
/// `serde_yaml::Value` has no positions, but serde_yaml stamps every error raised inside a
/// `Deserialize` impl with the position of the YAML node being read. Two walks use that:
///
/// - [`probe`] walks one document down a path and deliberately fails at the target key (or
///   sequence item); when the path does not exist it fails at the deepest node that does,
///   which is the right place to report a missing field. Exact, but one parse per lookup.
/// - [`build_index`] walks every document once, failing on each key and scalar item and
///   carrying on (safe there: the scalar event is already consumed), reading positions from
///   the error text. It answers most lookups (actor lines, field errors) so that a large
///   mesh is not re-parsed once per actor; anything it lacks falls back to the probe.
struct Locator<'s> {
    src: &'s str,
    index: Option<HashMap<(usize, FieldPath), (usize, usize)>>,
    cache: HashMap<(usize, FieldPath), Option<(usize, usize)>>,
}

impl<'s> Locator<'s> {
    fn new(src: &'s str) -> Self {
        Self {
            src,
            index: None,
            cache: HashMap::new(),
        }
    }

    /// 1-based (line, column) of `path` in document `doc`.
    fn locate(&mut self, doc: usize, path: &FieldPath) -> Option<(usize, usize)> {
        let src = self.src;
        let key = (doc, path.clone());
        if let Some(pos) = self.index.get_or_insert_with(|| build_index(src)).get(&key) {
            return Some(*pos);
        }
        *self
            .cache
            .entry(key)
            .or_insert_with(|| probe(src, doc, &path.0))
    }
}

/// Marks the errors raised by [`build_index`]; the key text sits between two of them.
const INDEX_MARK: char = '\u{1}';

fn build_index(src: &str) -> HashMap<(usize, FieldPath), (usize, usize)> {
    let mut index = HashMap::new();
    for (doc, de) in serde_yaml::Deserializer::from_str(src).enumerate() {
        let mut found = Vec::new();
        // A failure only leaves this document partly indexed; lookups then use the probe.
        let _ = IndexSeed {
            found: &mut found,
            path: FieldPath::default(),
        }
        .deserialize(de);
        index.extend(found.into_iter().map(|(p, pos)| ((doc, p), pos)));
    }
    index
}

/// Reads an error raised by the index walk: `Some(position)` when it is one of ours, with
/// `None` inside when its position cannot be read (then it is not recorded).
fn index_mark(err: &impl fmt::Display) -> Option<(String, Option<(usize, usize)>)> {
    let text = err.to_string();
    let start = text.find(INDEX_MARK)? + INDEX_MARK.len_utf8();
    let len = text[start..].find(INDEX_MARK)?;
    let key = text[start..start + len].to_string();
    let rest = &text[start + len + INDEX_MARK.len_utf8()..];
    // serde_yaml omits the suffix at line 1 column 1, but an absent suffix could also mean
    // another format: leave such keys to the probe.
    let pos = rest.strip_prefix(" at line ").and_then(|r| {
        let (line, col) = r.split_once(" column ")?;
        Some((line.parse().ok()?, col.parse().ok()?))
    });
    Some((key, pos))
}

fn mark_error<E: de::Error>(key: &str) -> E {
    E::custom(format!("{INDEX_MARK}{key}{INDEX_MARK}"))
}

struct IndexSeed<'f> {
    found: &'f mut Vec<(FieldPath, (usize, usize))>,
    path: FieldPath,
}

impl<'de> DeserializeSeed<'de> for IndexSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IndexSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        loop {
            let key = match map.next_key_seed(KeyMark) {
                Ok(None) => return Ok(()),
                // A complex key, already skipped.
                Ok(Some(())) => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Err(e) => match index_mark(&e) {
                    Some((key, pos)) => {
                        let path = self.path.key(&key);
                        if let Some(pos) = pos {
                            self.found.push((path.clone(), pos));
                        }
                        path
                    }
                    None => return Err(e),
                },
            };
            let value = IndexSeed {
                found: &mut *self.found,
                path: key,
            };
            match map.next_value_seed(value) {
                Err(e) if index_mark(&e).is_none() => return Err(e),
                _ => {}
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            let item = IndexSeed {
                found: &mut *self.found,
                path: self.path.index(i),
            };
            match seq.next_element_seed(item) {
                Ok(None) => break,
                Ok(Some(())) => {}
                Err(e) => match index_mark(&e) {
                    Some((_, Some(pos))) => self.found.push((self.path.index(i), pos)),
                    Some((_, None)) => {}
                    None => return Err(e),
                },
            }
        }
        Ok(())
    }

    // Scalars fail so that the enclosing sequence learns the item's position.
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(mark_error(""))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(mark_error(""))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(mark_error(""))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(mark_error(""))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(mark_error(""))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(mark_error(""))
    }
}

/// Fails on a scalar key with its text (positioned there by serde_yaml); skips complex keys.
struct KeyMark;

impl<'de> DeserializeSeed<'de> for KeyMark {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyMark {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Err(mark_error(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        Err(mark_error(&v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        Err(mark_error(&v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        Err(mark_error(&v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        Err(mark_error(&v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

fn probe(src: &str, doc: usize, path: &[Seg]) -> Option<(usize, usize)> {
    let de = serde_yaml::Deserializer::from_str(src).nth(doc)?;
    match ProbeSeed(path).deserialize(de) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| (l.line(), l.column())),
    }
}

const PROBE_STOP: &str = "probe stop";

struct ProbeSeed<'p>(&'p [Seg]);

impl<'de> DeserializeSeed<'de> for ProbeSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(ProbeVisitor(self.0))
    }
}

/// Any error it returns (its own, or serde's "invalid type" for scalars) marks its position.
struct ProbeVisitor<'p>(&'p [Seg]);

impl<'de> Visitor<'de> for ProbeVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping or sequence on the probed path")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(PROBE_STOP));
        };
        let last = rest.is_empty();
        while let Some(hit) = map.next_key_seed(KeyProbe { want, last })? {
            if hit {
                map.next_value_seed(ProbeSeed(rest))?;
                return Err(de::Error::custom(PROBE_STOP));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(PROBE_STOP))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(n), rest)) = self.0.split_first() else {
            return Err(de::Error::custom(PROBE_STOP));
        };
        for _ in 0..*n {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(PROBE_STOP));
            }
        }
        seq.next_element_seed(ProbeSeed(rest))?;
        Err(de::Error::custom(PROBE_STOP))
    }
}

/// Reads a mapping key: `Ok(true)` when it is the wanted one (and more path follows), an error
/// positioned at the key when it is the wanted one and the path ends there.
struct KeyProbe<'w> {
    want: &'w str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if v != self.want {
            Ok(false)
        } else if self.last {
            Err(E::custom(PROBE_STOP))
        } else {
            Ok(true)
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// A finding not yet located.
struct Note {
    doc: usize,
    path: FieldPath,
    message: String,
}

/// Actor names referenced elsewhere (hooks, onExhausted) that must be checked once all actors
/// are known.
struct ActorRef {
    doc: usize,
    path: FieldPath,
    name: String,
    what: &'static str,
}

struct Checker<'s> {
    locator: Locator<'s>,
    /// Document currently being checked.
    doc: usize,
    errors: Vec<Note>,
    warnings: Vec<Note>,
    /// Who reads the file (what may be left to the cluster).
    use_: Use,
}

/// A mapping's recognised fields (null values count as absent).
struct Fields<'v>(Vec<(&'v str, &'v Value)>);

impl<'v> Fields<'v> {
    fn get(&self, name: &str) -> Option<&'v Value> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| untag(v))
            .filter(|v| !v.is_null())
    }
}

fn untag(mut v: &Value) -> &Value {
    while let Value::Tagged(t) = v {
        v = &t.value;
    }
    v
}

fn describe(v: &Value) -> String {
    match untag(v) {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(_) => "a tagged value".to_string(),
    }
}

impl Checker<'_> {
    fn error(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.errors.push(Note {
            doc: self.doc,
            path: path.clone(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.warnings.push(Note {
            doc: self.doc,
            path: path.clone(),
            message: message.into(),
        });
    }

    fn line_of(&mut self, doc: usize, path: &FieldPath) -> usize {
        self.locator.locate(doc, path).map_or(0, |(l, _)| l)
    }

    fn mapping<'v>(&mut self, v: &'v Value, p: &FieldPath, what: &str) -> Option<&'v Mapping> {
        match untag(v) {
            Value::Mapping(m) => Some(m),
            other => {
                self.error(
                    p,
                    format!(
                        "expected {what} (a mapping of key: value), found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    /// Checks a mapping's keys against `allowed` and returns the fields.
    fn fields<'v>(&mut self, m: &'v Mapping, p: &FieldPath, allowed: &[&str]) -> Fields<'v> {
        let mut out = Vec::new();
        for (k, v) in m {
            let Some(key) = untag(k).as_str() else {
                self.error(
                    p,
                    format!(
                        "field names must be strings, found {}; allowed fields: {}",
                        describe(k),
                        allowed.join(", ")
                    ),
                );
                continue;
            };
            if allowed.contains(&key) {
                out.push((key, v));
            } else {
                let hint = suggest(key, allowed)
                    .map(|s| format!("did you mean '{s}'? "))
                    .unwrap_or_default();
                self.error(
                    &p.key(key),
                    format!(
                        "unknown field '{key}'; {hint}allowed fields: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Fields(out)
    }

    fn string(&mut self, v: &Value, p: &FieldPath) -> Option<String> {
        match untag(v) {
            Value::String(s) => Some(s.clone()),
            other => {
                self.error(p, format!("expected a string, found {}", describe(other)));
                None
            }
        }
    }

    fn non_empty_string(&mut self, v: &Value, p: &FieldPath) -> Option<String> {
        let s = self.string(v, p)?;
        if s.trim().is_empty() {
            self.error(p, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// `runtime:`: an existing file, relative to the mesh file's folder.
    fn runtime_file(&mut self, v: &Value, p: &FieldPath, root: &Path) -> Option<PathBuf> {
        let text = self.non_empty_string(v, p)?;
        let path = root.join(text.trim());
        if path.is_file() {
            Some(path)
        } else {
            self.error(
                p,
                format!(
                    "runtime file {} does not exist: name a Python runtime file (such as a copy of Asya's asya_runtime.py), relative to the mesh file's folder, or remove the setting to use the built-in runtime",
                    path.display()
                ),
            );
            None
        }
    }

    fn uint(&mut self, v: &Value, p: &FieldPath) -> Option<u32> {
        let v = untag(v);
        if let Some(n) = v.as_u64() {
            if let Ok(n) = u32::try_from(n) {
                return Some(n);
            }
        }
        let hint = match v {
            Value::String(s) if s.trim().parse::<u64>().is_ok() => "; remove the quotes",
            _ => "",
        };
        self.error(
            p,
            format!(
                "expected a non-negative integer, found {}{hint}",
                describe(v)
            ),
        );
        None
    }

    fn boolean(&mut self, v: &Value, p: &FieldPath) -> Option<bool> {
        match untag(v) {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    p,
                    format!("expected true or false, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn seq<'v>(&mut self, v: &'v Value, p: &FieldPath) -> Option<&'v [Value]> {
        match untag(v) {
            Value::Sequence(s) => Some(s),
            other => {
                self.error(p, format!("expected a list, found {}", describe(other)));
                None
            }
        }
    }

    fn duration(&mut self, v: &Value, p: &FieldPath) -> Option<Duration> {
        let text = match untag(v) {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                self.error(
                    p,
                    format!(
                        "expected a Go duration such as 500ms, 30s or 5m, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        match parse_go_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(p, e.to_string());
                None
            }
        }
    }

    fn json(&mut self, v: &Value, p: &FieldPath) -> Option<serde_json::Value> {
        match serde_json::to_value(v) {
            Ok(j) => Some(j),
            Err(e) => {
                self.error(
                    p,
                    format!("cannot be represented as JSON ({e}); use string keys"),
                );
                None
            }
        }
    }

    fn actor_name(&mut self, v: &Value, p: &FieldPath) -> Option<String> {
        let name = self.string(v, p)?;
        if !is_dns_label(&name) {
            self.error(
                p,
                format!("invalid actor name '{name}': use a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"),
            );
            return None;
        }
        Some(name)
    }

    // -- documents ----------------------------------------------------------------------------

    fn mesh(&mut self, docs: &[Value], file: PathBuf, root: PathBuf) -> MeshConfig {
        let mut mesh = MeshConfig {
            file,
            root: root.clone(),
            namespace: "default".to_string(),
            state_dir: root.join(".troupe"),
            python: "python3".to_string(),
            runtime: None,
            transport: "embedded".to_string(),
            fsync: troupe_transport_embedded::FsyncPolicy::Never,
            gateway_listen: DEFAULT_GATEWAY_LISTEN,
            gateway: GatewaySettings::default(),
            actors: Vec::new(),
            flows: Vec::new(),
            crew: CrewSettings::default(),
        };
        let mut refs = Vec::new();
        // (document, path of the actor's spec in it, the spec)
        let mut actor_nodes: Vec<(usize, FieldPath, &Value)> = Vec::new();
        let mut mesh_doc: Option<(usize, &Mapping)> = None;
        let mut seen_content = false;

        for (i, doc) in docs.iter().enumerate() {
            self.doc = i;
            let doc = untag(doc);
            if doc.is_null() {
                continue;
            }
            let root_path = FieldPath::default();
            let Some(m) = self.mapping(doc, &root_path, "a mesh file or an AsyncActor document")
            else {
                seen_content = true;
                continue;
            };
            let kind = m.get("kind").map(untag);
            match (kind, kind.and_then(Value::as_str)) {
                (None, _) | (_, Some("Mesh")) => {
                    if seen_content {
                        let p = if kind.is_some() {
                            root_path.key("kind")
                        } else {
                            root_path
                        };
                        self.error(
                            &p,
                            "a mesh document (no kind, or kind: Mesh) must be the first document; give this document kind: AsyncActor and apiVersion: asya.sh/v1alpha1, or move it to the top",
                        );
                    } else {
                        mesh_doc = Some((i, m));
                    }
                }
                (_, Some("AsyncActor")) => {
                    let p = FieldPath::default();
                    // kube writes apiVersion and kind itself; the rest are the type's fields.
                    let allowed: Vec<&str> = ["apiVersion", "kind"]
                        .into_iter()
                        .chain(fields::of::<troupe_resource::AsyncActor>().iter().copied())
                        .collect();
                    let f = self.fields(m, &p, &allowed);
                    match f.get("apiVersion").and_then(Value::as_str) {
                        Some(ASYNC_ACTOR_API_VERSION) => {}
                        Some(other) => self.error(
                            &p.key("apiVersion"),
                            format!("unsupported apiVersion '{other}': set apiVersion: {ASYNC_ACTOR_API_VERSION}"),
                        ),
                        None => self.error(
                            &p.key("apiVersion"),
                            format!("missing apiVersion: add apiVersion: {ASYNC_ACTOR_API_VERSION}"),
                        ),
                    }
                    if let Some(md) = f.get("metadata") {
                        self.mapping(md, &p.key("metadata"), "metadata");
                    }
                    match f.get("spec") {
                        Some(spec) => actor_nodes.push((i, p.key("spec"), spec)),
                        None => self.error(
                            &p.key("spec"),
                            "missing spec: an AsyncActor needs spec with at least actor and handler",
                        ),
                    }
                }
                (_, Some(other)) => {
                    self.warn(
                        &root_path.key("kind"),
                        format!("document of kind '{other}' skipped: troupe up runs only AsyncActor documents (and an optional leading kind: Mesh)"),
                    );
                }
                (Some(k), None) => {
                    self.error(
                        &root_path.key("kind"),
                        format!("kind must be AsyncActor or Mesh, found {}", describe(k)),
                    );
                }
            }
            seen_content = true;
        }

        let mut mesh_actors: Option<&[Value]> = None;
        if let Some((i, m)) = mesh_doc {
            self.doc = i;
            mesh_actors = self.mesh_settings(m, &mut mesh, &mut refs);
        }
        if let (Some(actors), Some((i, _))) = (mesh_actors, mesh_doc) {
            let p = FieldPath::default().key("actors");
            for (n, a) in actors.iter().enumerate() {
                actor_nodes.push((i, p.index(n), a));
            }
        }
        actor_nodes.sort_by_key(|(doc, _, _)| *doc);

        if actor_nodes.is_empty() && mesh.flows.is_empty() && self.errors.is_empty() {
            self.doc = mesh_doc.map_or(0, |(i, _)| i);
            self.error(
                &FieldPath::default(),
                "no actors defined: add entries under actors (or AsyncActor documents), or flows",
            );
        }

        let mut first_seen: HashMap<String, (usize, FieldPath)> = HashMap::new();
        for (doc, p, node) in actor_nodes {
            self.doc = doc;
            // Checked on the raw name so a duplicate is reported even when either entry has
            // other errors.
            let name_path = p.key("actor");
            let mut duplicate = false;
            if let Some(name) = untag(node).get("actor").map(untag).and_then(Value::as_str) {
                if let Some((first_doc, first_path)) = first_seen.get(name) {
                    let (first_doc, first_path) = (*first_doc, first_path.clone());
                    let first_line = self.line_of(first_doc, &first_path);
                    self.error(
                        &name_path,
                        format!("duplicate actor '{name}' (first defined at line {first_line}): actor names must be unique; rename or remove one of them"),
                    );
                    duplicate = true;
                } else {
                    first_seen.insert(name.to_string(), (doc, name_path));
                }
            }
            let defaults = (mesh.python.clone(), mesh.runtime.clone());
            if let Some(actor) = self.actor(node, &p, &defaults, &mesh.root, &mut refs) {
                if !duplicate {
                    mesh.actors.push(actor);
                }
            }
        }

        for r in refs {
            if !first_seen.contains_key(&r.name) && !RESERVED_ACTORS.contains(&r.name.as_str()) {
                self.doc = r.doc;
                self.warn(
                    &r.path,
                    format!("{} '{}' is not an actor of this mesh: messages sent there will wait in its queue; define the actor or fix the name", r.what, r.name),
                );
            }
        }

        mesh
    }

    /// Top-level settings; returns the `actors` list.
    fn mesh_settings<'v>(
        &mut self,
        m: &'v Mapping,
        mesh: &mut MeshConfig,
        refs: &mut Vec<ActorRef>,
    ) -> Option<&'v [Value]> {
        let p = FieldPath::default();
        let f = self.fields(m, &p, MESH_FIELDS);
        if let Some(v) = f.get("namespace") {
            let q = p.key("namespace");
            if let Some(ns) = self.string(v, &q) {
                if is_dns_label(&ns) {
                    mesh.namespace = ns;
                } else {
                    self.error(&q, format!("invalid namespace '{ns}': use a DNS label (lowercase letters, digits and '-', at most 63 characters)"));
                }
            }
        }
        if let Some(v) = f.get("state_dir") {
            if let Some(dir) = self.non_empty_string(v, &p.key("state_dir")) {
                mesh.state_dir = mesh.root.join(dir);
            }
        }
        if let Some(v) = f.get("python") {
            if let Some(py) = self.non_empty_string(v, &p.key("python")) {
                mesh.python = resolve_program(&mesh.root, py);
            }
        }
        if let Some(v) = f.get("runtime") {
            mesh.runtime = self.runtime_file(v, &p.key("runtime"), &mesh.root);
        }
        if let Some(v) = f.get("transport") {
            let q = p.key("transport");
            if let Some(t) = self.string(v, &q) {
                if t == "embedded" {
                    mesh.transport = t;
                } else {
                    let window = troupe_transports::visibility_timeout(Some(&t), &|_| None);
                    match troupe_transports::TransportSpec::from_url(&t).and(window) {
                        Ok(_) => mesh.transport = t,
                        Err(e) => self.error(&q, format!("{e}; or use embedded (the default: a durable queue in the state dir)")),
                    }
                }
            }
        }
        if let Some(v) = f.get("fsync") {
            let q = p.key("fsync");
            if let Some(text) = self.string(v, &q) {
                use troupe_transport_embedded::FsyncPolicy;
                match text.as_str() {
                    "never" => mesh.fsync = FsyncPolicy::Never,
                    "always" => mesh.fsync = FsyncPolicy::Always,
                    other => match troupe_protocol::duration::parse_go_duration(other) {
                        Ok(d) if !d.is_zero() => mesh.fsync = FsyncPolicy::Interval(d),
                        _ => self.error(&q, format!("invalid fsync '{other}': use never (default: survives process crashes), always (fdatasync before every send returns: survives power loss) or a duration such as 100ms (power loss may lose that much)")),
                    },
                }
            }
        }
        if let Some(v) = f.get("gateway") {
            let q = p.key("gateway");
            if let Some(g) = self.mapping(v, &q, "gateway settings") {
                let gf = self.fields(g, &q, GATEWAY_FIELDS);
                if let Some(l) = gf.get("listen") {
                    if let Some(addr) = self.listen(l, &q.key("listen")) {
                        mesh.gateway_listen = addr;
                    }
                }
                if let Some(v) = gf.get("store") {
                    let sq = q.key("store");
                    match self.string(v, &sq).as_deref() {
                        Some("sqlite") => mesh.gateway.store = GatewayStore::Sqlite,
                        Some("memory") => mesh.gateway.store = GatewayStore::Memory,
                        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                            mesh.gateway.store = GatewayStore::Postgres(url.to_owned());
                        }
                        Some(other) => self.error(&sq, format!("invalid store '{other}': use sqlite (default, a file in the state dir), memory, or a postgres://user@host:port/db URL")),
                        None => {}
                    }
                }
                if let Some(v) = gf.get("backstop_interval") {
                    mesh.gateway.backstop_interval = self.duration(v, &q.key("backstop_interval"));
                }
                if let Some(v) = gf.get("api_key") {
                    mesh.gateway.api_key =
                        self.string(v, &q.key("api_key")).filter(|k| !k.is_empty());
                }
                if let Some(v) = gf.get("cors_origins") {
                    mesh.gateway.cors_origins = self.origins(v, &q.key("cors_origins"));
                }
                if let Some(v) = gf.get("trusted_hosts") {
                    let hq = q.key("trusted_hosts");
                    for (i, h) in self.seq(v, &hq).unwrap_or_default().iter().enumerate() {
                        let iq = hq.index(i);
                        if let Some(h) = self.non_empty_string(h, &iq) {
                            if h.contains(['/', ':']) && !h.starts_with('[') {
                                self.error(&iq, format!("invalid host '{h}': give a host name without scheme or port, e.g. troupe.local"));
                            } else {
                                mesh.gateway.trusted_hosts.push(h);
                            }
                        }
                    }
                }
                if let Some(v) = gf.get("mcp") {
                    mesh.gateway.mcp = self.adapter(
                        v,
                        &q.key("mcp"),
                        MCP_FIELDS,
                        ("tools_dir", "tools"),
                        &mesh.root,
                    );
                }
                if let Some(v) = gf.get("a2a") {
                    mesh.gateway.a2a = self.adapter(
                        v,
                        &q.key("a2a"),
                        A2A_FIELDS,
                        ("agents_dir", "agents"),
                        &mesh.root,
                    );
                }
            }
        }
        if let Some(v) = f.get("crew") {
            self.crew(v, &p.key("crew"), &mut mesh.crew, refs);
        }
        if let Some(v) = f.get("flows") {
            self.flows(v, &p.key("flows"), mesh);
        }
        if let Some(v) = f.get("kind") {
            self.string(v, &p.key("kind"));
        }
        f.get("actors").and_then(|v| self.seq(v, &p.key("actors")))
    }

    /// `gateway.cors_origins`: `scheme://host[:port]` each, or `*`.
    fn origins(&mut self, v: &Value, p: &FieldPath) -> Vec<String> {
        let mut out = Vec::new();
        for (i, o) in self.seq(v, p).unwrap_or_default().iter().enumerate() {
            let iq = p.index(i);
            let Some(o) = self.non_empty_string(o, &iq) else {
                continue;
            };
            let o = o.trim_end_matches('/').to_owned();
            let valid = o == "*"
                || o.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
                });
            if valid {
                out.push(o);
            } else {
                self.error(&iq, format!("invalid origin '{o}': use scheme://host[:port] such as https://app.example (no path), or * for any"));
            }
        }
        out
    }

    fn listen(&mut self, v: &Value, p: &FieldPath) -> Option<SocketAddr> {
        let text = self.string(v, p)?;
        let addr = parse_listen(&text);
        if addr.is_none() {
            self.error(p, format!("invalid listen address '{text}': use host:port such as 127.0.0.1:8080 (port 0 picks a free port)"));
        }
        addr
    }

    /// `gateway.mcp` / `gateway.a2a`: `(dir_field, inline_field)` name the registry folder
    /// and the inline list.
    fn adapter(
        &mut self,
        v: &Value,
        p: &FieldPath,
        fields: &[&str],
        (dir_field, inline_field): (&str, &str),
        root: &Path,
    ) -> AdapterSettings {
        let mut out = AdapterSettings::default();
        let Some(m) = self.mapping(v, p, "adapter settings") else {
            return out;
        };
        let f = self.fields(m, p, fields);
        for (key, v) in f.0 {
            let v = untag(v);
            if v.is_null() {
                continue;
            }
            let q = p.key(key);
            match key {
                "listen" => out.listen = self.listen(v, &q),
                "poll_interval" => out.poll_interval = self.duration(v, &q),
                k if k == dir_field => {
                    out.registry_dir = self.string(v, &q).map(|d| root.join(d));
                }
                k if k == inline_field => {
                    for (i, item) in self.seq(v, &q).unwrap_or_default().iter().enumerate() {
                        let iq = q.index(i);
                        if self.mapping(item, &iq, "a registry entry").is_some() {
                            out.inline.extend(self.json(item, &iq));
                        }
                    }
                }
                _ => {
                    if let Some(s) = self.string(v, &q) {
                        out.options.insert(key.to_owned(), s);
                    }
                }
            }
        }
        out
    }

    fn crew(
        &mut self,
        v: &Value,
        p: &FieldPath,
        crew: &mut CrewSettings,
        refs: &mut Vec<ActorRef>,
    ) {
        let Some(m) = self.mapping(v, p, "crew settings") else {
            return;
        };
        let f = self.fields(m, p, CREW_FIELDS);
        if let Some(v) = f.get("sink_hooks") {
            let q = p.key("sink_hooks");
            for (i, h) in self.seq(v, &q).unwrap_or_default().iter().enumerate() {
                let hq = q.index(i);
                if let Some(name) = self.actor_name(h, &hq) {
                    refs.push(ActorRef {
                        doc: self.doc,
                        path: hq,
                        name: name.clone(),
                        what: "sink hook",
                    });
                    crew.sink_hooks.push(name);
                }
            }
        }
        if let Some(v) = f.get("persist_results") {
            if let Some(b) = self.boolean(v, &p.key("persist_results")) {
                crew.persist_results = b;
            }
        }
        if let Some(v) = f.get("sink_fanout_hooks") {
            if let Some(b) = self.boolean(v, &p.key("sink_fanout_hooks")) {
                crew.sink_fanout_hooks = b;
            }
        }
        if let Some(v) = f.get("pause_metadata") {
            let q = p.key("pause_metadata");
            if let Some(md) = self.mapping(v, &q, "pause metadata") {
                let mf = self.fields(md, &q, &["prompt", "fields"]);
                if let Some(fields) = mf.get("fields") {
                    self.seq(fields, &q.key("fields"));
                }
                crew.pause_metadata = self.json(v, &q);
            }
        }
        if let Some(v) = f.get("resume_merge_mode") {
            let q = p.key("resume_merge_mode");
            match self.string(v, &q).as_deref() {
                Some("shallow") => crew.resume_merge_mode = MergeMode::Shallow,
                Some("deep") => crew.resume_merge_mode = MergeMode::Deep,
                Some(other) => self.error(
                    &q,
                    format!("invalid resume_merge_mode '{other}': use shallow or deep"),
                ),
                None => {}
            }
        }
    }

    fn actor(
        &mut self,
        v: &Value,
        p: &FieldPath,
        (default_python, default_runtime): &(String, Option<PathBuf>),
        root: &Path,
        refs: &mut Vec<ActorRef>,
    ) -> Option<ActorConfig> {
        let errors_before = self.errors.len();
        let m = self.mapping(v, p, "an actor")?;
        let f = self.fields(m, p, fields::of::<AsyncActorSpec>());

        let name = match f.get("actor") {
            Some(v) => {
                let q = p.key("actor");
                let name = self.actor_name(v, &q);
                if let Some(n) = &name {
                    if RESERVED_ACTORS.contains(&n.as_str()) {
                        self.error(&q, format!("'{n}' is a crew actor name reserved by troupe ({}); choose another name", RESERVED_ACTORS.join(", ")));
                    }
                }
                name
            }
            None => {
                self.error(
                    &p.key("actor"),
                    "missing required field 'actor': add actor: <name> (a DNS label)",
                );
                None
            }
        };

        let crew = self.crew_actor(&f, p);
        let handler = match f.get("handler") {
            Some(v) => {
                let q = p.key("handler");
                let h = self.string(v, &q);
                if let Some(h) = &h {
                    if !is_valid_handler(h) {
                        self.error(&q, format!("invalid handler '{h}': use module.function or module.Class.method (dotted Python identifiers, matching ^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)+$)"));
                    }
                }
                h
            }
            // A (possibly misspelt) crew actor has no handler; its crew error says enough.
            None if crew.is_some() || f.get("crew").is_some() => Some(String::new()),
            None => {
                self.error(
                    &p.key("handler"),
                    "missing required field 'handler': add handler: module.function",
                );
                None
            }
        };

        if let Some(v) = f.get("image") {
            self.string(v, &p.key("image"));
        }
        if let Some(v) = f.get("imagePullPolicy") {
            let q = p.key("imagePullPolicy");
            if let Some(s) = self.string(v, &q) {
                if !["Always", "IfNotPresent", "Never"].contains(&s.as_str()) {
                    self.error(
                        &q,
                        format!("invalid imagePullPolicy '{s}': use Always, IfNotPresent or Never"),
                    );
                }
            }
        }
        let python = match f.get("pythonExecutable") {
            Some(v) => self
                .non_empty_string(v, &p.key("pythonExecutable"))
                .map(|py| resolve_program(root, py)),
            None => Some(default_python.to_string()),
        };
        let runtime = match f.get("runtime") {
            Some(v) => self.runtime_file(v, &p.key("runtime"), root),
            None => default_runtime.clone(),
        };

        let mut env = match f.get("env") {
            Some(v) => self.env(v, &p.key("env")),
            None => Vec::new(),
        };
        if let Some(v) = f.get("resources") {
            // The runtime applies the limit itself (an rlimit set from its environment):
            // the launcher cannot, since a pre-exec hook needs unsafe code.
            if let Some((bytes, text)) = self.memory_limit(v, &p.key("resources")) {
                env.push(("TROUPE_MEMORY_LIMIT".to_owned(), bytes.to_string()));
                env.push(("TROUPE_MEMORY_LIMIT_TEXT".to_owned(), text));
            }
        }

        for (field, why) in IGNORED_ACTOR_FIELDS {
            if f.get(field).is_some() {
                self.warn(&p.key(field), format!("ignored by troupe up: {why}"));
            }
        }

        let mut scaling = Scaling::default();
        let replicas_set = f.get("replicas").is_some();
        if let Some(v) = f.get("replicas") {
            if let Some(n) = self.uint(v, &p.key("replicas")) {
                scaling.replicas = n;
            }
        }
        if let Some(v) = f.get("scaling") {
            self.scaling(v, &p.key("scaling"), &mut scaling);
        }
        if replicas_set && scaling.enabled {
            self.warn(
                &p.key("replicas"),
                "replicas is used only when scaling.enabled is false; set scaling: {enabled: false} for a fixed replica count",
            );
        }

        let mut actor_timeout = DEFAULT_ACTOR_TIMEOUT;
        let mut explicit_timeout = false;
        let mut resiliency = None;
        let mut policies_json = None;
        let mut rules_json = None;
        if let Some(v) = f.get("resiliency") {
            let q = p.key("resiliency");
            if let Some(r) = self.resiliency(v, &q, refs) {
                explicit_timeout = r.actor_timeout.is_some();
                actor_timeout = r.actor_timeout.unwrap_or(DEFAULT_ACTOR_TIMEOUT);
                policies_json = r.policies;
                rules_json = r.rules;
                if policies_json.is_some() || rules_json.is_some() {
                    match Resiliency::from_values(policies_json.as_ref(), rules_json.as_ref()) {
                        Ok(parsed) => resiliency = parsed,
                        Err(e) => self.error(
                            &q,
                            format!("{e}; fix the resiliency settings (protocol.md §9)"),
                        ),
                    }
                }
            }
        }

        self.older_asya_env(&env, &p.key("env"), explicit_timeout, &mut actor_timeout);

        let mut concurrency = 1usize;
        if let Some(v) = f.get("concurrency") {
            let q = p.key("concurrency");
            match self.uint(v, &q) {
                Some(0) => self.error(
                    &q,
                    "concurrency must be at least 1 (in-flight messages per sidecar)",
                ),
                Some(n) => concurrency = n as usize,
                None => {}
            }
        }
        let mut pipeline = troupe_engine::settings::DEFAULT_PIPELINE;
        if let Some(v) = f.get("pipeline") {
            let q = p.key("pipeline");
            match self.uint(v, &q) {
                Some(n) if n <= 64 => pipeline = n as usize,
                Some(_) => self.error(
                    &q,
                    "pipeline must be from 0 to 64 (messages settling per worker; 0 acks each message before taking the next)",
                ),
                None => {}
            }
        }

        if self.errors.len() > errors_before {
            return None;
        }
        let spec = self.typed_spec(v, p)?;
        let name = name?;
        let line = self.line_of(self.doc, &p.key("actor"));
        Some(ActorConfig {
            spec,
            name,
            handler: handler?,
            python: python?,
            runtime,
            env,
            scaling,
            actor_timeout,
            resiliency,
            policies_json,
            rules_json,
            concurrency,
            pipeline,
            line,
            crew,
        })
    }

    /// `crew:` and `fanIn:` of an actor: a crew handler run in place of a runtime.
    fn crew_actor(&mut self, f: &Fields<'_>, p: &FieldPath) -> Option<CrewActor> {
        let fan_in = f.get("fanIn");
        let Some(v) = f.get("crew") else {
            if fan_in.is_some() {
                self.error(
                    &p.key("fanIn"),
                    "fanIn applies only to a fan-in actor: add crew: fan-in or remove fanIn",
                );
            }
            return None;
        };
        let q = p.key("crew");
        match self.string(v, &q).as_deref() {
            Some("fan-in") => {}
            Some(other) => {
                self.error(
                    &q,
                    format!("unknown crew '{other}': the only crew an actor can run is fan-in (x-sink, x-sump, x-pause and x-resume always run)"),
                );
                return None;
            }
            None => return None,
        }
        for field in ["handler", "image", "runtime", "pythonExecutable"] {
            if f.get(field).is_some() {
                self.warn(
                    &p.key(field),
                    format!("ignored: a crew: fan-in actor runs inside troupe, with no runtime; remove {field}"),
                );
            }
        }
        let mut timeout = troupe_crew::DEFAULT_FANIN_TIMEOUT;
        if let Some(v) = fan_in {
            let q = p.key("fanIn");
            if let Some(m) = self.mapping(v, &q, "fan-in settings") {
                let ff = self.fields(m, &q, &["timeout"]);
                if let Some(t) = ff.get("timeout") {
                    match self.duration(t, &q.key("timeout")) {
                        Some(d) if d.is_zero() => self.error(
                            &q.key("timeout"),
                            "fanIn.timeout must be positive, e.g. 30s or 10m",
                        ),
                        Some(d) => timeout = d,
                        None => {}
                    }
                }
            }
        }
        Some(CrewActor::FanIn { timeout })
    }

    /// Reads a checked actor through [`AsyncActorSpec`]. The checks above report every
    /// problem with its own advice; what they do not look into (the insides of `resources`,
    /// `tolerations`, `stateProxy`, ...) is reported here, located through the serde path.
    fn typed_spec(&mut self, v: &Value, p: &FieldPath) -> Option<AsyncActorSpec> {
        let mut v = untag(v).clone();
        // `troupe up` takes `value: 3` for `value: "3"`; Kubernetes wants the string.
        if let Some(Value::Sequence(env)) = v.get_mut("env") {
            for item in env {
                if let Some(value) = item.get_mut("value") {
                    match untag(value) {
                        Value::Number(n) => *value = Value::String(n.to_string()),
                        Value::Bool(b) => *value = Value::String(b.to_string()),
                        _ => {}
                    }
                }
            }
        }
        match serde_path_to_error::deserialize::<_, AsyncActorSpec>(v) {
            Ok(spec) => Some(spec),
            Err(e) => {
                let mut at = p.clone();
                for seg in e.path().iter() {
                    at = match seg {
                        serde_path_to_error::Segment::Map { key } => at.key(key),
                        serde_path_to_error::Segment::Seq { index } => at.index(*index),
                        _ => at,
                    };
                }
                let inner = strip_position(&e.into_inner().to_string());
                self.error(
                    &at,
                    format!("{inner}; write it as the AsyncActor field expects (platform.md §2)"),
                );
                None
            }
        }
    }

    /// `resources.limits.memory` in bytes and as written, the one pod resource `troupe up`
    /// honours; the rest of `resources` is warned about as Kubernetes-only.
    fn memory_limit(&mut self, v: &Value, p: &FieldPath) -> Option<(u64, String)> {
        let m = self.mapping(v, p, "a resources mapping {limits, requests}")?;
        let mut out = None;
        let mut other = false;
        for (k, v) in m {
            if untag(k).as_str() != Some("limits") {
                other = true;
                continue;
            }
            let q = p.key("limits");
            let Some(limits) = self.mapping(v, &q, "a limits mapping {cpu, memory}") else {
                continue;
            };
            for (lk, lv) in limits {
                if untag(lk).as_str() != Some("memory") {
                    other = true;
                    continue;
                }
                let mq = q.key("memory");
                let text = match untag(lv) {
                    Value::String(s) => s.trim().to_owned(),
                    Value::Number(n) => n.to_string(),
                    found => {
                        self.error(
                            &mq,
                            format!(
                                "expected a quantity such as 256Mi, found {}",
                                describe(found)
                            ),
                        );
                        continue;
                    }
                };
                match parse_memory_quantity(&text) {
                    Some(bytes) if bytes > 0 => out = Some((bytes, text)),
                    _ => self.error(
                        &mq,
                        format!("invalid memory quantity '{text}': use e.g. 256Mi, 1Gi, 500M or a number of bytes"),
                    ),
                }
            }
        }
        if other {
            self.warn(
                p,
                "ignored by troupe up: pod resources other than limits.memory apply only on Kubernetes",
            );
        }
        out
    }

    fn env(&mut self, v: &Value, p: &FieldPath) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, item) in self.seq(v, p).unwrap_or_default().iter().enumerate() {
            let q = p.index(i);
            let Some(m) = self.mapping(item, &q, "an env entry {name, value}") else {
                continue;
            };
            let f = self.fields(m, &q, fields::of::<k8s_openapi::api::core::v1::EnvVar>());
            let name = match f.get("name") {
                Some(n) => {
                    let nq = q.key("name");
                    let name = self.non_empty_string(n, &nq);
                    match name {
                        Some(s) if s.contains('=') || s.contains('\0') => {
                            self.error(
                                &nq,
                                format!(
                                    "invalid variable name '{s}': names may not contain '=' or NUL"
                                ),
                            );
                            None
                        }
                        other => other,
                    }
                }
                None => {
                    self.error(
                        &q.key("name"),
                        "missing required field 'name': add name: VARIABLE",
                    );
                    None
                }
            };
            if f.get("valueFrom").is_some() {
                if self.use_ == Use::Kubernetes {
                    // The cluster resolves it: the entry stays in `spec.env`, and nothing
                    // runs this actor here.
                    continue;
                }
                self.error(
                    &q.key("valueFrom"),
                    "valueFrom is not supported by troupe up (there are no secrets or config maps locally); set value directly (troupe render passes valueFrom to Kubernetes)",
                );
                continue;
            }
            let value = match f.get("value").map(untag) {
                None => Some(String::new()),
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(other) => {
                    self.error(
                        &q.key("value"),
                        format!("expected a string, found {}", describe(other)),
                    );
                    None
                }
            };
            if let (Some(n), Some(v)) = (name, value) {
                out.push((n, v));
            }
        }
        out
    }

    /// Asya settings written into an actor's `env` (the runtime's environment): the sidecar
    /// settings among them would never reach the sidecar, so each is honoured with a
    /// warning naming the troupe.yaml field, or refused naming what to use.
    fn older_asya_env(
        &mut self,
        env: &[(String, String)],
        p: &FieldPath,
        explicit_timeout: bool,
        actor_timeout: &mut Duration,
    ) {
        for (name, value) in env {
            match name.as_str() {
                "ASYA_HANDLER_MODE" if value.trim().eq_ignore_ascii_case("payload") => self.warn(
                    p,
                    "ASYA_HANDLER_MODE=payload is deprecated: handlers always receive the payload; remove it",
                ),
                "ASYA_HANDLER_MODE" => self.error(
                    p,
                    format!("ASYA_HANDLER_MODE={value}: envelope mode is not supported (Asya's current runtime removed it too); handlers receive the payload and read or change the route, headers and status with the ABI (yield \"GET\", \"/route/next\" ...; protocol.md §6.3); remove it"),
                ),
                "ASYA_RUNTIME_TIMEOUT" | "ASYA_RESILIENCY_ACTOR_TIMEOUT" if !explicit_timeout => {
                    match parse_go_duration(value) {
                        Ok(d) if !d.is_zero() => {
                            *actor_timeout = d;
                            self.warn(p, format!("{name}={value} in env is honoured as the actor timeout; write resiliency: {{actorTimeout: {value}}} instead"));
                        }
                        _ => self.error(p, format!("{name}={value}: not a positive duration; write resiliency: {{actorTimeout: 5m}} instead")),
                    }
                }
                "ASYA_RUNTIME_TIMEOUT" | "ASYA_RESILIENCY_ACTOR_TIMEOUT" => self.warn(
                    p,
                    format!("{name} in env is ignored: resiliency.actorTimeout is set; remove it"),
                ),
                n if n.starts_with("ASYA_RESILIENCY_") => self.error(
                    p,
                    format!("{n} in env has no effect under troupe up (the sidecar reads troupe.yaml): write resiliency: {{actorTimeout, policies, rules}} on the actor instead (protocol.md §9)"),
                ),
                "ASYA_ACTOR_HAPPY_END" | "ASYA_ACTOR_ERROR_END" => self.error(
                    p,
                    format!("{name} is an older Asya setting Troupe does not implement: both outcomes go to x-sink (status.phase tells them apart); remove it"),
                ),
                _ => {}
            }
        }
    }

    fn scaling(&mut self, v: &Value, p: &FieldPath, s: &mut Scaling) {
        let Some(m) = self.mapping(v, p, "scaling settings") else {
            return;
        };
        let f = self.fields(m, p, fields::of::<troupe_resource::Scaling>());
        if let Some(v) = f.get("enabled") {
            if let Some(b) = self.boolean(v, &p.key("enabled")) {
                s.enabled = b;
            }
        }
        let get = |ck: &mut Self, name: &str| f.get(name).and_then(|v| ck.uint(v, &p.key(name)));
        let min = get(self, "minReplicaCount");
        let max = get(self, "maxReplicaCount");
        let polling = get(self, "pollingInterval");
        let cooldown = get(self, "cooldownPeriod");
        let queue = get(self, "queueLength");
        if let Some(n) = min {
            s.min = n;
        }
        if let Some(n) = max {
            if n == 0 {
                self.error(&p.key("maxReplicaCount"), "maxReplicaCount must be at least 1; to keep an actor stopped use scaling: {enabled: false} with replicas: 0");
            } else {
                s.max = n;
            }
        }
        if s.min > s.max && max != Some(0) {
            let at = if min.is_some() {
                "minReplicaCount"
            } else {
                "maxReplicaCount"
            };
            self.error(
                &p.key(at),
                format!("minReplicaCount ({}) is greater than maxReplicaCount ({}); lower minReplicaCount or raise maxReplicaCount", s.min, s.max),
            );
        }
        if let Some(n) = polling {
            if n == 0 {
                self.error(
                    &p.key("pollingInterval"),
                    "pollingInterval must be at least 1 (seconds)",
                );
            } else {
                s.polling_interval = Duration::from_secs(n.into());
            }
        }
        if let Some(n) = cooldown {
            s.cooldown = Duration::from_secs(n.into());
        }
        if let Some(n) = queue {
            if n == 0 {
                self.error(
                    &p.key("queueLength"),
                    "queueLength must be at least 1 (messages per replica)",
                );
            } else {
                s.queue_length = n;
            }
        }
        if f.get("advanced").is_some() {
            self.warn(
                &p.key("advanced"),
                "ignored by troupe up: custom scaling formulas are not evaluated locally; replicas follow queueLength",
            );
        }
        if f.get("additionalTriggers").is_some() {
            self.warn(
                &p.key("additionalTriggers"),
                "ignored by troupe up: extra KEDA triggers are not evaluated locally; replicas follow queueLength",
            );
        }
    }

    fn resiliency(
        &mut self,
        v: &Value,
        p: &FieldPath,
        refs: &mut Vec<ActorRef>,
    ) -> Option<RawResiliency> {
        let errors_before = self.errors.len();
        let m = self.mapping(v, p, "resiliency settings")?;
        let f = self.fields(m, p, fields::of::<troupe_resource::Resiliency>());
        let mut out = RawResiliency::default();

        if let Some(v) = f.get("actorTimeout") {
            let q = p.key("actorTimeout");
            match self.duration(v, &q) {
                Some(d) if d.is_zero() => {
                    self.error(&q, "actorTimeout must be greater than 0, such as 30s or 5m")
                }
                d => out.actor_timeout = d,
            }
        }

        let mut policy_names: Vec<String> = Vec::new();
        if let Some(v) = f.get("policies") {
            let q = p.key("policies");
            if let Some(pm) = self.mapping(v, &q, "policies by name") {
                for (k, pv) in pm {
                    let Some(name) = untag(k).as_str() else {
                        self.error(
                            &q,
                            format!("policy names must be strings, found {}", describe(k)),
                        );
                        continue;
                    };
                    policy_names.push(name.to_string());
                    self.policy(pv, &q.key(name), refs);
                }
            }
            out.policies = self.json(v, &q);
        }

        if let Some(v) = f.get("rules") {
            let q = p.key("rules");
            for (i, rv) in self.seq(v, &q).unwrap_or_default().iter().enumerate() {
                let rq = q.index(i);
                let Some(rm) = self.mapping(rv, &rq, "a rule {errors, policy}") else {
                    continue;
                };
                let rf = self.fields(rm, &rq, fields::of::<troupe_resource::ResiliencyRule>());
                match rf.get("errors") {
                    Some(ev) => {
                        let eq = rq.key("errors");
                        if let Some(list) = self.seq(ev, &eq) {
                            if list.is_empty() {
                                self.error(&eq, "a rule needs at least one error pattern, such as [TimeoutError]");
                            }
                            for (j, e) in list.iter().enumerate() {
                                self.non_empty_string(e, &eq.index(j));
                            }
                        }
                    }
                    None => self.error(
                        &rq.key("errors"),
                        "missing required field 'errors': add errors: [ErrorType, ...]",
                    ),
                }
                match rf.get("policy") {
                    Some(pv) => {
                        let pq = rq.key("policy");
                        if let Some(name) = self.string(pv, &pq) {
                            if !policy_names.contains(&name) {
                                let defined = if policy_names.is_empty() {
                                    "none are defined".to_string()
                                } else {
                                    format!("defined: {}", policy_names.join(", "))
                                };
                                self.warn(
                                    &pq,
                                    format!("rule names policy '{name}', which is not under resiliency.policies ({defined}); the rule is skipped — define the policy or fix the name"),
                                );
                            }
                        }
                    }
                    None => self.error(
                        &rq.key("policy"),
                        "missing required field 'policy': add policy: <name of a policy>",
                    ),
                }
            }
            out.rules = self.json(v, &q);
        }

        (self.errors.len() == errors_before).then_some(out)
    }

    fn policy(&mut self, v: &Value, p: &FieldPath, refs: &mut Vec<ActorRef>) {
        let Some(m) = self.mapping(v, p, "a policy") else {
            return;
        };
        let f = self.fields(m, p, fields::of::<troupe_resource::Policy>());
        if let Some(v) = f.get("maxAttempts") {
            let q = p.key("maxAttempts");
            let n = untag(v);
            match n.as_i64() {
                Some(k) if k >= 1 => {}
                Some(k) => self.error(
                    &q,
                    format!(
                        "maxAttempts is {k}; it must be at least 1 (it counts the first attempt)"
                    ),
                ),
                None => self.error(
                    &q,
                    format!("expected an integer of at least 1, found {}", describe(n)),
                ),
            }
        }
        if let Some(v) = f.get("backoff") {
            let q = p.key("backoff");
            if let Some(b) = self.string(v, &q) {
                if !["constant", "linear", "exponential"].contains(&b.as_str()) {
                    self.error(
                        &q,
                        format!("invalid backoff '{b}': use constant, linear or exponential"),
                    );
                }
            }
        }
        for name in ["initialDelay", "maxInterval", "maxDuration"] {
            if let Some(v) = f.get(name) {
                self.duration(v, &p.key(name));
            }
        }
        if let Some(v) = f.get("jitter") {
            self.boolean(v, &p.key("jitter"));
        }
        if let Some(v) = f.get("onExhausted") {
            let q = p.key("onExhausted");
            for (i, a) in self.seq(v, &q).unwrap_or_default().iter().enumerate() {
                let aq = q.index(i);
                if let Some(name) = self.actor_name(a, &aq) {
                    refs.push(ActorRef {
                        doc: self.doc,
                        path: aq,
                        name,
                        what: "onExhausted target",
                    });
                }
            }
        }
    }
}

/// Resiliency fields after shape validation.
#[derive(Default)]
struct RawResiliency {
    actor_timeout: Option<Duration>,
    policies: Option<serde_json::Value>,
    rules: Option<serde_json::Value>,
}

/// A relative program path with a folder part (`.venv/bin/python`) is relative to the mesh
/// file's folder; a bare name (`python3`) is looked up on `PATH` when spawned.
fn resolve_program(root: &Path, program: String) -> String {
    let p = Path::new(&program);
    if p.is_relative() && p.components().count() > 1 {
        root.join(p).display().to_string()
    } else {
        program
    }
}

/// `host:port`; `localhost` means 127.0.0.1.
fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(a) = text.parse() {
        return Some(a);
    }
    let port = text.strip_prefix("localhost:")?.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`, at most 63 characters (protocol.md §4).
fn is_dns_label(s: &str) -> bool {
    troupe_protocol::queue::validate_actor_name(s).is_ok()
}

/// `^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$` (protocol.md §6.1).
fn is_valid_handler(s: &str) -> bool {
    let ident = |p: &str| {
        let mut chars = p.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() >= 2 && parts.iter().all(|p| ident(p))
}

/// The allowed name closest to an unknown one, when it is plausibly a typo or a shortening
/// (`minReplicas` for `minReplicaCount`).
fn suggest<'a>(unknown: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let u = norm(unknown);
    let by_distance = allowed
        .iter()
        .map(|a| (edit_distance(&u, &norm(a)), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a);
    by_distance.or_else(|| {
        let need = 4.max(u.len() * 3 / 5);
        allowed
            .iter()
            .map(|a| {
                (
                    norm(a).iter().zip(&u).take_while(|(x, y)| x == y).count(),
                    *a,
                )
            })
            .filter(|(common, _)| *common >= need)
            .max_by_key(|(common, _)| *common)
            .map(|(_, a)| a)
    })
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn handler_pattern() {
        assert!(is_valid_handler("a.b"));
        assert!(is_valid_handler("_pkg.mod.Class.run"));
        assert!(!is_valid_handler("nodots"));
        assert!(!is_valid_handler("a..b"));
        assert!(!is_valid_handler("1a.b"));
        assert!(!is_valid_handler("a.b-c"));
        assert!(!is_valid_handler("a.b."));
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("pre-process2"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("Upper"));
        assert!(!is_dns_label("a_b"));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("handlr", fields::of::<AsyncActorSpec>()),
            Some("handler")
        );
        assert_eq!(
            suggest(
                "min_replica_count",
                fields::of::<troupe_resource::Scaling>()
            ),
            Some("minReplicaCount")
        );
        assert_eq!(
            suggest("minReplicas", fields::of::<troupe_resource::Scaling>()),
            Some("minReplicaCount")
        );
        assert_eq!(suggest("zzzz", fields::of::<AsyncActorSpec>()), None);
        assert_eq!(
            suggest("scale", fields::of::<AsyncActorSpec>()),
            Some("scaling")
        );
        assert_eq!(suggest("environment", fields::of::<AsyncActorSpec>()), None);
        assert_eq!(
            strip_position("did not find x at line 4 column 4, while parsing"),
            "did not find x, while parsing"
        );
        assert_eq!(
            strip_position("duplicate key at line 4 column 5"),
            "duplicate key"
        );
    }

    #[test]
    fn ignored_fields_are_fields_of_the_spec() {
        for (field, _) in IGNORED_ACTOR_FIELDS {
            assert!(fields::of::<AsyncActorSpec>().contains(field), "{field}");
        }
        assert_eq!(
            fields::of::<k8s_openapi::api::core::v1::EnvVar>(),
            ["name", "value", "valueFrom"]
        );
        assert_eq!(
            fields::of::<troupe_resource::AsyncActor>(),
            ["metadata", "spec", "status"]
        );
    }

    #[test]
    fn index_agrees_with_the_probe() {
        let src = "first: 1\nlist:\n  - x: {k: v, 'odd at line 9 column 9': [1, 2]}\n  - 7\n  - [a, {b: c}]\n\
                   flow: {a: [x, y], 3: three, true: t}\nanchor: &a {p: q}\nalias: *a\n---\n- z\n---\n\
                   kind: AsyncActor\nspec:\n  actor: a\n  env: [{name: A, value: b}]\n";
        let index = build_index(src);
        // Keys, scalar items, flow and multi-document content are indexed...
        for (doc, segs) in [
            (0, vec!["list"]),
            (0, vec!["list", "0", "x", "odd at line 9 column 9"]),
            (0, vec!["list", "0", "x", "odd at line 9 column 9", "1"]),
            (0, vec!["list", "1"]),
            (0, vec!["list", "2", "1", "b"]),
            (0, vec!["flow", "3"]),
            (0, vec!["flow", "true"]),
            (0, vec!["alias", "p"]),
            (1, vec!["0"]),
            (2, vec!["spec", "env", "0", "value"]),
        ] {
            let path = FieldPath(
                segs.iter()
                    .map(|s| match s.parse::<usize>() {
                        // Numeric segments under "flow" are keys, elsewhere indexes.
                        Ok(n) if !matches!(segs.first(), Some(&"flow")) => Seg::Index(n),
                        _ => Seg::Key((*s).to_string()),
                    })
                    .collect(),
            );
            assert!(index.contains_key(&(doc, path.clone())), "{doc} {path}");
        }
        // ...and every indexed position is the one the exact probe finds.
        assert!(index.len() > 20);
        for ((doc, path), pos) in &index {
            assert_eq!(Some(*pos), probe(src, *doc, &path.0), "{doc} {path}");
        }
        // Line 1 column 1 carries no position in serde_yaml's text: left to the probe.
        assert!(!index.contains_key(&(0, FieldPath(vec![Seg::Key("first".into())]))));
        let mut loc = Locator::new(src);
        assert_eq!(
            loc.locate(0, &FieldPath(vec![Seg::Key("first".into())])),
            Some((1, 1))
        );
    }

    #[test]
    fn probe_finds_keys_items_and_falls_back_to_ancestors() {
        let src = "a: 1\nlist:\n  - x: {k: v, deep: [1, 2]}\n  - y: 2\n---\nz: 3\n";
        let path = |segs: Vec<Seg>| FieldPath(segs);
        let k = |s: &str| Seg::Key(s.to_string());
        let mut loc = Locator::new(src);
        assert_eq!(loc.locate(0, &path(vec![k("a")])), Some((1, 1)));
        assert_eq!(
            loc.locate(0, &path(vec![k("list"), Seg::Index(1)])),
            Some((4, 5))
        );
        assert_eq!(
            loc.locate(0, &path(vec![k("list"), Seg::Index(0), k("x"), k("deep")])),
            Some((3, 15))
        );
        assert_eq!(
            loc.locate(
                0,
                &path(vec![
                    k("list"),
                    Seg::Index(0),
                    k("x"),
                    k("deep"),
                    Seg::Index(1)
                ])
            ),
            Some((3, 25))
        );
        // Missing key: the deepest existing node (the item's mapping).
        assert_eq!(
            loc.locate(0, &path(vec![k("list"), Seg::Index(1), k("nope")])),
            Some((4, 5))
        );
        // Second document: absolute positions.
        assert_eq!(loc.locate(1, &path(vec![k("z")])), Some((6, 1)));
    }
}
