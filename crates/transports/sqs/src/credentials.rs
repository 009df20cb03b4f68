//! Where SQS credentials come from: fixed keys (environment or a shared profile), or
//! temporary ones from IRSA (web identity through STS), the container credentials
//! endpoint (EKS Pod Identity, ECS) or the EC2 instance metadata service (IMDSv2),
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
    /// The usual AWS chain over the process environment, at connect, in the order AWS
    /// documents: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
    /// else the shared profile `AWS_PROFILE` (default `default`) in `~/.aws/credentials`
    /// and `~/.aws/config` (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`): keys or
    /// `role_arn` + `web_identity_token_file`, or SSO (`sso_account_id` +
    /// `sso_role_name`, the token `aws sso login` cached); else IRSA (`AWS_ROLE_ARN` +
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`); else the container endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` / `_RELATIVE_URI`); else, with an endpoint
    /// override, a dummy key (emulators accept any); else the EC2 instance metadata
    /// service (IMDSv2; `AWS_EC2_METADATA_SERVICE_ENDPOINT`, off with
    /// `AWS_EC2_METADATA_DISABLED=true`).
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
    /// An IAM Identity Center (SSO) profile: role credentials for the token
    /// `aws sso login` cached.
    Sso {
        /// Portal base URL (`https://portal.sso.{region}.amazonaws.com`, or
        /// `AWS_ENDPOINT_URL_SSO`).
        portal: String,
        /// Account the role is in.
        account_id: String,
        /// Role to get credentials for.
        role_name: String,
        /// The CLI's cached token (`~/.aws/sso/cache/<sha1>.json`, re-read each refresh).
        token_file: PathBuf,
        /// Profile name, for the `aws sso login` hint.
        profile: String,
    },
    /// The EC2 instance metadata service, IMDSv2 (session token, then role credentials).
    Imds {
        /// Base URL, e.g. `http://169.254.169.254`.
        endpoint: String,
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
        if let Some(source) = from_profile(&var)? {
            return Ok(source);
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
        if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(config(format!("no AWS credentials: {NO_CREDENTIALS_HINT}")));
        }
        let endpoint = var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| "http://169.254.169.254".to_owned());
        Ok(AwsCredentialSource::Imds {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
        })
    }
}

const NO_CREDENTIALS_HINT: &str = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in ~/.aws/credentials or ~/.aws/config, or use IRSA (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI) or an EC2 instance profile";

