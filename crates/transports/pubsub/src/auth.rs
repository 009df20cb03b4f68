//! Bearer tokens for the public Pub/Sub endpoint: a fixed token, or short-lived tokens
//! from an Application Default Credentials file (a service-account key's signed JWT, or
//! gcloud's refresh token) or of the workload's service account from the GCE/GKE
//! metadata server (what Workload Identity serves on GKE). Emulators need none.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};

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
    /// Fetched tokens, cached until shortly before expiry.
    Fetched {
        from: Fetcher,
        cached: Mutex<Option<(String, Instant)>>,
    },
}

/// Where fetched tokens come from.
pub(crate) enum Fetcher {
    /// The metadata server's token URL.
    Metadata { url: String },
    /// A service-account key: an RS256 JWT assertion exchanged at `token_uri`.
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        key: Box<RsaKeyPair>,
        token_uri: String,
    },
    /// gcloud's `authorized_user`: a refresh token exchanged at `token_uri`.
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
    },
}

/// The scope asked for with a service-account key.
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Tokens are refreshed this long before they expire.
const REFRESH_EARLY: Duration = Duration::from_secs(60);

impl TokenSource {
    /// The metadata server's token URL for `host` (default `metadata.google.internal`).
    pub(crate) fn metadata(host: Option<&str>) -> Self {
        let host = host.unwrap_or("metadata.google.internal");
        TokenSource::Fetched {
            from: Fetcher::Metadata {
                url: format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                ),
            },
            cached: Mutex::new(None),
        }
    }

    /// An Application Default Credentials file (`service_account` or `authorized_user`).
    pub(crate) fn from_file(path: &Path) -> Result<Self, TransportError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            config(format!(
                "cannot read the Google credentials file {shown} (GOOGLE_APPLICATION_CREDENTIALS or gcloud's application_default_credentials.json): {e}"
            ))
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            config(format!(
                "the Google credentials file {shown} is not JSON: {e}"
            ))
        })?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| config(format!("the Google credentials file {shown} has no {name}")))
        };
        let token_uri = field("token_uri").unwrap_or_else(|_| GOOGLE_TOKEN_URI.to_owned());
        let from = match field("type")?.as_str() {
            "service_account" => {
                let pem = field("private_key")?;
                let der: String = pem
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.starts_with("-----"))
                    .collect();
                let der = STANDARD.decode(der).map_err(|e| {
                    config(format!(
                        "the private_key in {shown} is not PEM: {e}; download a new JSON key"
                    ))
                })?;
                let key = RsaKeyPair::from_pkcs8(&der).map_err(|e| {
                    config(format!(
                        "the private_key in {shown} is not an RSA PKCS#8 key ({e}); download a new JSON key"
                    ))
                })?;
                Fetcher::ServiceAccount {
                    email: field("client_email")?,
                    key_id: field("private_key_id").ok(),
                    key: Box::new(key),
                    token_uri,
                }
            }
            "authorized_user" => Fetcher::AuthorizedUser {
                client_id: field("client_id")?,
                client_secret: field("client_secret")?,
                refresh_token: field("refresh_token")?,
                token_uri,
            },
            other => {
                return Err(config(format!(
                    "the Google credentials file {shown} is of type '{other}', which troupe does not read (only service_account and authorized_user); set GOOGLE_OAUTH_ACCESS_TOKEN or use the metadata server"
                )))
            }
        };
        Ok(TokenSource::Fetched {
            from,
            cached: Mutex::new(None),
        })
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
            TokenSource::Fetched { from, cached } => {
                let mut slot = cached.lock().await;
                if let Some((token, until)) = slot.as_ref() {
                    if Instant::now() < *until {
                        return Ok(Some(token.clone()));
                    }
                }
                let (token, lifetime) = fetch(http, from, endpoint).await?;
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
            TokenSource::Fetched { cached, .. } => cached.lock().await.take().is_some(),
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

fn config(message: String) -> TransportError {
    TransportError::Config {
        kind: KIND,
        message,
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |v: &str| {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signed RS256 JWT a service account trades for a token (Google's OAuth 2.0
/// server-to-server flow).
fn assertion(
    email: &str,
    key_id: Option<&str>,
    key: &RsaKeyPair,
    audience: &str,
) -> Result<String, TransportError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = Value::String(kid.to_owned());
    }
    let claims = serde_json::json!({
        "iss": email,
        "scope": SCOPE,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .map_err(|_| config(format!("cannot sign the JWT for {email} with its key")))?;
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// One token, retried a few times: the GKE metadata server can be slow to answer right
/// after a pod starts, and the token endpoint can blip.
async fn fetch(
    http: &reqwest::Client,
    from: &Fetcher,
    endpoint: &str,
) -> Result<(String, Duration), TransportError> {
    let (url, what) = match from {
        Fetcher::Metadata { url } => (url.as_str(), "the metadata server"),
        Fetcher::ServiceAccount { token_uri, .. } | Fetcher::AuthorizedUser { token_uri, .. } => {
            (token_uri.as_str(), "the Google token endpoint")
        }
    };
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
        }
        let request = match from {
            Fetcher::Metadata { url } => http.get(url).header("Metadata-Flavor", "Google"),
            Fetcher::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
            } => {
                let jwt = assertion(email, key_id.as_deref(), key, token_uri)?;
                http.post(token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form(&[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                        ("assertion", &jwt),
                    ]))
            }
            Fetcher::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => http
                .post(token_uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret),
                    ("refresh_token", refresh_token),
                ])),
        };
        let response = match request.timeout(Duration::from_secs(5)).send().await {
            Ok(r) => r,
            Err(e) => {
                last = match from {
                    Fetcher::Metadata { .. } => format!(
                        "no Google credentials: the metadata server at {url} cannot be reached ({}); outside GCE/GKE set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run `gcloud auth application-default login`, set GOOGLE_OAUTH_ACCESS_TOKEN, or ASYA_PUBSUB_ENDPOINT for the emulator",
                        error_chain(&e)
                    ),
                    _ => format!("{what} at {url} cannot be reached: {}", error_chain(&e)),
                };
                continue;
            }
        };
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            last = format!(
                "{what} at {url} gave no token (HTTP {status}): {}",
                body.chars().take(200).collect::<String>()
            );
            if status.is_server_error() {
                continue;
            }
            break;
        }
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            last = format!("{what} at {url} answered without an access_token");
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    use std::sync::{Arc, Mutex as StdMutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A token endpoint stub: hands each form-encoded POST body to `answer` and sends
    /// back its (status, JSON); counts the calls.
    async fn token_endpoint(
        answer: impl Fn(&str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Arc<StdMutex<usize>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let calls = Arc::new(StdMutex::new(0));
        let count = calls.clone();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let (answer, count) = (answer.clone(), count.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let body = loop {
                        let n = sock.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap())
                                })
                                .unwrap_or(0);
                            if body.len() >= len {
                                break body.to_owned();
                            }
                        }
                    };
                    *count.lock().unwrap() += 1;
                    let (code, json) = answer(&body);
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                        json.len()
                    );
                    sock.write_all(reply.as_bytes()).await.unwrap();
                });
            }
        });
        (url, calls)
    }

    fn form_value(body: &str, key: &str) -> Option<String> {
        body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| {
                let mut out = Vec::new();
                let bytes = v.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' {
                        out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).unwrap()
            })
        })
    }

    #[tokio::test]
    async fn a_service_account_key_signs_a_jwt_exchanged_for_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("key.pem");
        // A fresh RSA key per run, as Google's JSON keys carry (PKCS#8 PEM).
        let made = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem_path)
            .output()
            .expect("openssl makes the test's service-account key");
        assert!(made.status.success(), "{made:?}");
        let pem = std::fs::read_to_string(&pem_path).unwrap();
        let der = STANDARD
            .decode(
                pem.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap();
        let public = RsaKeyPair::from_pkcs8(&der)
            .unwrap()
            .public()
            .as_ref()
            .to_vec();

        let audience = Arc::new(StdMutex::new(String::new()));
        let aud = audience.clone();
        let (url, calls) = token_endpoint(move |body| {
            if form_value(body, "grant_type").as_deref()
                != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            {
                return (400, r#"{"error":"unsupported_grant_type"}"#.into());
            }
            let jwt = form_value(body, "assertion").unwrap();
            let (message, signature) = jwt.rsplit_once('.').unwrap();
            let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
            if UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(message.as_bytes(), &signature)
                .is_err()
            {
                return (
                    400,
                    r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
                        .into(),
                );
            }
            let (header, claims) = message.split_once('.').unwrap();
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
            let claims: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
            assert_eq!(header["alg"], "RS256");
            assert_eq!(header["kid"], "key-1");
            assert_eq!(claims["iss"], "troupe@proj.iam.gserviceaccount.com");
            assert_eq!(claims["scope"], SCOPE);
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                3600
            );
            *aud.lock().unwrap() = claims["aud"].as_str().unwrap().to_owned();
            (
                200,
                r#"{"access_token":"ya29.sa","expires_in":3599,"token_type":"Bearer"}"#.into(),
            )
        })
        .await;
        let key_file = dir.path().join("sa.json");
        std::fs::write(
            &key_file,
            serde_json::json!({
                "type": "service_account",
                "project_id": "proj",
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": "troupe@proj.iam.gserviceaccount.com",
                "token_uri": url,
            })
            .to_string(),
        )
        .unwrap();
        let source = TokenSource::from_file(&key_file).unwrap();
        let http = reqwest::Client::new();
        let token = source.token(&http, "https://pubsub.googleapis.com").await;
        assert_eq!(token.unwrap().as_deref(), Some("ya29.sa"));
        assert_eq!(*audience.lock().unwrap(), url, "aud is the token URI");
        // Cached: no second exchange until near expiry.
        source.token(&http, "x").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 1);
        assert!(source.invalidate().await);
        source.token(&http, "x").await.unwrap();
        assert_eq!(*calls.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn an_authorized_user_adc_file_refreshes_a_token() {
        let (url, calls) = token_endpoint(|body| {
            let ok = form_value(body, "grant_type").as_deref() == Some("refresh_token")
                && form_value(body, "client_id").as_deref()
                    == Some("cid.apps.googleusercontent.com")
                && form_value(body, "client_secret").as_deref() == Some("csecret")
                && form_value(body, "refresh_token").as_deref() == Some("1//refresh/tok");
            if ok {
                (
                    200,
                    r#"{"access_token":"ya29.user","expires_in":3599}"#.into(),
                )
            } else {
                (400, r#"{"error":"invalid_grant"}"#.into())
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let adc = dir.path().join("application_default_credentials.json");
        std::fs::write(
            &adc,
            serde_json::json!({
                "type": "authorized_user",
                "client_id": "cid.apps.googleusercontent.com",
                "client_secret": "csecret",
                "refresh_token": "1//refresh/tok",
                "token_uri": url,
            })
            .to_string(),
        )
        .unwrap();
        let source = TokenSource::from_file(&adc).unwrap();
        let token = source.token(&reqwest::Client::new(), "x").await.unwrap();
        assert_eq!(token.as_deref(), Some("ya29.user"));
        assert_eq!(*calls.lock().unwrap(), 1);

        // A refused refresh token is an Auth error carrying Google's answer.
        std::fs::write(
            &adc,
            serde_json::json!({
                "type": "authorized_user", "client_id": "c", "client_secret": "s",
                "refresh_token": "revoked", "token_uri": url,
            })
            .to_string(),
        )
        .unwrap();
        let err = TokenSource::from_file(&adc)
            .unwrap()
            .token(&reqwest::Client::new(), "x")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TransportError::Auth { message, .. } if message.contains("invalid_grant")),
            "{err}"
        );
    }

    #[test]
    fn unreadable_or_unknown_files_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TokenSource::from_file(&dir.path().join("nope.json"));
        assert!(matches!(missing, Err(TransportError::Config { .. })));
        let file = dir.path().join("ext.json");
        std::fs::write(&file, r#"{"type":"external_account"}"#).unwrap();
        let Err(TransportError::Config { message, .. }) = TokenSource::from_file(&file) else {
            panic!("external_account is refused")
        };
        assert!(message.contains("external_account"), "{message}");
    }
}
