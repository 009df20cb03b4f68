//! Amazon SQS transport (platform.md §1.2, wire-compatible with Asya's SQS transport).
//!
//! A small client of SQS's AWS JSON 1.0 protocol (`X-Amz-Target: AmazonSQS.<Action>`)
//! over `reqwest`, signed with SigV4: the AWS SDK would add minutes to every cold build
//! for the eight calls used here. It works against AWS and against emulators that speak
//! the JSON protocol (moto, LocalStack).
//!
//! # Mapping (platform.md §1.2)
//!
//! | trait | SQS |
//! |---|---|
//! | queue | standard queue `asya-{ns}-{actor}`, found with `GetQueueUrl` (cached), created on first use with redrive to `asya-{ns}-dlq` after `max_deliveries` receives |
//! | `send` | `SendMessage` |
//! | `send_with_delay(d)` | `DelaySeconds` = ⌈d⌉ up to 900 s; above: 900 s plus `x-troupe-deliver-at` (deferral) |
//! | `receive` | `ReceiveMessage` long poll (`wait_time`), visibility = the connect options' visibility timeout |
//! | `ack` | `DeleteMessage` |
//! | `extend` (a live handler's lease) | `ChangeMessageVisibility` = the visibility timeout, every third of it |
//! | `nack(d)` / `requeue` | `ChangeMessageVisibility` ⌈d⌉ (at most 12 h) / 0 |
//! | `depth` | `GetQueueAttributes`: `ApproximateNumberOfMessages` / `…NotVisible` / `…Delayed` |
//!
//! Delays are rounded up to whole seconds (platform.md says "round"): the trait promises
//! a delayed message is never receivable early.
//!
//! **Deferral.** A received message whose `x-troupe-deliver-at` lies in the future is
//! hidden again for the time left (at most 12 h per receive) and not handed out. Once
//! due, it is re-sent without the attribute and the original deleted, so the copy the
//! caller sees starts again at receive count 1 and the dead-letter limit counts real
//! processing attempts only (a deferral of up to 15 min + 12 h costs the original two
//! receives of its `maxReceiveCount`).
//!
//! **Bodies.** SQS bodies must be XML characters. Envelope JSON always is; any other
//! body (binary, control characters) travels base64-encoded with the attribute
//! `x-troupe-body-encoding: base64` and is decoded on receive, so bodies stay opaque
//! bytes. The 256 KiB limit covers the body as sent plus its attributes and is checked
//! before sending ([`TransportError::TooLarge`]).
//!
//! **Receiving** runs in one background long poll per queue that fetches only while a
//! `receive` waits (see `troupe_transport::longpoll`): dropping a `receive` future never
//! loses a message, it stays buffered for the next `receive`. A buffered message older
//! than its visibility timeout allows is dropped from the buffer, since SQS has made it
//! visible to others by then.
//!
//! **Outages.** Calls that cannot reach the endpoint (connection refused, timeouts, HTTP
//! 5xx, throttling) are retried with backoff (0.2 s doubling to 5 s) for
//! [`SqsConfig::retry_for`]; then they fail with [`TransportError::Unavailable`]. One
//! WARN marks the start of an outage and one INFO its end. A queue that vanished (an
//! emulator restart, a deleted queue) is looked up and created again.
//!
//! **Credentials** ([`AwsCredentialSource`]), in the AWS chain's order: fixed keys
//! (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`), the shared
//! profile (`AWS_PROFILE` in `~/.aws/credentials` / `~/.aws/config`: keys, web
//! identity or SSO after `aws sso login`), IRSA
//! (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, through STS
//! `AssumeRoleWithWebIdentity`), the container credentials endpoint (EKS Pod Identity,
//! ECS), then the EC2 instance profile (IMDSv2); temporary ones refreshed 5 min before
//! they expire and once more when SQS says they expired. With an endpoint set and none
//! of the first four, a dummy key (emulators accept any).

mod config;
mod credentials;
mod provision;
mod sigv4;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use reqwest::Url;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::time::Instant;
use troupe_transport::deferral::{
    ceil_secs, format_deliver_at, parse_deliver_at, remaining, DELIVER_AT,
};
use troupe_transport::longpoll::{keep_for, Fetch, Inbox};
use troupe_transport::retry::{error_chain, Backoff, Outage};
use troupe_transport::{
    redact_url, ConnectOptions, Delivery, DeliveryHandle, QueueDepth, Transport, TransportError,
};