/// The profile `AWS_PROFILE` (else `AWS_DEFAULT_PROFILE`, else `default`) from the
/// shared files, when it gives credentials; `None` falls through to the next link.
fn from_profile(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<AwsCredentialSource>, TransportError> {
    let explicit = var("AWS_PROFILE").or_else(|| var("AWS_DEFAULT_PROFILE"));
    let name = explicit.clone().unwrap_or_else(|| "default".to_owned());
    let home = var("HOME").map(PathBuf::from);
    let file = |env: &str, rel: &str| {
        var(env)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(rel)))
    };
    let read = |path: Option<PathBuf>| -> Result<Option<String>, TransportError> {
        let Some(path) = path else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(config(format!(
                "cannot read the AWS shared file {}: {e}",
                path.display()
            ))),
        }
    };
    let credentials = read(file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"))?;
    let config_text = read(file("AWS_CONFIG_FILE", ".aws/config"))?;
    // In the config file every profile but `default` is `[profile NAME]`.
    let config_section = if name == "default" {
        "default".to_owned()
    } else {
        format!("profile {name}")
    };
    let from_credentials = credentials.as_deref().and_then(|t| ini_section(t, &name));
    let from_config = config_text
        .as_deref()
        .and_then(|t| ini_section(t, &config_section));
    if from_credentials.is_none() && from_config.is_none() {
        return match explicit {
            Some(p) => Err(config(format!(
                "AWS_PROFILE '{p}' is in neither ~/.aws/credentials nor ~/.aws/config (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE)"
            ))),
            None => Ok(None),
        };
    }
    // The credentials file wins over the config file, key by key, as in the AWS CLI.
    let get = |key: &str| {
        from_credentials
            .as_ref()
            .and_then(|s| s.iter().find(|(k, _)| k == key))
            .or_else(|| {
                from_config
                    .as_ref()
                    .and_then(|s| s.iter().find(|(k, _)| k == key))
            })
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if let (Some(access_key_id), Some(secret_access_key)) =
        (get("aws_access_key_id"), get("aws_secret_access_key"))
    {
        return Ok(Some(AwsCredentialSource::Static(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: get("aws_session_token"),
        })));
    }
    if let (Some(role_arn), Some(token_file)) = (get("role_arn"), get("web_identity_token_file")) {
        return Ok(Some(AwsCredentialSource::WebIdentity {
            role_arn,
            token_file: PathBuf::from(token_file),
            session_name: get("role_session_name"),
        }));
    }
    if let (Some(account_id), Some(role_name)) = (get("sso_account_id"), get("sso_role_name")) {
        // New style: `sso_session = S` and an `[sso-session S]` section; legacy: the
        // start URL and region in the profile. The CLI's token cache is keyed by
        // SHA-1 of the session name, or of the start URL for legacy profiles.
        let (region, cache_key) = match get("sso_session") {
            Some(session) => {
                let section = config_text
                    .as_deref()
                    .and_then(|t| ini_section(t, &format!("sso-session {session}")))
                    .ok_or_else(|| {
                        config(format!(
                            "AWS profile '{name}' names sso_session '{session}', but ~/.aws/config has no [sso-session {session}]"
                        ))
                    })?;
                let region = section
                    .iter()
                    .find(|(k, _)| k == "sso_region")
                    .map(|(_, v)| v.clone());
                (region, session)
            }
            None => (
                get("sso_region"),
                get("sso_start_url").ok_or_else(|| {
                    config(format!(
                        "AWS profile '{name}' has sso_account_id but neither sso_session nor sso_start_url"
                    ))
                })?,
            ),
        };
        let region = region.ok_or_else(|| {
            config(format!(
                "AWS profile '{name}': its SSO settings have no sso_region"
            ))
        })?;
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            cache_key.as_bytes(),
        );
        let home = home.clone().ok_or_else(|| {
            config(
                "HOME is not set: the AWS SSO token cache (~/.aws/sso/cache) cannot be found"
                    .to_owned(),
            )
        })?;
        return Ok(Some(AwsCredentialSource::Sso {
            portal: var("AWS_ENDPOINT_URL_SSO")
                .unwrap_or_else(|| format!("https://portal.sso.{region}.amazonaws.com"))
                .trim_end_matches('/')
                .to_owned(),
            account_id,
            role_name,
            token_file: home
                .join(".aws/sso/cache")
                .join(format!("{}.json", crate::sigv4::hex(digest.as_ref()))),
            profile: name,
        }));
    }
    let unsupported = [
        "sso_start_url",
        "sso_session",
        "source_profile",
        "credential_process",
    ]
    .into_iter()
    .find(|k| get(k).is_some());
    if let Some(key) = unsupported {
        return Err(config(format!(
            "AWS profile '{name}' uses {key}, which troupe does not read: export the session's keys (`aws configure export-credentials --profile {name} --format env`) or use IRSA / Pod Identity"
        )));
    }
    Ok(None)
}

/// The `key = value` pairs of `[section]` in an AWS shared file (INI; keys lower-cased,
/// indented sub-settings skipped).
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            inside = name == section;
            if inside && found.is_none() {
                found = Some(Vec::new());
            }
            continue;
        }
        if !inside || raw.starts_with([' ', '\t']) {
            continue;
        }
        if let (Some(pairs), Some((k, v))) = (found.as_mut(), line.split_once('=')) {
            pairs.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    found
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
            AwsCredentialSource::Imds { .. } => "EC2 instance metadata (IMDSv2)",
            AwsCredentialSource::Sso { .. } => "SSO profile (IAM Identity Center)",
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
                let request = http
                    .post(self.sts.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .timeout(Duration::from_secs(10))
                    .body(body);
                let (status, text) = send_read(request, &shown, "STS").await?;
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
                let (status, text) =
                    send_read(request, uri, "container credentials endpoint").await?;
                json_credentials(uri, "container credentials endpoint", status, &text)
            }
            AwsCredentialSource::Imds { endpoint } => imds(http, endpoint).await,
            AwsCredentialSource::Sso {
                portal,
                account_id,
                role_name,
                token_file,
                profile,
            } => sso(http, portal, account_id, role_name, token_file, profile).await,
            AwsCredentialSource::Static(c) => Ok((c.clone(), None)),
            AwsCredentialSource::Environment => Err(config(
                "credentials were not resolved before connecting".to_owned(),
            )),
        }
    }
}

