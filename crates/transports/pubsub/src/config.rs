//! Pub/Sub settings: from a `pubsub://` URL or from the `ASYA_*` environment
//! (protocol.md §15).

use std::time::Duration;

use reqwest::Url;
use troupe_transport::TransportError;

use crate::KIND;

/// The public Pub/Sub endpoint.
pub const GOOGLE_ENDPOINT: &str = "https://pubsub.googleapis.com";
/// Default time a call keeps retrying an unreachable endpoint before it fails.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);

/// Where and how to reach Pub/Sub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    /// Google Cloud project id.
    pub project: String,
    /// Endpoint override: the emulator (`127.0.0.1:8085`, `http://…`) or a private
    /// `https://` endpoint. `None`: the public endpoint.
    pub endpoint: Option<String>,
    /// What authenticates the requests.
    pub credentials: Credentials,
    /// How long a call retries an endpoint it cannot reach before it returns
    /// [`TransportError::Unavailable`].
    pub retry_for: Duration,
}

/// What authenticates requests to Pub/Sub.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing (the emulator).
    None,
    /// A fixed OAuth access token (`GOOGLE_OAUTH_ACCESS_TOKEN`).
    Token(String),
    /// An Application Default Credentials file: a service-account key (signed JWT
    /// exchanged for tokens) or gcloud's `authorized_user` (refresh token), read at
    /// connect.
    File {
        /// The JSON file (`GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's ADC file).
        path: std::path::PathBuf,
    },
    /// Tokens of the workload's service account from the GCE/GKE metadata server at
    /// `host` (`GCE_METADATA_HOST`; `None`: `metadata.google.internal`).
    Metadata {
        /// Metadata server `host[:port]`.
        host: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    // A bearer token is a credential: it never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::File { path } => f.debug_struct("File").field("path", path).finish(),
            Credentials::Metadata { host } => {
                f.debug_struct("Metadata").field("host", host).finish()
            }
        }
    }
}

impl Credentials {
    /// The usual choice for `endpoint`: none for a plain-HTTP endpoint (the emulator,
    /// protocol.md §15), else `GOOGLE_OAUTH_ACCESS_TOKEN` if set, else Application
    /// Default Credentials in Google's order: the file `GOOGLE_APPLICATION_CREDENTIALS`
    /// names, gcloud's `application_default_credentials.json` (in `CLOUDSDK_CONFIG`,
    /// else `~/.config/gcloud`) when it exists, the metadata server (`GCE_METADATA_HOST`).
    pub fn for_endpoint(endpoint: Option<&str>, get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| get(k).and_then(|v| non_empty(&v));
        if endpoint.is_some_and(|e| !e.starts_with("https://")) {
            return Credentials::None;
        }
        if let Some(t) = var("GOOGLE_OAUTH_ACCESS_TOKEN") {
            return Credentials::Token(t);
        }
        if let Some(path) = var("GOOGLE_APPLICATION_CREDENTIALS") {
            return Credentials::File { path: path.into() };
        }
        let gcloud = var("CLOUDSDK_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| var("HOME").map(|h| std::path::Path::new(&h).join(".config/gcloud")))
            .map(|dir| dir.join("application_default_credentials.json"));
        if let Some(path) = gcloud.filter(|p| p.is_file()) {
            return Credentials::File { path };
        }
        Credentials::Metadata {
            host: var("GCE_METADATA_HOST"),
        }
    }
}

impl PubSubConfig {
    /// Defaults for `project`: the public endpoint, tokens from the metadata server.
    pub fn new(project: impl Into<String>) -> Self {
        PubSubConfig {
            project: project.into(),
            endpoint: None,
            credentials: Credentials::Metadata { host: None },
            retry_for: DEFAULT_RETRY_FOR,
        }
    }

