//! Bearer tokens for the public Pub/Sub endpoint: a fixed token, or short-lived tokens
//! of the workload's service account from the GCE/GKE metadata server (what Workload
//! Identity serves on GKE). Emulators need none.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;
use troupe_transport::TransportError;

use crate::KIND;
use troupe_transport::retry::error_chain;

/// Where tokens come from.
pub(crate) enum TokenSource {
    /// The emulator: no `Authorization` header.
    None,
    /// A fixed token (`GOOGLE_OAUTH_ACCESS_TOKEN`).
    Fixed(String),
    /// The metadata server, cached until shortly before expiry.
    Metadata {
        url: String,
        cached: Mutex<Option<(String, Instant)>>,
    },
}

/// Tokens are refreshed this long before they expire.
const REFRESH_EARLY: Duration = Duration::from_secs(60);

impl TokenSource {
    /// The metadata server's token URL for `host` (default `metadata.google.internal`).
    pub(crate) fn metadata(host: Option<&str>) -> Self {
        let host = host.unwrap_or("metadata.google.internal");
        TokenSource::Metadata {
            url: format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            cached: Mutex::new(None),
        }
    }

    /// The token to send, if any.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
    ) -> Result<Option<String>, TransportError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Fixed(t) => Ok(Some(t.clone())),
            TokenSource::Metadata { url, cached } => {
                let mut slot = cached.lock().await;
                if let Some((token, until)) = slot.as_ref() {
                    if Instant::now() < *until {
                        return Ok(Some(token.clone()));
                    }
                }
                let (token, lifetime) = fetch(http, url, endpoint).await?;
                *slot = Some((
                    token.clone(),
                    Instant::now() + lifetime.saturating_sub(REFRESH_EARLY),
                ));
                Ok(Some(token))
            }
        }
    }

    /// Drops a cached token the server refused, so the next call fetches a new one.
    pub(crate) async fn invalidate(&self) -> bool {
        match self {
            TokenSource::Metadata { cached, .. } => cached.lock().await.take().is_some(),
            _ => false,
        }
    }
}

fn auth_error(endpoint: &str, message: String) -> TransportError {
    TransportError::Auth {
        kind: KIND,
        url: endpoint.to_owned(),
        message,
    }
}

/// One token from the metadata server, retried a few times: the GKE metadata server can
/// be slow to answer right after a pod starts.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    endpoint: &str,
) -> Result<(String, Duration), TransportError> {
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
        }
        let response = match http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                last = format!(
                    "no Google credentials: the metadata server at {url} cannot be reached ({}); outside GCE/GKE set GOOGLE_OAUTH_ACCESS_TOKEN, or ASYA_PUBSUB_ENDPOINT for the emulator",
                    error_chain(&e)
                );
                continue;
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            last = format!(
                "the metadata server at {url} gave no token (HTTP {status}): {}",
                body.chars().take(200).collect::<String>()
            );
            if status.is_server_error() {
                continue;
            }
            break;
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            last = format!("the metadata server at {url} answered without an access_token");
            break;
        };
        let lifetime = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .map_or(Duration::from_secs(300), Duration::from_secs);
        return Ok((token.to_owned(), lifetime));
    }
    Err(auth_error(endpoint, last))
}
