//! AWS Signature Version 4 for the requests this transport makes (POST with a JSON
//! body, no query string).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::macros::format_description;
use time::OffsetDateTime;

/// AWS credentials: an access key and, for temporary credentials, a session token.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    // The secret and the token never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl AwsCredentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`;
    /// `None` unless both key variables are set and non-empty.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        Some(AwsCredentials {
            access_key_id: non_empty("AWS_ACCESS_KEY_ID")?,
            secret_access_key: non_empty("AWS_SECRET_ACCESS_KEY")?,
            session_token: non_empty("AWS_SESSION_TOKEN"),
        })
    }
}

/// What a request is signed for.
pub(crate) struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// `20150830T123600Z`.
pub(crate) fn amz_date(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year][month][day]T[hour][minute][second]Z");
    // A UTC time always formats with this description (four-digit years only).
    t.format(&fmt).unwrap_or_default()
}

/// The parts of a request that are signed.
pub(crate) struct Request<'a> {
    pub method: &'a str,
    /// Canonical URI (`/` for the JSON protocol).
    pub path: &'a str,
    /// Canonical query string (empty for the JSON protocol).
    pub query: &'a str,
    /// The (name, value) pairs to sign; must include `host` and `x-amz-date`.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: &'a [u8],
}

/// Signs `req` at `amz_date` (the request's `x-amz-date`); returns the
/// `Authorization` header value.
pub(crate) fn authorization(
    creds: &AwsCredentials,
    scope: &Scope<'_>,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let Request {
        method,
        path,
        query,
        headers,
        payload,
    } = *req;
    let mut canon: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), normalize_value(v)))
        .collect();
    canon.sort();
    let signed: Vec<&str> = canon.iter().map(|(n, _)| n.as_str()).collect();
    let signed_headers = signed.join(";");
    let mut request = format!("{method}\n{path}\n{query}\n");
    for (n, v) in &canon {
        request.push_str(n);
        request.push(':');
        request.push_str(v);
        request.push('\n');
    }
    request.push('\n');
    request.push_str(&signed_headers);
    request.push('\n');
    request.push_str(&hex(&Sha256::digest(payload)));

    let date = &amz_date[..amz_date.len().min(8)];
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(request.as_bytes()))
    );
    let k_date = hmac_sha256(
        format!("AWS4{}", creds.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = hex(&hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    )
}

/// Header values are trimmed and inner runs of spaces collapsed before signing.
fn normalize_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn example() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
    };

    // AWS's published SigV4 test suite, cases get-vanilla and post-vanilla.
    #[test]
    fn aws_test_suite_vanilla() {
        let headers = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        let prefix = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=";
        let get = authorization(
            &example(),
            &SCOPE,
            "20150830T123600Z",
            &Request {
                method: "GET",
                path: "/",
                query: "",
                headers: &headers,
                payload: b"",
            },
        );
        assert_eq!(
            get,
            format!("{prefix}5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        let post = authorization(
            &example(),
            &SCOPE,
            "20150830T123600Z",
            &Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: b"",
            },
        );
        assert_eq!(
            post,
            format!("{prefix}5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
    }

    #[test]
    fn header_values_are_normalized_and_names_sorted() {
        let a = authorization(
            &example(),
            &SCOPE,
            "20150830T123600Z",
            &Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &[
                    ("X-Amz-Date", "20150830T123600Z"),
                    ("Host", "  example.amazonaws.com "),
                ],
                payload: b"{}",
            },
        );
        let b = authorization(
            &example(),
            &SCOPE,
            "20150830T123600Z",
            &Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &[
                    ("host", "example.amazonaws.com"),
                    ("x-amz-date", "20150830T123600Z"),
                ],
                payload: b"{}",
            },
        );
        assert_eq!(a, b);
    }

    #[test]
    fn amz_date_format() {
        let t = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        assert_eq!(amz_date(t), "20150830T123600Z");
    }

    #[test]
    fn credentials_from_env_and_debug_hides_secrets() {
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKID".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("s3cr3t".to_owned()),
            "AWS_SESSION_TOKEN" => Some(String::new()),
            _ => None,
        };
        let c = AwsCredentials::from_lookup(env).unwrap();
        assert_eq!(c.session_token, None, "an empty token is no token");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("AKID") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert!(AwsCredentials::from_lookup(|_| None).is_none());
    }
}