pub use crate::config::{SqsConfig, DEFAULT_REGION, DEFAULT_RETRY_FOR, DEFAULT_WAIT};
pub use crate::credentials::AwsCredentialSource;
use crate::credentials::Provider;
pub use crate::sigv4::AwsCredentials;

pub(crate) const KIND: &str = "sqs";

/// Largest message SQS takes: body as sent plus attributes (256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 262_144;
/// Longest `DelaySeconds`.
const MAX_DELAY_SECS: u64 = 900;
/// Longest visibility timeout.
const MAX_VISIBILITY_SECS: u64 = 43_200;
/// Longest queue name SQS accepts.
const MAX_QUEUE_NAME: usize = 80;
/// Marks a base64-encoded body.
const BODY_ENCODING: &str = "x-troupe-body-encoding";
/// Retention of actor queues (4 d) and of the DLQ (14 d), as Asya renders them.
const ACTOR_RETENTION_SECS: &str = "345600";
const DLQ_RETENTION_SECS: &str = "1209600";
/// Timeout of every call but the long poll.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The SQS transport. Cheap to share behind an `Arc`; all state is inside.
pub struct SqsTransport {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    /// The endpoint as printed in errors and logs.
    shown_url: String,
    /// `Host` header value, signed.
    host: String,
    region: String,
    creds: Provider,
    namespace: String,
    visibility_secs: u64,
    wait_secs: u64,
    max_deliveries: u32,
    retry_for: Duration,
    /// Queue name → queue URL.
    urls: Mutex<HashMap<String, String>>,
    dlq_arn: Mutex<Option<String>>,
    inboxes: Mutex<HashMap<String, Arc<Inbox<Delivery>>>>,
    outage: Outage,
    closed: AtomicBool,
}

/// How one call ended, before it is mapped to a [`TransportError`] for a queue.
#[derive(Debug)]
enum CallError {
    /// Not reached, or the service is temporarily unable (5xx, throttling).
    Transient(String),
    /// The credentials were refused.
    Auth(String),
    /// The service answered with an error code.
    Service { code: String, message: String },
    /// Credentials could not be had (already a [`TransportError`]).
    Credentials(TransportError),
    /// The transport was closed while retrying.
    Closed,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_no_queue(code: &str) -> bool {
    matches!(
        code,
        "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" | "NonExistentQueue"
    )
}

fn is_unknown_receipt(code: &str) -> bool {
    matches!(
        code,
        "ReceiptHandleIsInvalid"
            | "InvalidReceiptHandle"
            | "MessageNotInflight"
            | "AWS.SimpleQueueService.MessageNotInflight"
    )
}

const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSecurity",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
];

const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "RequestThrottled",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "KmsThrottled",
    "RequestTimeout",
];

/// Error code and message from an error response: the JSON protocol's `__type`
/// (`com.amazonaws.sqs#QueueDoesNotExist`), the `x-amzn-query-error` header, or an XML
/// `<Code>` (some emulators answer auth failures in XML).
fn parse_error(query_error: Option<&str>, body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let code = v
            .get("__type")
            .or_else(|| v.get("code"))
            .or_else(|| v.get("Code"))
            .and_then(Value::as_str)
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned());
        let message = v
            .get("message")
            .or_else(|| v.get("Message"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(code) = code {
            return (code, message);
        }
    }
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].trim().to_owned())
    };
    if let Some(code) = between("<Code>", "</Code>") {
        return (code, between("<Message>", "</Message>").unwrap_or_default());
    }
    if let Some(q) = query_error {
        let code = q.split(';').next().unwrap_or(q).to_owned();
        return (code, text.chars().take(200).collect());
    }
    ("Unknown".to_owned(), text.chars().take(200).collect())
}

fn classify(status: u16, query_error: Option<&str>, body: &[u8]) -> CallError {
    let (code, message) = parse_error(query_error, body);
    if status == 401 || status == 403 || AUTH_CODES.contains(&code.as_str()) {
        CallError::Auth(format!("{code}: {message}"))
    } else if status >= 500 || status == 429 || TRANSIENT_CODES.contains(&code.as_str()) {
        CallError::Transient(format!("HTTP {status} {code}: {message}"))
    } else {
        CallError::Service { code, message }
    }
}

/// SQS accepts only XML characters in bodies.
fn sqs_safe(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

fn string_attr(value: &str) -> Value {
    json!({"DataType": "String", "StringValue": value})
}

/// The body as SQS carries it, plus the attributes that say how.
fn encode_body(body: &[u8]) -> (String, Map<String, Value>) {
    let mut attrs = Map::new();
    if let Ok(text) = std::str::from_utf8(body) {
        if sqs_safe(text) {
            return (text.to_owned(), attrs);
        }
    }
    attrs.insert(BODY_ENCODING.to_owned(), string_attr("base64"));
    (
        base64::engine::general_purpose::STANDARD.encode(body),
        attrs,
    )
}

fn attr_str<'a>(attrs: Option<&'a Map<String, Value>>, name: &str) -> Option<&'a str> {
    attrs?.get(name)?.get("StringValue")?.as_str()
}

