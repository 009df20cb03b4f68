//! SQS settings: from a `sqs://` URL or from the `ASYA_*` environment (protocol.md §15).

use std::time::Duration;

use reqwest::Url;
use troupe_transport::TransportError;

use crate::credentials::AwsCredentialSource;
use crate::KIND;

/// Default region (protocol.md §15).
pub const DEFAULT_REGION: &str = "us-east-1";
/// Default long-poll wait of `ReceiveMessage` (`ASYA_SQS_WAIT_TIME_SECONDS`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// Default time a call keeps retrying an unreachable endpoint before it fails.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);

/// Where and how to reach SQS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsConfig {
    /// AWS region, also the signing region.
    pub region: String,
    /// Endpoint override (moto, LocalStack, a VPC endpoint); `None`: the region's public
    /// endpoint.
    pub endpoint: Option<String>,
    /// This actor's own queue URL (`ASYA_QUEUE_URL`), used without a `GetQueueUrl`.
    pub queue_url: Option<String>,
    /// Visibility timeout of received messages; `None`: the connect options' value
    /// (2 × the actor timeout).
    pub visibility_timeout: Option<Duration>,
    /// Long-poll wait of each `ReceiveMessage`, 0–20 s.
    pub wait_time: Duration,
    /// Where credentials come from; default: the AWS chain over the environment.
    pub credentials: AwsCredentialSource,
    /// STS endpoint for web identity (`AWS_ENDPOINT_URL_STS`); `None`: the region's.
    pub sts_endpoint: Option<String>,
    /// How long a call retries an endpoint it cannot reach before it returns
    /// [`TransportError::Unavailable`].
    pub retry_for: Duration,
}

impl SqsConfig {
    /// Defaults for `region`: public endpoint, 20 s wait, credentials from the
    /// environment.
    pub fn new(region: impl Into<String>) -> Self {
        SqsConfig {
            region: region.into(),
            endpoint: None,
            queue_url: None,
            visibility_timeout: None,
            wait_time: DEFAULT_WAIT,
            credentials: AwsCredentialSource::Environment,
            sts_endpoint: None,
            retry_for: DEFAULT_RETRY_FOR,
        }
    }

    /// Parses `sqs://REGION?endpoint=URL&queue_url=URL&visibility_timeout=S&wait_time_seconds=S`
    /// (everything but the scheme optional; no region means `us-east-1`).
    pub fn from_url(url: &str) -> Result<Self, TransportError> {
        let parsed = Url::parse(url).map_err(|e| config(format!("bad SQS URL '{url}': {e}")))?;
        if parsed.scheme() != "sqs" {
            return Err(config(format!(
                "bad SQS URL '{url}': the scheme must be sqs:// (sqs://REGION?endpoint=URL)"
            )));
        }
        let region = parsed.host_str().unwrap_or("").to_owned();
        let mut c = SqsConfig::new(if region.is_empty() {
            DEFAULT_REGION.to_owned()
        } else {
            region
        });
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "endpoint" => c.endpoint = non_empty(&v),
                "queue_url" => c.queue_url = non_empty(&v),
                "sts_endpoint" => c.sts_endpoint = non_empty(&v),
                "region" => c.region = v.into_owned(),
                "visibility_timeout" => c.visibility_timeout = visibility(&v)?,
                "wait_time_seconds" => c.wait_time = wait(&v)?,
                other => {
                    return Err(config(format!(
                        "unknown SQS URL parameter '{other}' (known: endpoint, queue_url, region, sts_endpoint, visibility_timeout, wait_time_seconds)"
                    )))
                }
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// From `ASYA_AWS_REGION` (default `us-east-1`), `ASYA_SQS_ENDPOINT`,
    /// `ASYA_QUEUE_URL`, `ASYA_SQS_VISIBILITY_TIMEOUT` (seconds, 0 = 2 × actor timeout),
    /// `ASYA_SQS_WAIT_TIME_SECONDS` (default 20) and `AWS_ENDPOINT_URL_STS`.
    /// Credentials are resolved at connect ([`AwsCredentialSource::Environment`]).
    pub fn from_env() -> Result<Self, TransportError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`SqsConfig::from_env`] over any variable lookup (tests, config files).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, TransportError> {
        let var = |k: &str| get(k).and_then(|v| non_empty(&v));
        let mut c = SqsConfig::new(var("ASYA_AWS_REGION").unwrap_or_else(|| DEFAULT_REGION.into()));
        c.endpoint = var("ASYA_SQS_ENDPOINT");
        c.queue_url = var("ASYA_QUEUE_URL");
        c.sts_endpoint = var("AWS_ENDPOINT_URL_STS");
        if let Some(v) = var("ASYA_SQS_VISIBILITY_TIMEOUT") {
            c.visibility_timeout = visibility(&v)?;
        }
        if let Some(v) = var("ASYA_SQS_WAIT_TIME_SECONDS") {
            c.wait_time = wait(&v)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The endpoint requests go to.
    pub fn endpoint_url(&self) -> Result<Url, TransportError> {
        let text = match &self.endpoint {
            Some(e) if e.contains("://") => e.clone(),
            Some(e) => format!("http://{e}"),
            None if self.region.starts_with("cn-") => {
                format!("https://sqs.{}.amazonaws.com.cn/", self.region)
            }
            None => format!("https://sqs.{}.amazonaws.com/", self.region),
        };
        let url =
            Url::parse(&text).map_err(|e| config(format!("bad SQS endpoint '{text}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config(format!(
                "bad SQS endpoint '{text}': it must be an http:// or https:// URL with a host"
            )));
        }
        Ok(url)
    }

    /// The STS endpoint web identity credentials are fetched from.
    pub fn sts_url(&self) -> Result<Url, TransportError> {
        let text = match &self.sts_endpoint {
            Some(e) if e.contains("://") => e.clone(),
            Some(e) => format!("http://{e}"),
            None if self.region.starts_with("cn-") => {
                format!("https://sts.{}.amazonaws.com.cn/", self.region)
            }
            None => format!("https://sts.{}.amazonaws.com/", self.region),
        };
        Url::parse(&text).map_err(|e| config(format!("bad STS endpoint '{text}': {e}")))
    }

    fn validate(&self) -> Result<(), TransportError> {
        let r = &self.region;
        if r.is_empty()
            || !r
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            return Err(config(format!(
                "bad AWS region '{r}' (expected something like us-east-1)"
            )));
        }
        self.endpoint_url()?;
        self.sts_url()?;
        Ok(())
    }
}