    /// Parses `pubsub://PROJECT?endpoint=HOST:PORT` (the endpoint optional);
    /// credentials as [`Credentials::for_endpoint`] picks them from the environment.
    pub fn from_url(url: &str) -> Result<Self, TransportError> {
        let parsed =
            Url::parse(url).map_err(|e| config(format!("bad Pub/Sub URL '{url}': {e}")))?;
        if parsed.scheme() != "pubsub" {
            return Err(config(format!(
                "bad Pub/Sub URL '{url}': the scheme must be pubsub:// (pubsub://PROJECT?endpoint=HOST:PORT)"
            )));
        }
        let mut c = PubSubConfig::new(parsed.host_str().unwrap_or(""));
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "endpoint" => c.endpoint = non_empty(&v),
                other => {
                    return Err(config(format!(
                        "unknown Pub/Sub URL parameter '{other}' (known: endpoint)"
                    )))
                }
            }
        }
        c.credentials = Credentials::for_endpoint(c.endpoint.as_deref(), |k| std::env::var(k).ok());
        c.validate()?;
        Ok(c)
    }

    /// From `ASYA_PUBSUB_PROJECT_ID` (required) and `ASYA_PUBSUB_ENDPOINT` (else the
    /// standard `PUBSUB_EMULATOR_HOST`), plus `GOOGLE_OAUTH_ACCESS_TOKEN` and
    /// `GCE_METADATA_HOST` for credentials.
    pub fn from_env() -> Result<Self, TransportError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`PubSubConfig::from_env`] over any variable lookup (tests, config files).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, TransportError> {
        let var = |k: &str| get(k).and_then(|v| non_empty(&v));
        let mut c = PubSubConfig::new(var("ASYA_PUBSUB_PROJECT_ID").unwrap_or_default());
        c.endpoint = var("ASYA_PUBSUB_ENDPOINT").or_else(|| var("PUBSUB_EMULATOR_HOST"));
        c.credentials = Credentials::for_endpoint(c.endpoint.as_deref(), &get);
        c.validate()?;
        Ok(c)
    }

    /// The base URL requests go to.
    pub fn endpoint_url(&self) -> Result<Url, TransportError> {
        let text = match &self.endpoint {
            Some(e) if e.contains("://") => e.clone(),
            // The emulator speaks plain HTTP; PUBSUB_EMULATOR_HOST is a bare host:port.
            Some(e) => format!("http://{e}"),
            None => GOOGLE_ENDPOINT.to_owned(),
        };
        let url =
            Url::parse(&text).map_err(|e| config(format!("bad Pub/Sub endpoint '{text}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config(format!(
                "bad Pub/Sub endpoint '{text}': it must be HOST:PORT or an http(s) URL"
            )));
        }
        Ok(url)
    }

    fn validate(&self) -> Result<(), TransportError> {
        let p = &self.project;
        // Project ids: 6–30 lowercase letters, digits and hyphens; emulators take any
        // simple name, so only the character set is checked.
        if p.is_empty() {
            return Err(config(
                "no Pub/Sub project: set ASYA_PUBSUB_PROJECT_ID (or pubsub://PROJECT)".to_owned(),
            ));
        }
        if !p.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == ':'
        }) {
            return Err(config(format!("bad Pub/Sub project id '{p}'")));
        }
        self.endpoint_url()?;
        Ok(())
    }
}