fn decode_body(raw: &str, attrs: Option<&Map<String, Value>>) -> Bytes {
    if attr_str(attrs, BODY_ENCODING) == Some("base64") {
        match base64::engine::general_purpose::STANDARD.decode(raw) {
            Ok(b) => return Bytes::from(b),
            Err(e) => {
                tracing::warn!(error = %e, "SQS body marked base64 does not decode; delivering it as sent")
            }
        }
    }
    Bytes::copy_from_slice(raw.as_bytes())
}

/// Size as SQS counts it: body plus attribute names, types and values.
fn wire_size(body: &str, attrs: &Map<String, Value>) -> usize {
    body.len()
        + attrs
            .iter()
            .map(|(k, v)| {
                let field = |f: &str| v.get(f).and_then(Value::as_str).map_or(0, str::len);
                k.len() + field("DataType") + field("StringValue")
            })
            .sum::<usize>()
}

/// `DelaySeconds` for a delay, and the deferral time when SQS cannot delay that long.
fn delay_plan(delay: Duration, now: SystemTime) -> (u64, Option<String>) {
    let secs = ceil_secs(delay);
    if secs > MAX_DELAY_SECS {
        (MAX_DELAY_SECS, Some(format_deliver_at(now + delay)))
    } else {
        (secs, None)
    }
}

fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn receipt(delivery: &Delivery) -> Result<&str, TransportError> {
    match &delivery.handle {
        DeliveryHandle::Token(t) => Ok(t),
        DeliveryHandle::Seq(_) => Err(TransportError::UnknownDelivery(delivery.queue.to_string())),
    }
}

impl SqsTransport {
    /// Connects: checks the settings and that the endpoint answers and accepts the
    /// credentials (one `GetQueueUrl` of the DLQ), retrying an unreachable endpoint for
    /// [`SqsConfig::retry_for`].
    pub async fn connect(
        config: SqsConfig,
        options: ConnectOptions,
    ) -> Result<Self, TransportError> {
        let endpoint = config.endpoint_url()?;
        let source = config
            .credentials
            .resolve(|k| std::env::var(k).ok(), config.endpoint.is_some())?;
        let creds = Provider::new(source, config.sts_url()?);
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => {
                return Err(config::config(format!(
                    "SQS endpoint {endpoint} has no host"
                )))
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| {
                config::config(format!("cannot build the HTTP client: {}", error_chain(&e)))
            })?;
        let visibility = config
            .visibility_timeout
            .unwrap_or(options.visibility_timeout);
        let shown_url = redact_url(endpoint.as_str());
        let inner = Arc::new(Inner {
            http,
            host,
            region: config.region.clone(),
            creds,
            namespace: options.namespace.clone(),
            visibility_secs: ceil_secs(visibility).min(MAX_VISIBILITY_SECS),
            wait_secs: config.wait_time.as_secs().min(20),
            max_deliveries: options.max_deliveries.max(1),
            retry_for: config.retry_for,
            urls: Mutex::new(HashMap::new()),
            dlq_arn: Mutex::new(None),
            inboxes: Mutex::new(HashMap::new()),
            outage: Outage::new(KIND, shown_url.clone()),
            closed: AtomicBool::new(false),
            shown_url,
            endpoint,
        });
        if let Some(url) = &config.queue_url {
            let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            if valid_queue_name(name) {
                lock(&inner.urls).insert(name.to_owned(), url.clone());
            } else {
                return Err(config::config(format!(
                    "ASYA_QUEUE_URL '{url}' does not end in a queue name"
                )));
            }
        }
        // Fail at startup, not at the first message, on a wrong endpoint or key.
        inner.queue_url(&inner.dlq_name(), false).await?;
        tracing::info!(
            region = %inner.region,
            endpoint = %inner.shown_url,
            credentials = inner.creds.describe(),
            namespace = %inner.namespace,
            visibility_s = inner.visibility_secs,
            "SQS transport connected"
        );
        Ok(SqsTransport { inner })
    }

    fn open(&self) -> Result<&Arc<Inner>, TransportError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(&self.inner)
        }
    }

    fn inbox(&self, queue: &str) -> Arc<Inbox<Delivery>> {
        lock(&self.inner.inboxes)
            .entry(queue.to_owned())
            .or_insert_with(Inbox::new)
            .clone()
    }
}

