//! Authentication (gateway.md §4 "Auth"): `X-API-Key` or a bearer JWT verified
//! against a JWKS. Off when neither is configured.

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
pub(crate) enum Caller {
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

/// The configured schemes.
pub(crate) struct Auth {
    api_key: Option<String>,
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
    pub fn new(
        api_key: Option<String>,
        jwks_url: Option<String>,
        issuer: Option<String>,
        audience: Option<String>,
        http: reqwest::Client,
    ) -> Self {
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        Auth {
            api_key: nonempty(api_key),
            jwt: nonempty(jwks_url).map(|jwks_url| JwtVerifier {
                jwks_url,
                issuer: nonempty(issuer),
                audience: nonempty(audience),
                http,
                cache: Mutex::new(KeyCache::default()),
            }),
        }
    }

    /// Whether any scheme is configured.
    pub fn enabled(&self) -> bool {
        self.api_key.is_some() || self.jwt.is_some()
    }

    /// Whether the API key scheme is on.
    pub fn api_key_enabled(&self) -> bool {
        self.api_key.is_some()
    }

    /// Whether the bearer JWT scheme is on.
    pub fn jwt_enabled(&self) -> bool {
        self.jwt.is_some()
    }

    /// Identifies the caller; `Err` carries the reason for the 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, String> {
        if !self.enabled() {
            return Ok(Caller::Anonymous);
        }
        let key = headers.get("x-api-key");
        if let (Some(want), Some(got)) = (&self.api_key, key) {
            if bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
                return Ok(Caller::ApiKey);
            }
        }
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match (&self.jwt, bearer) {
            (Some(jwt), Some(token)) => jwt.verify(token).await.map(Caller::Jwt),
            _ if key.is_some() => Err("invalid API key".into()),
            (None, Some(_)) => Err("bearer tokens are not accepted: send X-API-Key".into()),
            (_, None) => Err(match (self.api_key.is_some(), self.jwt.is_some()) {
                (true, true) => "credentials required: X-API-Key or Authorization: Bearer <JWT>",
                (true, false) => "credentials required: X-API-Key",
                _ => "credentials required: Authorization: Bearer <JWT>",
            }
            .into()),
        }
    }
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
            tracing::warn!(url = %self.jwks_url, error = %e, "could not load the A2A JWKS");
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
        let off = Auth::new(None, None, None, None, reqwest::Client::new());
        assert!(!off.enabled());
        assert_eq!(
            off.authenticate(&HeaderMap::new()).await.unwrap(),
            Caller::Anonymous
        );
        let auth = Auth::new(Some("k1".into()), None, None, None, reqwest::Client::new());
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
        assert_eq!(Caller::ApiKey.owner().as_deref(), Some("api-key"));
        assert_eq!(Caller::Jwt("u".into()).owner().as_deref(), Some("jwt:u"));
        assert_eq!(Caller::Anonymous.owner(), None);
    }
}
