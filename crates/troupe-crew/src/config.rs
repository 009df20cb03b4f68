//! Crew configuration from the environment (protocol.md §15).

use std::path::PathBuf;
use std::time::Duration;

use troupe_protocol::duration::{parse_go_duration, DurationError};
use troupe_protocol::sidecar_env as env;

use serde_json::{json, Value};

/// Default sink actor name (`ASYA_ACTOR_SINK`).
pub const DEFAULT_SINK: &str = "x-sink";
/// Default sump actor name (`ASYA_ACTOR_SUMP`).
pub const DEFAULT_SUMP: &str = "x-sump";

/// Invalid crew configuration.
#[derive(Debug, thiserror::Error)]
pub enum CrewError {
    /// `ASYA_PAUSE_METADATA` is not a JSON object.
    #[error(
        "ASYA_PAUSE_METADATA is not a valid JSON object ({0}); set it to e.g. \
         {{\"prompt\": \"Task paused\", \"fields\": []}} or unset it"
    )]
    PauseMetadata(String),
    /// `ASYA_RESUME_MERGE_MODE` is neither `shallow` nor `deep`.
    #[error("ASYA_RESUME_MERGE_MODE must be \"shallow\" or \"deep\", got {0:?}")]
    MergeMode(String),
    /// `TROUPE_FANIN_TIMEOUT` is not a positive Go duration.
    #[error(
        "TROUPE_FANIN_TIMEOUT must be a positive Go duration such as 30s or 10m, got {value:?}"
    )]
    FanInTimeout {
        /// The value as set.
        value: String,
        /// Why it did not parse (`None`: it was zero).
        #[source]
        cause: Option<DurationError>,
    },
}

/// Default `TROUPE_FANIN_TIMEOUT`: how long fan-in waits for missing slices.
pub const DEFAULT_FANIN_TIMEOUT: Duration = Duration::from_secs(600);

/// How x-resume merges user input into the saved payload when the pause metadata
/// declares no fields (`ASYA_RESUME_MERGE_MODE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeMode {
    /// Top-level keys of the input replace those of the saved payload.
    #[default]
    Shallow,
    /// Nested objects are merged recursively; other values are replaced.
    Deep,
}

/// Settings shared by the crew actors.
#[derive(Debug, Clone, PartialEq)]
pub struct CrewConfig {
    /// Storage root (`ASYA_PERSISTENCE_MOUNT`); `None` = no persistence.
    pub mount: Option<PathBuf>,
    /// Sink actor name (`ASYA_ACTOR_SINK`).
    pub sink_name: String,
    /// Sump actor name (`ASYA_ACTOR_SUMP`).
    pub sump_name: String,
    /// Post-terminal hook actors (`ASYA_SINK_HOOKS`).
    pub sink_hooks: Vec<String>,
    /// Run hooks for fan-out children too (`ASYA_SINK_FANOUT_HOOKS`).
    pub sink_fanout_hooks: bool,
    /// Pause metadata written to `x-asya-pause` (`ASYA_PAUSE_METADATA`).
    pub pause_metadata: Value,
    /// Root merge mode of x-resume (`ASYA_RESUME_MERGE_MODE`).
    pub resume_merge_mode: MergeMode,
    /// How long fan-in waits for an origin's missing slices (`TROUPE_FANIN_TIMEOUT`).
    pub fanin_timeout: Duration,
}

impl Default for CrewConfig {
    fn default() -> Self {
        Self {
            mount: None,
            sink_name: DEFAULT_SINK.to_owned(),
            sump_name: DEFAULT_SUMP.to_owned(),
            sink_hooks: Vec::new(),
            sink_fanout_hooks: false,
            pause_metadata: default_pause_metadata(),
            resume_merge_mode: MergeMode::Shallow,
            fanin_timeout: DEFAULT_FANIN_TIMEOUT,
        }
    }
}

/// `{"prompt": "Task paused", "fields": []}`.
fn default_pause_metadata() -> Value {
    json!({"prompt": "Task paused", "fields": []})
}

impl CrewConfig {
    /// Reads the crew variables from the process environment.
    pub fn from_env() -> Result<Self, CrewError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the crew variables through `get` (a variable lookup; tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CrewError> {
        // Unset and empty mean the same for every crew variable, as in Asya.
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let pause_metadata = match var(env::PAUSE_METADATA) {
            None => default_pause_metadata(),
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => v,
                Ok(other) => {
                    return Err(CrewError::PauseMetadata(format!(
                        "got a JSON {}",
                        crate::py_type_name(&other)
                    )))
                }
                Err(e) => return Err(CrewError::PauseMetadata(e.to_string())),
            },
        };

        let resume_merge_mode = match var(env::RESUME_MERGE_MODE) {
            None => MergeMode::Shallow,
            Some(m) => match m.trim().to_ascii_lowercase().as_str() {
                "shallow" => MergeMode::Shallow,
                "deep" => MergeMode::Deep,
                _ => return Err(CrewError::MergeMode(m)),
            },
        };

        let fanin_timeout = match var(env::FANIN_TIMEOUT) {
            None => DEFAULT_FANIN_TIMEOUT,
            Some(text) => match parse_go_duration(text.trim()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    return Err(CrewError::FanInTimeout {
                        value: text,
                        cause: None,
                    })
                }
                Err(e) => {
                    return Err(CrewError::FanInTimeout {
                        value: text,
                        cause: Some(e),
                    })
                }
            },
        };

