//! Where SQS credentials come from: fixed keys, or temporary ones from IRSA (web
//! identity through STS) or the container credentials endpoint (EKS Pod Identity, ECS),
//! refreshed before they expire.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use troupe_transport::TransportError;

use crate::config::config;
use crate::sigv4::AwsCredentials;
use crate::KIND;
use troupe_transport::retry::error_chain;

/// Where the transport gets its AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AwsCredentialSource {
    /// The usual AWS chain over the process environment, at connect: `AWS_ACCESS_KEY_ID`
    /// / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`; else IRSA
    /// (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`); else the container endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` / `_RELATIVE_URI`); else, with an endpoint
    /// override, a dummy key (emulators accept any). Instance profiles are not read.
    #[default]
    Environment,
    /// These keys.
    Static(AwsCredentials),
    /// `AssumeRoleWithWebIdentity` with the token in `token_file` (IRSA on EKS).
    WebIdentity {
        /// Role to assume.
        role_arn: String,
        /// File holding the OIDC token (re-read on every refresh: Kubernetes rotates it).
        token_file: PathBuf,
        /// Session name; `None`: `troupe-{pid}`.
        session_name: Option<String>,
    },
    /// The container credentials endpoint (EKS Pod Identity, ECS task roles).
    Container {
        /// Full URI of the endpoint.
        uri: String,
        /// `Authorization` header value.
        authorization: Option<String>,
        /// File holding the `Authorization` header value (re-read on every refresh).
        authorization_file: Option<PathBuf>,
    },
}

impl AwsCredentialSource {
    /// Resolves [`AwsCredentialSource::Environment`] over `get`; `dummy_ok` when an
    /// endpoint override is set.
    pub(crate) fn resolve(
        &self,
        get: impl Fn(&str) -> Option<String>,
        dummy_ok: bool,
    ) -> Result<AwsCredentialSource, TransportError> {
        if *self != AwsCredentialSource::Environment {
            return Ok(self.clone());
        }
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(c) = AwsCredentials::from_lookup(&get) {
            return Ok(AwsCredentialSource::Static(c));
        }
        if let (Some(role_arn), Some(file)) =
            (var("AWS_ROLE_ARN"), var("AWS_WEB_IDENTITY_TOKEN_FILE"))
        {
            return Ok(AwsCredentialSource::WebIdentity {
                role_arn,
                token_file: PathBuf::from(file),
                session_name: var("AWS_ROLE_SESSION_NAME"),
            });
        }
        let uri = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|r| format!("http://169.254.170.2{r}"))
        });
        if let Some(uri) = uri {
            return Ok(AwsCredentialSource::Container {
                uri,
                authorization: var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
                authorization_file: var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                    .map(PathBuf::from),
            });
        }
        if dummy_ok {
            // Emulators take any key, and requiring one there only gets in the way.
            return Ok(AwsCredentialSource::Static(AwsCredentials {
                access_key_id: "troupe".to_owned(),
                secret_access_key: "troupe".to_owned(),
                session_token: None,
            }));
        }
        Err(config(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE) or EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI); instance profiles are not supported".to_owned(),
        ))
    }
}

/// Temporary credentials are refreshed this long before they expire.
const REFRESH_EARLY: Duration = Duration::from_secs(300);

/// Hands out current credentials for a resolved source.
pub(crate) struct Provider {
    source: AwsCredentialSource,
    /// STS endpoint for web identity.
    sts: Url,
    cached: Mutex<Option<(AwsCredentials, Option<SystemTime>)>>,
}

impl Provider {
    /// For a resolved `source` (not `Environment`).
    pub(crate) fn new(source: AwsCredentialSource, sts: Url) -> Self {
        Provider {
            source,
            sts,
            cached: Mutex::new(None),
        }
    }

