//! Client authentication shared by the mesh API, MCP and A2A (gateway.md §4 "Auth"):
//! an API key (`X-API-Key: <key>` or `Authorization: Bearer <key>`) or a bearer JWT
//! verified against a JWKS. Off when neither is configured.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

/// Least time between two JWKS fetches triggered by an unknown `kid` (stops a caller
/// from making the adapter hammer the identity provider with made-up key ids).
const REFETCH_MIN_GAP: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp`/`nbf`.
const LEEWAY_S: u64 = 30;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Auth is off.
    Anonymous,
    /// Presented the API key.
    ApiKey,
    /// Presented a valid JWT with this `sub`.
    Jwt(String),
}

impl Caller {
    /// The owner recorded on tasks (`jwt:<sub>`, `api-key`); `None` when auth is off.
    pub fn owner(&self) -> Option<String> {
        match self {
            Caller::Anonymous => None,
            Caller::ApiKey => Some("api-key".into()),
            Caller::Jwt(sub) => Some(format!("jwt:{sub}")),
        }
    }
}

/// What a client must present; empty = auth off.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Accepted API keys (empty strings are ignored).
    pub api_keys: Vec<String>,
    /// JWKS URL of the bearer JWT scheme; `None` = no JWT.
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` of a JWT.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of a JWT.
    pub jwt_audience: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    // Keys never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("api_keys", &format_args!("{} key(s)", self.api_keys.len()))
            .field("jwt_jwks_url", &self.jwt_jwks_url)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .finish()
    }
}

impl AuthConfig {
    /// Whether any scheme is configured.
    pub fn enabled(&self) -> bool {
        self.api_keys.iter().any(|k| !k.is_empty())
            || self.jwt_jwks_url.as_ref().is_some_and(|u| !u.is_empty())
    }
}

/// The configured schemes.
pub struct Auth {
    api_keys: Vec<String>,
    jwt: Option<JwtVerifier>,
}

struct JwtVerifier {
    jwks_url: String,
    issuer: Option<String>,
    audience: Option<String>,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    /// Keys without a `kid`, tried in turn.
    anonymous: Vec<(DecodingKey, Option<Algorithm>)>,
    fetched_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
}

impl Auth {
    /// Builds the verifier; `http` fetches the JWKS.
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> Self {
        let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Auth {
            api_keys: config
                .api_keys
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
            jwt: nonempty(&config.jwt_jwks_url).map(|jwks_url| JwtVerifier {
                jwks_url,
                issuer: nonempty(&config.jwt_issuer),
                audience: nonempty(&config.jwt_audience),
                http,
                cache: Mutex::new(KeyCache::default()),
            }),
        }
    }

    /// An [`Auth`] with a JWKS client of its own (10 s timeout).
    pub fn from_config(config: &AuthConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self::new(config, http)
    }