fn non_empty(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

/// Whole seconds, optionally written with an `s` suffix.
fn seconds(name: &str, v: &str) -> Result<u64, TransportError> {
    let t = v.trim();
    t.strip_suffix('s')
        .unwrap_or(t)
        .parse::<u64>()
        .map_err(|_| config(format!("{name} must be whole seconds, got '{v}'")))
}

fn visibility(v: &str) -> Result<Option<Duration>, TransportError> {
    let s = seconds("the SQS visibility timeout", v)?;
    if s > 43_200 {
        return Err(config(format!(
            "the SQS visibility timeout is at most 43200 s (12 h), got {s}"
        )));
    }
    Ok((s > 0).then(|| Duration::from_secs(s)))
}

fn wait(v: &str) -> Result<Duration, TransportError> {
    let s = seconds("the SQS receive wait time", v)?;
    if s > 20 {
        return Err(config(format!(
            "the SQS receive wait time is 0 to 20 s, got {s}"
        )));
    }
    Ok(Duration::from_secs(s))
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
    fn url_with_endpoint() {
        let c = SqsConfig::from_url("sqs://eu-west-1?endpoint=http://127.0.0.1:4566").unwrap();
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.endpoint_url().unwrap().as_str(), "http://127.0.0.1:4566/");
        assert_eq!(c.wait_time, DEFAULT_WAIT);
    }

    #[test]
    fn url_defaults_and_parameters() {
        let c = SqsConfig::from_url("sqs://").unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(
            c.endpoint_url().unwrap().as_str(),
            "https://sqs.us-east-1.amazonaws.com/"
        );
        let c = SqsConfig::from_url(
            "sqs://us-east-2?visibility_timeout=30&wait_time_seconds=5&queue_url=https%3A%2F%2Fsqs.us-east-2.amazonaws.com%2F1%2Fasya-ns-a",
        )
        .unwrap();
        assert_eq!(c.visibility_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.wait_time, Duration::from_secs(5));
        assert_eq!(
            c.queue_url.as_deref(),
            Some("https://sqs.us-east-2.amazonaws.com/1/asya-ns-a")
        );
        let cn = SqsConfig::from_url("sqs://cn-north-1").unwrap();
        assert_eq!(
            cn.endpoint_url().unwrap().as_str(),
            "https://sqs.cn-north-1.amazonaws.com.cn/"
        );
        let bare = SqsConfig::from_url("sqs://us-east-1?endpoint=localhost:4566").unwrap();
        assert_eq!(
            bare.endpoint_url().unwrap().as_str(),
            "http://localhost:4566/"
        );
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "amqp://x",
            "sqs://us-east-1?wait_time_seconds=21",
            "sqs://us-east-1?visibility_timeout=soon",
            "sqs://us-east-1?bogus=1",
            "sqs://US_EAST",
            "sqs://us-east-1?endpoint=ftp://x",
            "not a url",
        ] {
            match SqsConfig::from_url(bad) {
                Err(TransportError::Config { kind: "sqs", .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn env() {
        let env = |k: &str| {
            match k {
                "ASYA_AWS_REGION" => Some("ap-south-1"),
                "ASYA_SQS_ENDPOINT" => Some("http://127.0.0.1:5000"),
                "ASYA_QUEUE_URL" => Some("http://127.0.0.1:5000/123/asya-ns-a"),
                "ASYA_SQS_VISIBILITY_TIMEOUT" => Some("0"),
                "ASYA_SQS_WAIT_TIME_SECONDS" => Some("10"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let c = SqsConfig::from_lookup(env).unwrap();
        assert_eq!(c.region, "ap-south-1");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(
            c.queue_url.as_deref(),
            Some("http://127.0.0.1:5000/123/asya-ns-a")
        );
        assert_eq!(c.visibility_timeout, None, "0 means 2 × the actor timeout");
        assert_eq!(c.wait_time, Duration::from_secs(10));

        let d = SqsConfig::from_lookup(|_| None).unwrap();
        assert_eq!(d, SqsConfig::new("us-east-1"));
        let v = SqsConfig::from_lookup(|k| {
            (k == "ASYA_SQS_VISIBILITY_TIMEOUT").then(|| "45".to_owned())
        })
        .unwrap();
        assert_eq!(v.visibility_timeout, Some(Duration::from_secs(45)));
    }
}