    /// Says where credentials come from, for the startup log.
    pub(crate) fn describe(&self) -> &'static str {
        match &self.source {
            AwsCredentialSource::Environment | AwsCredentialSource::Static(_) => "static keys",
            AwsCredentialSource::WebIdentity { .. } => "web identity (IRSA)",
            AwsCredentialSource::Container { .. } => "container credentials endpoint",
        }
    }

    /// Current credentials, fetched or refreshed as needed.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
    ) -> Result<AwsCredentials, TransportError> {
        if let AwsCredentialSource::Static(c) = &self.source {
            return Ok(c.clone());
        }
        let mut slot = self.cached.lock().await;
        if let Some((c, expires)) = slot.as_ref() {
            let fresh = expires.is_none_or(|e| SystemTime::now() + REFRESH_EARLY < e);
            if fresh {
                return Ok(c.clone());
            }
        }
        let mut last = None;
        for attempt in 0..3u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
            }
            match self.fetch(http).await {
                Ok(got) => {
                    let c = got.0.clone();
                    *slot = Some(got);
                    return Ok(c);
                }
                // Refused: asking again will not help.
                Err(e @ (TransportError::Auth { .. } | TransportError::Config { .. })) => {
                    return Err(e)
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(TransportError::Closed))
    }

    /// Drops cached temporary credentials the service refused (expired early).
    pub(crate) async fn invalidate(&self) -> bool {
        if matches!(self.source, AwsCredentialSource::Static(_)) {
            return false;
        }
        self.cached.lock().await.take().is_some()
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
    ) -> Result<(AwsCredentials, Option<SystemTime>), TransportError> {
        match &self.source {
            AwsCredentialSource::WebIdentity {
                role_arn,
                token_file,
                session_name,
            } => {
                let token = read_trimmed(token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")?;
                let session = session_name
                    .clone()
                    .unwrap_or_else(|| format!("troupe-{}", std::process::id()));
                let form = [
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("Version", "2011-06-15"),
                    ("RoleArn", role_arn.as_str()),
                    ("RoleSessionName", session.as_str()),
                    ("WebIdentityToken", token.as_str()),
                    ("DurationSeconds", "3600"),
                ];
                let body: String = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", form_encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                let shown = self.sts.to_string();
                let response = http
                    .post(self.sts.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .timeout(Duration::from_secs(10))
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| unavailable(&shown, format!("STS: {}", error_chain(&e))))?;
                let status = response.status();
                let text = response
                    .text()
                    .await
                    .map_err(|e| unavailable(&shown, format!("STS: {}", error_chain(&e))))?;
                if status.is_server_error() {
                    return Err(unavailable(&shown, format!("STS answered HTTP {status}")));
                }
                if !status.is_success() {
                    let code = xml_field(&text, "Code").unwrap_or_default();
                    let message = xml_field(&text, "Message").unwrap_or_default();
                    return Err(auth(
                        &shown,
                        format!("AssumeRoleWithWebIdentity for {role_arn}: {code}: {message}"),
                    ));
                }
                let field = |name: &str| {
                    xml_field(&text, name)
                        .ok_or_else(|| auth(&shown, format!("STS answered without {name}")))
                };
                let creds = AwsCredentials {
                    access_key_id: field("AccessKeyId")?,
                    secret_access_key: field("SecretAccessKey")?,
                    session_token: Some(field("SessionToken")?),
                };
                Ok((
                    creds,
                    xml_field(&text, "Expiration").and_then(|e| parse_time(&e)),
                ))
            }
            AwsCredentialSource::Container {
                uri,
                authorization,
                authorization_file,
            } => {
                let mut request = http.get(uri).timeout(Duration::from_secs(5));
                let header = match (authorization, authorization_file) {
                    (Some(a), _) => Some(a.clone()),
                    (None, Some(f)) => {
                        Some(read_trimmed(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")?)
                    }
                    (None, None) => None,
                };
                if let Some(h) = header {
                    request = request.header("authorization", h);
                }
                let response = request.send().await.map_err(|e| {
                    unavailable(uri, format!("container credentials: {}", error_chain(&e)))
                })?;
                let status = response.status();
                let text = response.text().await.map_err(|e| {
                    unavailable(uri, format!("container credentials: {}", error_chain(&e)))
                })?;
                if status.is_server_error() {
                    return Err(unavailable(
                        uri,
                        format!("container credentials endpoint answered HTTP {status}"),
                    ));
                }
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let field = |name: &str| {
                    v.get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            auth(
                                uri,
                                format!(
                                "container credentials endpoint gave no {name} (HTTP {status}): {}",
                                text.chars().take(200).collect::<String>()
                            ),
                            )
                        })
                };
                let creds = AwsCredentials {
                    access_key_id: field("AccessKeyId")?,
                    secret_access_key: field("SecretAccessKey")?,
                    session_token: v.get("Token").and_then(Value::as_str).map(str::to_owned),
                };
                let expires = v
                    .get("Expiration")
                    .and_then(Value::as_str)
                    .and_then(parse_time);
                Ok((creds, expires))
            }
            AwsCredentialSource::Static(c) => Ok((c.clone(), None)),
            AwsCredentialSource::Environment => Err(config(
                "credentials were not resolved before connecting".to_owned(),
            )),
        }
    }
}