fn non_empty(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

pub(crate) fn config(message: String) -> TransportError {
    TransportError::Config {
        kind: KIND,
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn url_with_emulator() {
        let c = PubSubConfig::from_url("pubsub://my-project?endpoint=127.0.0.1:8085").unwrap();
        assert_eq!(c.project, "my-project");
        assert_eq!(c.endpoint_url().unwrap().as_str(), "http://127.0.0.1:8085/");
        let c = PubSubConfig::from_url("pubsub://p?endpoint=http%3A%2F%2Flocalhost%3A9").unwrap();
        assert_eq!(c.endpoint_url().unwrap().as_str(), "http://localhost:9/");
    }

    #[test]
    fn url_without_endpoint_is_google() {
        let c = PubSubConfig::from_url("pubsub://prod-123").unwrap();
        assert_eq!(c.endpoint, None);
        assert_eq!(
            c.endpoint_url().unwrap().as_str(),
            "https://pubsub.googleapis.com/"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "pubsub://",
            "sqs://p",
            "pubsub://p?bogus=1",
            "pubsub://p?endpoint=ftp://x",
            "nonsense",
        ] {
            match PubSubConfig::from_url(bad) {
                Err(TransportError::Config { kind: "pubsub", .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn application_default_credentials_follow_googles_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        let lookup = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        // No file anywhere: the metadata server.
        assert_eq!(
            Credentials::for_endpoint(None, lookup(vec![("HOME", home.clone())])),
            Credentials::Metadata { host: None }
        );
        let gcloud = dir.path().join(".config/gcloud");
        std::fs::create_dir_all(&gcloud).unwrap();
        let adc = gcloud.join("application_default_credentials.json");
        std::fs::write(&adc, "{}").unwrap();
        assert_eq!(
            Credentials::for_endpoint(None, lookup(vec![("HOME", home.clone())])),
            Credentials::File { path: adc.clone() },
            "gcloud's ADC file before the metadata server"
        );
        assert_eq!(
            Credentials::for_endpoint(
                None,
                lookup(vec![
                    ("HOME", home.clone()),
                    ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json".into())
                ])
            ),
            Credentials::File {
                path: "/keys/sa.json".into()
            },
            "the variable before gcloud's file"
        );
        assert_eq!(
            Credentials::for_endpoint(
                Some("localhost:8085"),
                lookup(vec![(
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    "/keys/sa.json".into()
                )])
            ),
            Credentials::None,
            "the emulator still takes none"
        );
    }

    #[test]
    fn env() {
        let env = |k: &str| {
            match k {
                "ASYA_PUBSUB_PROJECT_ID" => Some("proj"),
                "PUBSUB_EMULATOR_HOST" => Some("localhost:8681"),
                "GOOGLE_OAUTH_ACCESS_TOKEN" => Some("ya29.secret"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = PubSubConfig::from_lookup(env).unwrap();
        assert_eq!(c.project, "proj");
        assert_eq!(c.endpoint.as_deref(), Some("localhost:8681"));
        assert_eq!(
            c.credentials,
            Credentials::None,
            "the emulator takes no credentials"
        );

        let google = |k: &str| {
            match k {
                "ASYA_PUBSUB_PROJECT_ID" => Some("proj"),
                "GOOGLE_OAUTH_ACCESS_TOKEN" => Some("ya29.secret"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = PubSubConfig::from_lookup(google).unwrap();
        assert_eq!(c.credentials, Credentials::Token("ya29.secret".to_owned()));
        assert!(!format!("{c:?}").contains("ya29"), "the token never prints");
        let gke = |k: &str| {
            match k {
                "ASYA_PUBSUB_PROJECT_ID" => Some("proj"),
                "ASYA_PUBSUB_ENDPOINT" => Some("https://pubsub-psc.p.googleapis.com"),
                "GCE_METADATA_HOST" => Some("169.254.169.254"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = PubSubConfig::from_lookup(gke).unwrap();
        assert_eq!(
            c.credentials,
            Credentials::Metadata {
                host: Some("169.254.169.254".to_owned())
            },
            "a private https endpoint still needs a token"
        );

        let asya_wins = |k: &str| {
            match k {
                "ASYA_PUBSUB_PROJECT_ID" => Some("proj"),
                "ASYA_PUBSUB_ENDPOINT" => Some("127.0.0.1:1"),
                "PUBSUB_EMULATOR_HOST" => Some("localhost:8681"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = PubSubConfig::from_lookup(asya_wins).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("127.0.0.1:1"));

        match PubSubConfig::from_lookup(|_| None) {
            Err(TransportError::Config { message, .. }) => {
                assert!(message.contains("ASYA_PUBSUB_PROJECT_ID"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
}