/// Credentials in the JSON the container endpoint and IMDS answer with.
fn json_credentials(
    url: &str,
    what: &str,
    status: reqwest::StatusCode,
    text: &str,
) -> Result<(AwsCredentials, Option<SystemTime>), TransportError> {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                auth(
                    url,
                    format!(
                        "{what} gave no {name} (HTTP {status}): {}",
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

/// `GetRoleCredentials` with the token `aws sso login` cached.
async fn sso(
    http: &reqwest::Client,
    portal: &str,
    account_id: &str,
    role_name: &str,
    token_file: &PathBuf,
    profile: &str,
) -> Result<(AwsCredentials, Option<SystemTime>), TransportError> {
    let login = format!("run `aws sso login --profile {profile}`");
    let text = std::fs::read_to_string(token_file).map_err(|e| {
        config(format!(
            "no cached SSO token for AWS profile '{profile}' ({}: {e}): {login}",
            token_file.display()
        ))
    })?;
    let cached: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let token = cached
        .get("accessToken")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            config(format!(
                "the SSO token cache {} has no accessToken: {login}",
                token_file.display()
            ))
        })?;
    let expired = cached
        .get("expiresAt")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .is_some_and(|e| e <= SystemTime::now());
    if expired {
        return Err(config(format!(
            "the SSO session of AWS profile '{profile}' has expired: {login}"
        )));
    }
    let url = format!("{portal}/federation/credentials");
    let request = http
        .get(&url)
        .query(&[("account_id", account_id), ("role_name", role_name)])
        .header("x-amz-sso_bearer_token", token)
        .timeout(Duration::from_secs(10));
    let (status, body) = send_read(request, &url, "SSO portal").await?;
    if !status.is_success() {
        return Err(auth(
            &url,
            format!(
                "SSO GetRoleCredentials for {role_name} in {account_id} refused (HTTP {status}: {}); {login}",
                body.chars().take(200).collect::<String>()
            ),
        ));
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let role = &v["roleCredentials"];
    let field = |name: &str| {
        role.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| auth(&url, format!("SSO portal answered without {name}")))
    };
    let creds = AwsCredentials {
        access_key_id: field("accessKeyId")?,
        secret_access_key: field("secretAccessKey")?,
        session_token: Some(field("sessionToken")?),
    };
    // Milliseconds since the epoch.
    let expires = role
        .get("expiration")
        .and_then(Value::as_u64)
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
    Ok((creds, expires))
}

/// IMDSv2: a session token (PUT), the instance profile's role name, its credentials.
async fn imds(
    http: &reqwest::Client,
    endpoint: &str,
) -> Result<(AwsCredentials, Option<SystemTime>), TransportError> {
    let token_url = format!("{endpoint}/latest/api/token");
    // Off EC2 nothing answers: say what to set instead of retrying for minutes.
    let response = http
        .put(&token_url)
        .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| {
            config(format!(
                "no AWS credentials: the EC2 instance metadata service at {endpoint} did not answer ({}); {NO_CREDENTIALS_HINT}",
                error_chain(&e)
            ))
        })?;
    let status = response.status();
    if !status.is_success() && !status.is_server_error() {
        // Not IMDS (a proxy refusing the link-local address) or IMDSv2 refused: no
        // instance profile to be had here.
        return Err(config(format!(
            "no AWS credentials: the EC2 instance metadata service at {endpoint} gave no session token (HTTP {status}); {NO_CREDENTIALS_HINT}"
        )));
    }
    let token = imds_text(response, &token_url, "session token").await?;
    let get = |url: String| {
        http.get(url)
            .header("x-aws-ec2-metadata-token", token.as_str())
            .timeout(Duration::from_secs(5))
    };
    let list_url = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let response = get(list_url.clone())
        .send()
        .await
        .map_err(|e| unavailable(&list_url, format!("IMDS: {}", error_chain(&e))))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(config(format!(
            "no AWS credentials: this EC2 instance has no IAM role (instance profile); {NO_CREDENTIALS_HINT}"
        )));
    }
    let roles = imds_text(response, &list_url, "role name").await?;
    let role = roles.lines().next().unwrap_or_default().trim().to_owned();
    if role.is_empty() {
        return Err(auth(&list_url, "IMDS listed no role".to_owned()));
    }
    let url = format!("{list_url}{role}");
    let (status, text) = send_read(get(url.clone()), &url, "IMDS").await?;
    json_credentials(&url, "the EC2 instance metadata service", status, &text)
}