        Ok(Self {
            mount: var(env::PERSISTENCE_MOUNT).map(PathBuf::from),
            sink_name: var(env::ACTOR_SINK).unwrap_or_else(|| DEFAULT_SINK.to_owned()),
            sump_name: var(env::ACTOR_SUMP).unwrap_or_else(|| DEFAULT_SUMP.to_owned()),
            sink_hooks: var(env::SINK_HOOKS)
                .map(|h| {
                    h.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            sink_fanout_hooks: var(env::SINK_FANOUT_HOOKS)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            pause_metadata,
            resume_merge_mode,
            fanin_timeout,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<CrewConfig, CrewError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CrewConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_when_unset() {
        let c = from(&[]).unwrap();
        assert_eq!(c, CrewConfig::default());
        assert_eq!(c.mount, None);
        assert_eq!(c.sink_name, "x-sink");
        assert_eq!(c.sump_name, "x-sump");
        assert!(c.sink_hooks.is_empty());
        assert!(!c.sink_fanout_hooks);
        assert_eq!(
            c.pause_metadata,
            json!({"prompt": "Task paused", "fields": []})
        );
        assert_eq!(c.resume_merge_mode, MergeMode::Shallow);
    }

    #[test]
    fn reads_every_variable() {
        let c = from(&[
            ("ASYA_PERSISTENCE_MOUNT", "/state"),
            ("ASYA_ACTOR_SINK", "my-sink"),
            ("ASYA_ACTOR_SUMP", "my-sump"),
            ("ASYA_SINK_HOOKS", " audit, ,notify ,"),
            ("ASYA_SINK_FANOUT_HOOKS", "TRUE"),
            (
                "ASYA_PAUSE_METADATA",
                r#"{"prompt": "Approve?", "fields": [{"name": "ok"}]}"#,
            ),
            ("ASYA_RESUME_MERGE_MODE", "deep"),
        ])
        .unwrap();
        assert_eq!(c.mount, Some(PathBuf::from("/state")));
        assert_eq!(c.sink_name, "my-sink");
        assert_eq!(c.sump_name, "my-sump");
        assert_eq!(c.sink_hooks, vec!["audit", "notify"]);
        assert!(c.sink_fanout_hooks);
        assert_eq!(c.pause_metadata["prompt"], "Approve?");
        assert_eq!(c.resume_merge_mode, MergeMode::Deep);
    }

    #[test]
    fn empty_mount_means_no_persistence() {
        assert_eq!(from(&[("ASYA_PERSISTENCE_MOUNT", "")]).unwrap().mount, None);
    }

    #[test]
    fn fanout_hooks_only_for_true() {
        assert!(
            !from(&[("ASYA_SINK_FANOUT_HOOKS", "yes")])
                .unwrap()
                .sink_fanout_hooks
        );
        assert!(
            !from(&[("ASYA_SINK_FANOUT_HOOKS", "false")])
                .unwrap()
                .sink_fanout_hooks
        );
    }

    #[test]
    fn invalid_pause_metadata_is_a_clear_error() {
        let err = from(&[("ASYA_PAUSE_METADATA", "{not json")]).unwrap_err();
        assert!(matches!(err, CrewError::PauseMetadata(_)));
        assert!(err.to_string().contains("ASYA_PAUSE_METADATA"), "{err}");

        let err = from(&[("ASYA_PAUSE_METADATA", "[1]")]).unwrap_err();
        assert!(err.to_string().contains("got a JSON list"), "{err}");
    }

    #[test]
    fn fanin_timeout_is_a_positive_go_duration() {
        assert_eq!(from(&[]).unwrap().fanin_timeout, Duration::from_secs(600));
        assert_eq!(
            from(&[("TROUPE_FANIN_TIMEOUT", "1m30s")])
                .unwrap()
                .fanin_timeout,
            Duration::from_secs(90)
        );
        for bad in ["0s", "soon", "-5s"] {
            let err = from(&[("TROUPE_FANIN_TIMEOUT", bad)]).unwrap_err();
            assert!(matches!(err, CrewError::FanInTimeout { .. }), "{bad}");
            assert!(err.to_string().contains("TROUPE_FANIN_TIMEOUT"), "{err}");
        }
    }

    #[test]
    fn invalid_merge_mode_is_an_error() {
        let err = from(&[("ASYA_RESUME_MERGE_MODE", "sideways")]).unwrap_err();
        assert!(matches!(err, CrewError::MergeMode(ref m) if m == "sideways"));
        assert_eq!(
            from(&[("ASYA_RESUME_MERGE_MODE", "Shallow")])
                .unwrap()
                .resume_merge_mode,
            MergeMode::Shallow
        );
    }
}