impl Inner {
    fn dlq_name(&self) -> String {
        format!("asya-{}-dlq", self.namespace)
    }

    fn unavailable(&self, message: String) -> TransportError {
        TransportError::Unavailable {
            kind: KIND,
            url: self.shown_url.clone(),
            message,
        }
    }

    fn error(&self, e: CallError, queue: &str) -> TransportError {
        match e {
            CallError::Transient(m) => self.unavailable(m),
            CallError::Auth(m) => TransportError::Auth {
                kind: KIND,
                url: self.shown_url.clone(),
                message: m,
            },
            CallError::Service { code, .. } if is_no_queue(&code) => {
                TransportError::NoSuchQueue(queue.to_owned())
            }
            CallError::Service { code, .. } if is_unknown_receipt(&code) => {
                TransportError::UnknownDelivery(queue.to_owned())
            }
            CallError::Service { code, message } => TransportError::Io {
                queue: queue.to_owned(),
                message: format!("SQS {code}: {message}"),
            },
            CallError::Credentials(e) => e,
            CallError::Closed => TransportError::Closed,
        }
    }

    /// One signed call; temporary credentials SQS calls expired are refreshed once.
    async fn call(
        &self,
        action: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        match self.call_once(action, body, timeout).await {
            Err(CallError::Auth(m))
                if (m.starts_with("ExpiredToken") || m.starts_with("InvalidClientTokenId"))
                    && self.creds.invalidate().await =>
            {
                self.call_once(action, body, timeout).await
            }
            r => r,
        }
    }