async fn imds_text(
    response: reqwest::Response,
    url: &str,
    what: &str,
) -> Result<String, TransportError> {
    let (status, text) = read_answer(response, url, "IMDS").await?;
    if !status.is_success() {
        return Err(auth(
            url,
            format!(
                "IMDS gave no {what} (HTTP {status}): {}",
                text.chars().take(200).collect::<String>()
            ),
        ));
    }
    Ok(text.trim().to_owned())
}

/// Sends `request` to `url` and reads the answer (see [`read_answer`]).
async fn send_read(
    request: reqwest::RequestBuilder,
    url: &str,
    service: &str,
) -> Result<(reqwest::StatusCode, String), TransportError> {
    let response = request
        .send()
        .await
        .map_err(|e| unavailable(url, format!("{service}: {}", error_chain(&e))))?;
    read_answer(response, url, service).await
}

/// Reads an answer's body. A broken read or a 5xx is `Unavailable` (the caller retries
/// later); any other status is the caller's to judge.
async fn read_answer(
    response: reqwest::Response,
    url: &str,
    service: &str,
) -> Result<(reqwest::StatusCode, String), TransportError> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| unavailable(url, format!("{service}: {}", error_chain(&e))))?;
    if status.is_server_error() {
        return Err(unavailable(
            url,
            format!("{service} answered HTTP {status}"),
        ));
    }
    Ok((status, text))
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
        assert_eq!(
            src.resolve(env(&[]), false).unwrap(),
            AwsCredentialSource::Imds {
                endpoint: "http://169.254.169.254".into()
            },
            "with nothing else set, the instance profile is last"
        );
        assert!(matches!(
            src.resolve(env(&[("AWS_EC2_METADATA_DISABLED", "true")]), false),
            Err(TransportError::Config { kind: "sqs", .. })
        ));
    }

    #[test]
    fn shared_profile_credentials_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("credentials"),
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key = w\naws_session_token = tok\n",
        )
        .unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-west-1\n[profile irsa]\nrole_arn = arn:aws:iam::1:role/r\nweb_identity_token_file = /t\ns3 =\n  max_concurrent_requests = 2\n[profile sso]\nsso_session = corp\nsso_account_id = 1\n",
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let src = AwsCredentialSource::Environment;
        let default = src.resolve(env(&[("HOME", home)]), false).unwrap();
        assert!(
            matches!(&default, AwsCredentialSource::Static(c) if c.access_key_id == "AKIDDEFAULT"),
            "{default:?}"
        );
        let work = src
            .resolve(env(&[("HOME", home), ("AWS_PROFILE", "work")]), false)
            .unwrap();
        assert!(
            matches!(&work, AwsCredentialSource::Static(c) if c.access_key_id == "AKIDWORK" && c.session_token.as_deref() == Some("tok")),
            "{work:?}"
        );
        let irsa = src
            .resolve(env(&[("HOME", home), ("AWS_PROFILE", "irsa")]), false)
            .unwrap();
        assert_eq!(
            irsa,
            AwsCredentialSource::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token_file: "/t".into(),
                session_name: None
            }
        );
        // Environment keys still come first.
        let keys = src
            .resolve(
                env(&[
                    ("HOME", home),
                    ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                    ("AWS_SECRET_ACCESS_KEY", "e"),
                ]),
                false,
            )
            .unwrap();
        assert!(matches!(&keys, AwsCredentialSource::Static(c) if c.access_key_id == "AKIDENV"));
        for missing in ["nope", "sso"] {
            let err = src
                .resolve(env(&[("HOME", home), ("AWS_PROFILE", missing)]), false)
                .unwrap_err();
            assert!(matches!(err, TransportError::Config { .. }), "{err}");
        }
    }

    /// A one-port HTTP stub: answers each request with `answer(method, path, headers)`
    /// and records the requests it saw.
    async fn stub(
        answer: impl Fn(&str, &str, &str) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = std::sync::Arc::new(answer);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = sock.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let mut first = head.lines().next().unwrap().split(' ');
                    let (method, path) = (first.next().unwrap(), first.next().unwrap());
                    log.lock().unwrap().push(format!("{method} {path}"));
                    let (code, body) = answer(method, path, &head.to_ascii_lowercase());
                    let reply = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    sock.write_all(reply.as_bytes()).await.unwrap();
                });
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn imdsv2_is_used_when_nothing_else_is_set() {
        let (url, seen) = stub(|method, path, headers| match (method, path) {
            ("PUT", "/latest/api/token")
                if headers.contains("x-aws-ec2-metadata-token-ttl-seconds: 21600") =>
            {
                (200, "SESSIONTOKEN".into())
            }
            // IMDSv2 only: a call without the session token is refused.
            ("GET", _) if !headers.contains("x-aws-ec2-metadata-token: sessiontoken") => {
                (401, String::new())
            }
            ("GET", "/latest/meta-data/iam/security-credentials/") => (200, "node-role\n".into()),
            ("GET", "/latest/meta-data/iam/security-credentials/node-role") => (
                200,
                r#"{"Code":"Success","AccessKeyId":"ASIAIMDS","SecretAccessKey":"sk","Token":"st","Expiration":"2099-01-01T00:00:00Z"}"#.into(),
            ),
            _ => (404, String::new()),
        })
        .await;
        let source = AwsCredentialSource::Environment
            .resolve(env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url)]), false)
            .unwrap();
        let provider = Provider::new(source, Url::parse("http://127.0.0.1:1").unwrap());
        assert_eq!(provider.describe(), "EC2 instance metadata (IMDSv2)");
        let http = reqwest::Client::new();
        let creds = provider.get(&http).await.unwrap();
        assert_eq!(creds.access_key_id, "ASIAIMDS");
        assert_eq!(creds.secret_access_key, "sk");
        assert_eq!(creds.session_token.as_deref(), Some("st"));
        assert_eq!(
            seen.lock().unwrap().clone(),
            [
                "PUT /latest/api/token",
                "GET /latest/meta-data/iam/security-credentials/",
                "GET /latest/meta-data/iam/security-credentials/node-role"
            ]
        );
        // Cached until near expiry: no second round trip.
        provider.get(&http).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn sso_profiles_use_the_cached_login_token() {
        let (portal, seen) = stub(|method, path, headers| {
            if method == "GET"
                && path == "/federation/credentials?account_id=123456789012&role_name=Dev"
                && headers.contains("x-amz-sso_bearer_token: cachedtoken")
            {
                (
                    200,
                    r#"{"roleCredentials":{"accessKeyId":"ASIASSO","secretAccessKey":"ssk","sessionToken":"sst","expiration":4070908800000}}"#.into(),
                )
            } else {
                (401, r#"{"message":"Session token not found or invalid"}"#.into())
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir_all(aws.join("sso/cache")).unwrap();
        std::fs::write(
            aws.join("config"),
            "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Dev\nregion = eu-west-1\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n",
        )
        .unwrap();
        // The AWS CLI names the cache file by SHA-1 of the session name.
        std::fs::write(
            aws.join("sso/cache/ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
            r#"{"startUrl":"https://corp.awsapps.com/start","region":"eu-west-1","accessToken":"CACHEDTOKEN","expiresAt":"2099-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let source = AwsCredentialSource::Environment
            .resolve(
                env(&[
                    ("HOME", home),
                    ("AWS_PROFILE", "dev"),
                    ("AWS_ENDPOINT_URL_SSO", &portal),
                ]),
                false,
            )
            .unwrap();
        let provider = Provider::new(source, Url::parse("http://127.0.0.1:1").unwrap());
        assert_eq!(provider.describe(), "SSO profile (IAM Identity Center)");
        let creds = provider.get(&reqwest::Client::new()).await.unwrap();
        assert_eq!(creds.access_key_id, "ASIASSO");
        assert_eq!(creds.session_token.as_deref(), Some("sst"));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn no_metadata_service_says_what_to_set() {
        let source = AwsCredentialSource::Imds {
            endpoint: "http://127.0.0.1:1".into(),
        };
        let provider = Provider::new(source, Url::parse("http://127.0.0.1:1").unwrap());
        let err = provider.get(&reqwest::Client::new()).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::Config { message, .. } if message.contains("AWS_PROFILE")),
            "{err}"
        );
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