fn read_trimmed(path: &PathBuf, what: &str) -> Result<String, TransportError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| config(format!("cannot read {what} {}: {e}", path.display())))
}

fn unavailable(url: &str, message: String) -> TransportError {
    TransportError::Unavailable {
        kind: KIND,
        url: url.to_owned(),
        message,
    }
}

fn auth(url: &str, message: String) -> TransportError {
    TransportError::Auth {
        kind: KIND,
        url: url.to_owned(),
        message,
    }
}

fn parse_time(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// The text of the first `<name>…</name>` (STS answers in XML; values are plain).
pub(crate) fn xml_field(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_chain_prefers_keys_then_irsa_then_container() {
        let src = AwsCredentialSource::Environment;
        let keys = src
            .resolve(
                env(&[
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "s"),
                    ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ]),
                false,
            )
            .unwrap();
        assert!(matches!(keys, AwsCredentialSource::Static(c) if c.access_key_id == "AKID"));
        let irsa = src
            .resolve(
                env(&[
                    ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ]),
                false,
            )
            .unwrap();
        assert_eq!(
            irsa,
            AwsCredentialSource::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token_file: "/t".into(),
                session_name: None
            }
        );
        let pod = src
            .resolve(
                env(&[
                    (
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        "http://169.254.170.23/v1/credentials",
                    ),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token"),
                ]),
                false,
            )
            .unwrap();
        assert_eq!(
            pod,
            AwsCredentialSource::Container {
                uri: "http://169.254.170.23/v1/credentials".into(),
                authorization: None,
                authorization_file: Some("/var/run/token".into()),
            }
        );
        let ecs = src
            .resolve(
                env(&[(
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/x",
                )]),
                false,
            )
            .unwrap();
        assert!(
            matches!(ecs, AwsCredentialSource::Container { uri, .. } if uri == "http://169.254.170.2/v2/credentials/x")
        );
        assert!(matches!(
            src.resolve(env(&[]), true).unwrap(),
            AwsCredentialSource::Static(_)
        ));
        assert!(matches!(
            src.resolve(env(&[]), false),
            Err(TransportError::Config { kind: "sqs", .. })
        ));
    }

    #[test]
    fn xml_and_form_helpers() {
        let xml = "<R><Credentials><AccessKeyId>ASIA1</AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials></R>";
        assert_eq!(xml_field(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_field(xml, "SessionToken").as_deref(), Some("a&b"));
        assert_eq!(xml_field(xml, "Nope"), None);
        assert_eq!(
            form_encode("arn:aws:iam::1:role/r x"),
            "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr%20x"
        );
        assert!(parse_time("2026-01-01T00:00:00Z").is_some());
    }
}