    /// One signed call, as is.
    async fn call_once(
        &self,
        action: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let creds = self
            .creds
            .get(&self.http)
            .await
            .map_err(CallError::Credentials)?;
        let payload = serde_json::to_vec(body).map_err(|e| CallError::Service {
            code: "Serialization".to_owned(),
            message: e.to_string(),
        })?;
        let date = sigv4::amz_date(OffsetDateTime::now_utc());
        let target = format!("AmazonSQS.{action}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", JSON_CONTENT_TYPE),
            ("host", &self.host),
            ("x-amz-date", &date),
            ("x-amz-target", &target),
        ];
        if let Some(token) = &creds.session_token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            &creds,
            &sigv4::Scope {
                region: &self.region,
                service: "sqs",
            },
            &date,
            &sigv4::Request {
                method: "POST",
                path: self.endpoint.path(),
                query: "",
                headers: &headers,
                payload: &payload,
            },
        );
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(timeout)
            .header("authorization", authorization);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let response = request
            .body(payload)
            .send()
            .await
            .map_err(|e| CallError::Transient(error_chain(&e)))?;
        let status = response.status().as_u16();
        let query_error = response
            .headers()
            .get("x-amzn-query-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transient(error_chain(&e)))?;
        if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| CallError::Service {
                code: "BadResponse".to_owned(),
                message: format!("unparseable SQS response: {e}"),
            });
        }
        Err(classify(status, query_error.as_deref(), &bytes))
    }

    /// [`Inner::call`], retrying transient failures with backoff for `retry_for`.
    async fn call_retrying(
        &self,
        action: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(CallError::Closed);
            }
            match self.call(action, body, timeout).await {
                Err(CallError::Transient(m)) => {
                    self.outage.failed(&m);
                    let pause = backoff.next_delay();
                    if Instant::now() + pause >= deadline {
                        return Err(CallError::Transient(m));
                    }
                    tokio::time::sleep(pause).await;
                }
                r => {
                    self.outage.reached();
                    return r;
                }
            }
        }
    }

    /// Forgets `queue`'s URL, and the DLQ's with it: what removed one (an emulator
    /// restart) likely removed the other, and a redrive to a missing DLQ is refused.
    fn forget(&self, queue: &str) {
        let mut urls = lock(&self.urls);
        urls.remove(queue);
        urls.remove(&self.dlq_name());
        *lock(&self.dlq_arn) = None;
    }

    /// The queue's URL: cached, else `GetQueueUrl`, else (with `create`) `CreateQueue`.
    /// `None` only without `create`.
    async fn queue_url(&self, queue: &str, create: bool) -> Result<Option<String>, TransportError> {
        if let Some(url) = lock(&self.urls).get(queue) {
            return Ok(Some(url.clone()));
        }
        if !valid_queue_name(queue) {
            return Err(config::config(format!(
                "'{queue}' is not a valid SQS queue name (at most {MAX_QUEUE_NAME} letters, digits, '-' and '_'); use a shorter namespace or actor name"
            )));
        }
        match self
            .call_retrying("GetQueueUrl", &json!({ "QueueName": queue }), CALL_TIMEOUT)
            .await
        {
            Ok(v) => return Ok(Some(self.remember(queue, &v)?)),
            Err(CallError::Service { code, .. }) if is_no_queue(&code) => {}
            Err(e) => return Err(self.error(e, queue)),
        }
        if !create {
            return Ok(None);
        }
        self.create_queue(queue, false).await.map(Some)
    }

    /// The URL from a `GetQueueUrl` / `CreateQueue` answer, cached.
    fn remember(&self, queue: &str, answer: &Value) -> Result<String, TransportError> {
        let url = answer
            .get("QueueUrl")
            .and_then(Value::as_str)
            .ok_or_else(|| TransportError::Io {
                queue: queue.to_owned(),
                message: "SQS answered without a QueueUrl".to_owned(),
            })?
            .to_owned();
        lock(&self.urls).insert(queue.to_owned(), url.clone());
        Ok(url)
    }

    /// `CreateQueue` with the transport's attributes (and redrive to the DLQ). A queue
    /// that exists with other attributes is used as it is, unless `strict` (the
    /// operator's [`Transport::create_queue`]): then that, like any other refusal, is a
    /// [`TransportError::QueueRefused`] with SQS's reason.
    async fn create_queue(&self, queue: &str, strict: bool) -> Result<String, TransportError> {
        let dlq = self.dlq_name();
        let prefix = format!("asya-{}-", self.namespace);
        let actor = queue.strip_prefix(&prefix).unwrap_or(queue);
        let mut attributes = json!({
            "VisibilityTimeout": "30",
            "ReceiveMessageWaitTimeSeconds": "20",
        });
        if queue == dlq {
            attributes["MessageRetentionPeriod"] = json!(DLQ_RETENTION_SECS);
        } else {
            attributes["MessageRetentionPeriod"] = json!(ACTOR_RETENTION_SECS);
            let arn = self.dlq_arn().await?;
            let policy = json!({
                "deadLetterTargetArn": arn,
                "maxReceiveCount": self.max_deliveries.to_string(),
            });
            attributes["RedrivePolicy"] = json!(policy.to_string());
        }
        let request = json!({
            "QueueName": queue,
            "Attributes": attributes,
            "tags": { "asya.sh/namespace": self.namespace, "asya.sh/actor": actor },
        });
        match self
            .call_retrying("CreateQueue", &request, CALL_TIMEOUT)
            .await
        {
            Ok(v) => {
                tracing::info!(queue, "created SQS queue");
                self.remember(queue, &v)
            }
            Err(CallError::Service { code, message }) if strict => {
                Err(TransportError::QueueRefused {
                    kind: KIND,
                    queue: queue.to_owned(),
                    reason: format!("{code}: {message}"),
                })
            }
            // Someone else created it first, with other attributes: use theirs.
            Err(CallError::Service { code, .. })
                if code == "QueueNameExists" || code == "QueueAlreadyExists" =>
            {
                match self
                    .call_retrying("GetQueueUrl", &json!({ "QueueName": queue }), CALL_TIMEOUT)
                    .await
                {
                    Ok(v) => self.remember(queue, &v),
                    Err(e) => Err(self.error(e, queue)),
                }
            }
            Err(e) => Err(self.error(e, queue)),
        }
    }

    async fn dlq_arn(&self) -> Result<String, TransportError> {
        if let Some(arn) = lock(&self.dlq_arn).clone() {
            return Ok(arn);
        }
        let dlq = self.dlq_name();
        let url = Box::pin(self.queue_url(&dlq, true))
            .await?
            .ok_or_else(|| TransportError::NoSuchQueue(dlq.clone()))?;
        let answer = self
            .call_retrying(
                "GetQueueAttributes",
                &json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }),
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| self.error(e, &dlq))?;
        let arn = answer
            .pointer("/Attributes/QueueArn")
            .and_then(Value::as_str)
            .ok_or_else(|| TransportError::Io {
                queue: dlq.clone(),
                message: "SQS answered without the DLQ's QueueArn".to_owned(),
            })?
            .to_owned();
        *lock(&self.dlq_arn) = Some(arn.clone());
        Ok(arn)
    }

    /// Runs `op` on the queue's URL (creating the queue if needed); if SQS says the
    /// queue is gone, forgets the cached URL, creates the queue again and retries once.
    async fn on_queue<T, F, Fut>(&self, queue: &str, op: F) -> Result<T, TransportError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let url = self
            .queue_url(queue, true)
            .await?
            .ok_or_else(|| TransportError::NoSuchQueue(queue.to_owned()))?;
        match op(url).await {
            Err(CallError::Service { code, .. }) if is_no_queue(&code) => {
                tracing::debug!(queue, "SQS queue vanished; creating it again");
                self.forget(queue);
                let url = self
                    .queue_url(queue, true)
                    .await?
                    .ok_or_else(|| TransportError::NoSuchQueue(queue.to_owned()))?;
                op(url).await.map_err(|e| self.error(e, queue))
            }
            r => r.map_err(|e| self.error(e, queue)),
        }
    }

    async fn send_message(
        &self,
        url: &str,
        body: &str,
        delay_secs: u64,
        attrs: &Map<String, Value>,
    ) -> Result<(), CallError> {
        let mut request = json!({ "QueueUrl": url, "MessageBody": body });
        if delay_secs > 0 {
            request["DelaySeconds"] = json!(delay_secs);
        }
        if !attrs.is_empty() {
            request["MessageAttributes"] = Value::Object(attrs.clone());
        }
        self.call_retrying("SendMessage", &request, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn change_visibility(
        &self,
        url: &str,
        receipt: &str,
        secs: u64,
    ) -> Result<(), CallError> {
        let request = json!({
            "QueueUrl": url,
            "ReceiptHandle": receipt,
            "VisibilityTimeout": secs.min(MAX_VISIBILITY_SECS),
        });
        self.call_retrying("ChangeMessageVisibility", &request, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    async fn delete_message(&self, url: &str, receipt: &str) -> Result<(), CallError> {
        let request = json!({ "QueueUrl": url, "ReceiptHandle": receipt });
        self.call_retrying("DeleteMessage", &request, CALL_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// One long poll for up to `demand` messages; deferred ones are dealt with here and
    /// never returned.
    async fn fetch(
        self: Arc<Self>,
        queue: Arc<str>,
        demand: usize,
    ) -> Result<Vec<Delivery>, TransportError> {
        let url = self
            .queue_url(&queue, true)
            .await?
            .ok_or_else(|| TransportError::NoSuchQueue(queue.to_string()))?;
        let request = json!({
            "QueueUrl": url,
            "MaxNumberOfMessages": demand.clamp(1, 10),
            "WaitTimeSeconds": self.wait_secs,
            "VisibilityTimeout": self.visibility_secs,
            "MessageAttributeNames": ["All"],
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
            "AttributeNames": ["ApproximateReceiveCount"],
        });
        let timeout = Duration::from_secs(self.wait_secs) + Duration::from_secs(15);
        let answer = match self
            .call_retrying("ReceiveMessage", &request, timeout)
            .await
        {
            Ok(v) => v,
            Err(CallError::Service { code, .. }) if is_no_queue(&code) => {
                // Gone (emulator restart, deleted): the next fetch creates it again,
                // after a pause so a queue SQS has not finished creating is not hammered.
                self.forget(&queue);
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.error(e, &queue)),
        };
        let mut out = Vec::new();
        for m in answer
            .get("Messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(d) = self.screen(&queue, &url, m).await {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// A received message as a delivery, or `None` when it is deferred (hidden again
    /// until due) or just came due (re-sent without the deferral attribute).
    async fn screen(&self, queue: &Arc<str>, url: &str, m: &Value) -> Option<Delivery> {
        let receipt = m.get("ReceiptHandle").and_then(Value::as_str)?;
        let raw = m.get("Body").and_then(Value::as_str).unwrap_or("");
        let attrs = m.get("MessageAttributes").and_then(Value::as_object);
        if let Some(at) = attr_str(attrs, DELIVER_AT).and_then(parse_deliver_at) {
            let left = remaining(at, SystemTime::now());
            if !left.is_zero() {
                if let Err(e) = self.change_visibility(url, receipt, ceil_secs(left)).await {
                    // It comes back after the visibility timeout and is deferred then.
                    tracing::debug!(queue = %queue, error = ?e, "could not defer an SQS message");
                }
                return None;
            }
            let mut rest = attrs.cloned().unwrap_or_default();
            rest.remove(DELIVER_AT);
            match self.send_message(url, raw, 0, &rest).await {
                Ok(()) => {
                    if let Err(e) = self.delete_message(url, receipt).await {
                        tracing::debug!(queue = %queue, error = ?e, "could not delete a deferred SQS message after re-sending it; it will be delivered twice");
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %queue, error = ?e, "could not re-send a due deferred SQS message; it comes back after its visibility timeout");
                }
            }
            return None;
        }
        let count = m
            .pointer("/Attributes/ApproximateReceiveCount")
            .and_then(Value::as_str)
            .and_then(|c| c.parse().ok());
        Some(Delivery {
            queue: queue.clone(),
            body: decode_body(raw, attrs),
            handle: DeliveryHandle::Token(receipt.to_owned()),
            delivery_count: count,
        })
    }

    async fn send_with(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        let (raw, mut attrs) = encode_body(&body);
        let (delay_secs, deliver_at) = delay_plan(delay, SystemTime::now());
        if let Some(at) = deliver_at {
            attrs.insert(DELIVER_AT.to_owned(), string_attr(&at));
        }
        let size = wire_size(&raw, &attrs);
        if size > MAX_MESSAGE_BYTES {
            return Err(TransportError::TooLarge {
                queue: queue.to_owned(),
                size,
                limit: MAX_MESSAGE_BYTES,
            });
        }
        self.on_queue(queue, |url| {
            let (raw, attrs) = (&raw, &attrs);
            async move { self.send_message(&url, raw, delay_secs, attrs).await }
        })
        .await
    }

    /// The URL of a delivery's queue, for ack/nack; an unknown queue means the receipt
    /// cannot be valid.
    async fn delivery_url(&self, delivery: &Delivery) -> Result<String, TransportError> {
        self.queue_url(&delivery.queue, false)
            .await?
            .ok_or_else(|| TransportError::UnknownDelivery(delivery.queue.to_string()))
    }

    fn settle_error(&self, e: CallError, delivery: &Delivery) -> TransportError {
        if let CallError::Service { code, .. } = &e {
            if is_no_queue(code) {
                self.forget(&delivery.queue);
                return TransportError::UnknownDelivery(delivery.queue.to_string());
            }
        }
        self.error(e, &delivery.queue)
    }
}

#[async_trait]
impl Transport for SqsTransport {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn queue_name(&self, actor: &str) -> String {
        format!("asya-{}-{actor}", self.inner.namespace)
    }

    async fn receive(&self, queue: &str) -> Result<Delivery, TransportError> {
        let inner = self.open()?.clone();
        let inbox = self.inbox(queue);
        let name: Arc<str> = Arc::from(queue);
        let fetch: Fetch<Delivery> =
            Arc::new(move |demand| Box::pin(inner.clone().fetch(name.clone(), demand)));
        let keep_for = keep_for(Duration::from_secs(self.inner.visibility_secs));
        inbox
            .next_fresh(&fetch, keep_for, |_| {
                tracing::debug!(
                    queue,
                    "dropped a buffered SQS message past its visibility timeout"
                )
            })
            .await
    }

    async fn send(&self, queue: &str, body: Bytes) -> Result<(), TransportError> {
        self.open()?.send_with(queue, body, Duration::ZERO).await
    }

    async fn send_with_delay(
        &self,
        queue: &str,
        body: Bytes,
        delay: Duration,
    ) -> Result<(), TransportError> {
        self.open()?.send_with(queue, body, delay).await
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let inner = self.open()?;
        let receipt = receipt(delivery)?;
        let url = inner.delivery_url(delivery).await?;
        inner
            .delete_message(&url, receipt)
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), TransportError> {
        let inner = self.open()?;
        let receipt = receipt(delivery)?;
        let url = inner.delivery_url(delivery).await?;
        inner
            .change_visibility(&url, receipt, ceil_secs(delay))
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    fn extend_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.inner.visibility_secs) / 3)
    }

    async fn extend(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let inner = self.open()?;
        let receipt = receipt(delivery)?;
        let url = inner.delivery_url(delivery).await?;
        inner
            .change_visibility(&url, receipt, inner.visibility_secs)
            .await
            .map_err(|e| inner.settle_error(e, delivery))
    }

    async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.open()?.provision(queue).await
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.open()?.delete_queue(queue).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, TransportError> {
        let inner = self.open()?;
        // Asking for a depth never creates a queue: a missing queue is empty.
        let Some(url) = inner.queue_url(queue, false).await? else {
            return Ok(QueueDepth::default());
        };
        let request = json!({
            "QueueUrl": url,
            "AttributeNames": [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        });
        let answer = match inner
            .call_retrying("GetQueueAttributes", &request, CALL_TIMEOUT)
            .await
        {
            Ok(v) => v,
            Err(CallError::Service { code, .. }) if is_no_queue(&code) => {
                inner.forget(queue);
                return Ok(QueueDepth::default());
            }
            Err(e) => return Err(inner.error(e, queue)),
        };
        let count = |name: &str| {
            answer
                .get("Attributes")
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            ready: count("ApproximateNumberOfMessages"),
            delayed: count("ApproximateNumberOfMessagesDelayed"),
            in_flight: count("ApproximateNumberOfMessagesNotVisible"),
        })
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let inboxes: Vec<_> = lock(&self.inner.inboxes).drain().map(|(_, i)| i).collect();
        let mut left = Vec::new();
        for inbox in inboxes {
            left.extend(inbox.close());
        }
        // Messages fetched but never handed out go back at once rather than after
        // their visibility timeout. `call` (not the retrying one, which stops on close)
        // and a short bound: closing must not hang on a dead endpoint.
        let release = async {
            for d in &left {
                let (Ok(receipt), Some(url)) =
                    (receipt(d), lock(&self.inner.urls).get(&*d.queue).cloned())
                else {
                    continue;
                };
                let request =
                    json!({ "QueueUrl": url, "ReceiptHandle": receipt, "VisibilityTimeout": 0 });
                let _ = self
                    .inner
                    .call("ChangeMessageVisibility", &request, Duration::from_secs(2))
                    .await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), release).await;
        tracing::debug!(endpoint = %self.inner.shown_url, "SQS transport closed");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_from_json_xml_and_header() {
        let (c, m) = parse_error(
            None,
            br#"{"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "gone"}"#,
        );
        assert_eq!((c.as_str(), m.as_str()), ("QueueDoesNotExist", "gone"));
        let (c, m) = parse_error(
            None,
            b"<ErrorResponse><Error><Code>InvalidClientTokenId</Code><Message>bad key</Message></Error></ErrorResponse>",
        );
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("InvalidClientTokenId", "bad key")
        );
        let (c, _) = parse_error(Some("AWS.SimpleQueueService.NonExistentQueue;Sender"), b"");
        assert!(is_no_queue(&c));
    }

    #[test]
    fn classification() {
        assert!(matches!(classify(403, None, b"{}"), CallError::Auth(_)));
        assert!(matches!(
            classify(
                400,
                None,
                br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException"}"#
            ),
            CallError::Auth(_)
        ));
        assert!(matches!(classify(503, None, b""), CallError::Transient(_)));
        assert!(matches!(
            classify(
                400,
                None,
                br#"{"__type":"com.amazonaws.sqs#RequestThrottled"}"#
            ),
            CallError::Transient(_)
        ));
        assert!(matches!(
            classify(
                400,
                None,
                br#"{"__type":"com.amazonaws.sqs#InvalidParameterValue"}"#
            ),
            CallError::Service { .. }
        ));
    }

    #[test]
    fn bodies_sqs_cannot_carry_are_base64() {
        let (raw, attrs) = encode_body("{\"a\":\"héllo 🎭\"}".as_bytes());
        assert_eq!(raw, "{\"a\":\"héllo 🎭\"}");
        assert!(attrs.is_empty());
        for odd in [&b"a\x00b"[..], &b"\xff\xfe"[..], &b"\x1b[0m"[..]] {
            let (raw, attrs) = encode_body(odd);
            assert_eq!(attr_str(Some(&attrs), BODY_ENCODING), Some("base64"));
            assert_eq!(&decode_body(&raw, Some(&attrs))[..], odd);
        }
    }

    #[test]
    fn wire_size_counts_attributes() {
        let mut attrs = Map::new();
        attrs.insert(
            DELIVER_AT.to_owned(),
            string_attr("2026-01-01T00:00:00.000Z"),
        );
        assert_eq!(wire_size("abc", &attrs), 3 + DELIVER_AT.len() + 6 + 24);
    }

    #[test]
    fn delays_up_to_900_s_are_native_longer_ones_deferred() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(delay_plan(Duration::ZERO, now), (0, None));
        assert_eq!(
            delay_plan(Duration::from_millis(1500), now),
            (2, None),
            "rounded up"
        );
        assert_eq!(delay_plan(Duration::from_secs(900), now), (900, None));
        assert_eq!(
            delay_plan(Duration::from_secs(3600), now),
            (900, Some("2026-01-01T01:00:00.000Z".to_owned()))
        );
    }

    #[test]
    fn queue_names() {
        assert!(valid_queue_name("asya-prod-text-analyzer"));
        assert!(!valid_queue_name(&"a".repeat(81)));
        assert!(!valid_queue_name("asya-ns-a.delay.5"));
        assert!(!valid_queue_name(""));
    }
}