    /// Whether any scheme is configured.
    pub fn enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }

    /// Whether the API key scheme is on.
    pub fn api_key_enabled(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// Whether the bearer JWT scheme is on.
    pub fn jwt_enabled(&self) -> bool {
        self.jwt.is_some()
    }

    /// Whether `key` is one of the API keys (constant time per key).
    fn is_key(&self, key: &[u8]) -> bool {
        self.api_keys
            .iter()
            .fold(false, |hit, k| hit | bool::from(k.as_bytes().ct_eq(key)))
    }

    /// Identifies the caller; `Err` carries the reason for the 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, String> {
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        let key = headers.get("x-api-key");
        if key.is_some_and(|k| self.is_key(k.as_bytes())) {
            return Ok(Caller::ApiKey);
        }
        let bearer = bearer(headers);
        // MCP clients send the key as a bearer token.
        if bearer.is_some_and(|t| self.is_key(t.as_bytes())) {
            return Ok(Caller::ApiKey);
        }
        match (&self.jwt, bearer) {
            (Some(jwt), Some(token)) => jwt.verify(token).await.map(Caller::Jwt),
            _ if key.is_some() => Err("invalid API key".into()),
            (None, Some(_)) => Err("invalid API key (sent as a bearer token)".into()),
            (_, None) => Err(match (!self.api_keys.is_empty(), self.jwt.is_some()) {
                (true, true) => {
                    "credentials required: X-API-Key or Authorization: Bearer <key or JWT>"
                }
                (true, false) => "credentials required: X-API-Key or Authorization: Bearer <key>",
                _ => "credentials required: Authorization: Bearer <JWT>",
            }
            .into()),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Constant-time equality of two secrets (the time does not depend on where they differ).
pub fn secret_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

impl JwtVerifier {
    async fn verify(&self, token: &str) -> Result<String, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("malformed JWT: {e}"))?;
        let candidates = self.keys_for(header.kid.as_deref()).await?;
        let mut last_err = "no key in the JWKS matches the token".to_owned();
        for (key, key_alg) in candidates {
            if key_alg.is_some_and(|a| a != header.alg) {
                continue;
            }
            let mut v = Validation::new(header.alg);
            v.leeway = LEEWAY_S;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            match jsonwebtoken::decode::<Claims>(token, &key, &v) {
                Ok(data) => {
                    return data
                        .claims
                        .sub
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| "JWT has no `sub` claim".to_owned());
                }
                Err(e) => last_err = format!("JWT rejected: {e}"),
            }
        }
        Err(last_err)
    }

    /// Keys to try for `kid`: cached, else after a (rate-limited) JWKS refetch.
    async fn keys_for(
        &self,
        kid: Option<&str>,
    ) -> Result<Vec<(DecodingKey, Option<Algorithm>)>, String> {
        let mut cache = self.cache.lock().await;
        let lookup = |c: &KeyCache| -> Vec<(DecodingKey, Option<Algorithm>)> {
            match kid {
                Some(k) => c.keys.get(k).cloned().into_iter().collect(),
                None => c
                    .keys
                    .values()
                    .cloned()
                    .chain(c.anonymous.iter().cloned())
                    .collect(),
            }
        };
        let found = lookup(&cache);
        if !found.is_empty() {
            return Ok(found);
        }
        let may_fetch = cache
            .fetched_at
            .is_none_or(|t| t.elapsed() >= REFETCH_MIN_GAP);
        if !may_fetch {
            return Err("unknown JWT key id".into());
        }
        let fetched = self.fetch().await;
        cache.fetched_at = Some(Instant::now());
        let (keys, anonymous) = fetched?;
        cache.keys = keys;
        cache.anonymous = anonymous;
        let found = lookup(&cache);
        if found.is_empty() {
            return Err("unknown JWT key id".into());
        }
        Ok(found)
    }

    #[allow(clippy::type_complexity)]
    async fn fetch(
        &self,
    ) -> Result<
        (
            HashMap<String, (DecodingKey, Option<Algorithm>)>,
            Vec<(DecodingKey, Option<Algorithm>)>,
        ),
        String,
    > {
        let fail = |e: String| {
            tracing::warn!(url = %self.jwks_url, error = %e, "could not load the JWKS");
            format!("could not verify the token: JWKS unavailable ({e})")
        };
        let resp = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let set: JwkSet = resp.json().await.map_err(|e| fail(e.to_string()))?;
        let mut keys = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue; // key types we cannot use (e.g. symmetric) are skipped
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), (key, alg));
                }
                None => anonymous.push((key, alg)),
            }
        }
        Ok((keys, anonymous))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[tokio::test]
    async fn api_key_scheme() {
        let off = Auth::new(&AuthConfig::default(), reqwest::Client::new());
        assert!(!off.enabled());
        assert_eq!(
            off.authenticate(&HeaderMap::new()).await.unwrap(),
            Caller::Anonymous
        );
        let cfg = AuthConfig {
            api_keys: vec!["k1".into(), "k3".into()],
            ..AuthConfig::default()
        };
        let auth = Auth::new(&cfg, reqwest::Client::new());
        assert!(auth.enabled());
        assert_eq!(
            auth.authenticate(&headers(&[("x-api-key", "k1")]))
                .await
                .unwrap(),
            Caller::ApiKey
        );
        assert!(auth
            .authenticate(&headers(&[("x-api-key", "k2")]))
            .await
            .is_err());
        assert!(auth.authenticate(&HeaderMap::new()).await.is_err());
        assert!(auth
            .authenticate(&headers(&[("authorization", "Bearer x.y.z")]))
            .await
            .is_err());
        assert_eq!(
            auth.authenticate(&headers(&[("authorization", "Bearer k3")]))
                .await
                .unwrap(),
            Caller::ApiKey
        );
        assert_eq!(Caller::ApiKey.owner().as_deref(), Some("api-key"));
        assert_eq!(Caller::Jwt("u".into()).owner().as_deref(), Some("jwt:u"));
        assert_eq!(Caller::Anonymous.owner(), None);
    }
}
