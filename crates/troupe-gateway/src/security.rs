//! Who may call what (docs/security.md): the sidecar credential, client auth per route,
//! and the cross-site rules (JSON content type, `Origin` allow-list with CORS preflight,
//! `Host` check on loopback binds against DNS rebinding).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{bearer, secret_eq, Auth, AuthConfig};

/// Environment variable holding the sidecar credential (`troupe up` sets it for what it
/// spawns; on Kubernetes it comes from a Secret).
pub const SIDECAR_TOKEN_ENV: &str = "TROUPE_GATEWAY_TOKEN";

/// A fresh random sidecar credential (244 random bits, hex): `troupe up` makes one per run.
pub fn generate_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Security settings of a gateway (mesh file `gateway:` section, or `TROUPE_GATEWAY_*`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// What a client must present on the client routes; off when empty.
    pub client_auth: AuthConfig,
    /// The credential sidecars send (`Authorization: Bearer <token>`) on the sidecar
    /// routes; also accepted on client routes. `None`: see [`SecurityConfig::open_sidecar_routes`].
    pub sidecar_token: Option<String>,
    /// Browser origins allowed to call (`scheme://host[:port]`), answered with CORS headers.
    pub cors_origins: Vec<String>,
    /// `Some`: the listener is on loopback and only these `Host` names (besides
    /// `localhost`, `127.0.0.1` and `[::1]`) are accepted; `None`: no `Host` check.
    pub loopback_hosts: Option<Vec<String>>,
}

impl std::fmt::Debug for SecurityConfig {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityConfig")
            .field("client_auth", &self.client_auth)
            .field(
                "sidecar_token",
                &self.sidecar_token.as_ref().map(|_| "<set>"),
            )
            .field("cors_origins", &self.cors_origins)
            .field("loopback_hosts", &self.loopback_hosts)
            .finish()
    }
}

impl SecurityConfig {
    /// Whether the sidecar routes are open to anyone: no token is configured and no client
    /// auth either (a bare development gateway, as before credentials existed), or the
    /// routes sit on a separate internal listener that the network protects (Asya's model,
    /// whose sidecars send no token).
    pub(crate) fn open_sidecar_routes(&self, internal_listener: bool) -> bool {
        self.sidecar_token.is_none() && (internal_listener || !self.client_auth.enabled())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (`/health`, `/ready`).
    Open,
    /// A client: the configured client auth (when any), or the sidecar token.
    Client,
    /// Sidecars only: the sidecar token.
    Sidecar,
    /// Raw queue publishing: the sidecar token, or a client credential when client auth
    /// is configured (an operator replaying envelopes); never anonymous with a token set.
    Publish,
}

/// The checks of one listener, shared by its routes.
pub struct Guard {
    auth: Auth,
    config: SecurityConfig,
    internal_listener: bool,
}

impl Guard {
    /// A guard for the mesh API (`internal_listener`: serves only sidecar routes).
    pub fn new(config: &SecurityConfig, internal_listener: bool) -> Arc<Self> {
        Arc::new(Guard {
            auth: Auth::from_config(&config.client_auth),
            config: config.clone(),
            internal_listener,
        })
    }

    /// A guard with another client auth (an adapter's own keys), the same site rules.
    pub fn with_auth(config: &SecurityConfig, client_auth: AuthConfig) -> Arc<Self> {
        let config = SecurityConfig {
            client_auth,
            ..config.clone()
        };
        Self::new(&config, false)
    }

    /// The client auth of this guard.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    fn has_token(&self, headers: &HeaderMap) -> bool {
        match (&self.config.sidecar_token, bearer(headers)) {
            (Some(want), Some(got)) => secret_eq(want.as_bytes(), got.as_bytes()),
            _ => false,
        }
    }

    /// `Err` is the refusal to send.
    pub async fn check(&self, access: Access, headers: &HeaderMap) -> Result<(), Response> {
        let client = || async {
            self.auth
                .authenticate(headers)
                .await
                .map(|_| ())
                .map_err(|reason| unauthorized(&reason))
        };
        match access {
            Access::Open => Ok(()),
            _ if self.has_token(headers) => Ok(()),
            Access::Client => client().await,
            Access::Publish if self.auth.enabled() => client().await,
            Access::Sidecar | Access::Publish => {
                if self.config.open_sidecar_routes(self.internal_listener) {
                    Ok(())
                } else if self.config.sidecar_token.is_none() {
                    Err(unauthorized(&format!(
                        "this route is for sidecars and no sidecar credential is configured: set {SIDECAR_TOKEN_ENV} on the gateway and its sidecars"
                    )))
                } else {
                    Err(unauthorized(&format!(
                        "this route is for sidecars: send Authorization: Bearer <{SIDECAR_TOKEN_ENV}>"
                    )))
                }
            }
        }
    }
}

fn unauthorized(reason: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": format!("unauthorized: {reason}") })),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"troupe\""),
    );
    r
}

fn refuse(code: StatusCode, text: &str) -> Response {
    (code, Json(json!({ "error": text }))).into_response()
}

/// Middleware state: a guard and the access of the routes it wraps.
#[derive(Clone)]
pub struct RouteGuard {
    /// The listener's guard.
    pub guard: Arc<Guard>,
    /// The routes' access.
    pub access: Access,
}

/// `axum::middleware::from_fn_with_state(RouteGuard, require)`: refuses callers without
/// the credential the route needs.
pub async fn require(State(g): State<RouteGuard>, req: Request, next: Next) -> Response {
    match g.guard.check(g.access, req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal,
    }
}

/// Cross-site rules of a router.
#[derive(Clone)]
pub struct SiteRules {
    config: Arc<SecurityConfig>,
    /// Bodies must be JSON (`false` for raw queue publishing).
    json_bodies: bool,
}

impl SiteRules {
    /// Rules for routes taking JSON bodies.
    pub fn json(config: &SecurityConfig) -> Self {
        SiteRules {
            config: Arc::new(config.clone()),
            json_bodies: true,
        }
    }

    /// Rules for routes taking any bytes (`Origin` and `Host` checks only).
    pub fn raw(config: &SecurityConfig) -> Self {
        SiteRules {
            config: Arc::new(config.clone()),
            json_bodies: false,
        }
    }

    /// Wraps every route of `router` (`.layer`, so preflights to any path are answered).
    pub fn apply<S>(self, router: axum::Router<S>) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router.layer(axum::middleware::from_fn_with_state(self, site_guard))
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(extra) = &self.config.loopback_hosts else {
            return true;
        };
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            // HTTP/1.0 without Host: not a browser.
            return true;
        };
        let name = host_name(host);
        is_loopback_name(name) || extra.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// `Some(origin)` for a browser origin that may call: listed, or loopback (a page
    /// served on this machine, e.g. the MCP Inspector).
    fn origin_allowed<'h>(&self, headers: &'h HeaderMap) -> Result<Option<&'h str>, ()> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let origin = origin.to_str().map_err(|_| ())?;
        let listed = self
            .config
            .cors_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        // The gateway serves no pages, so even its own origin is not trusted: behind
        // DNS rebinding a foreign page has it.
        if listed || is_loopback_name(host_name(authority)) {
            Ok(Some(origin))
        } else {
            Err(())
        }
    }
}

/// The host part of `host[:port]` / `[v6]:port`, brackets kept for IPv6.
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        authority
            .find(']')
            .and_then(|i| authority.get(..=i))
            .unwrap_or(authority)
    } else {
        authority.split(':').next().unwrap_or(authority)
    }
}

fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]"
}

const ALLOW_HEADERS: &str =
    "content-type, authorization, x-api-key, mcp-session-id, mcp-protocol-version, last-event-id, a2a-extensions";
const EXPOSE_HEADERS: &str = "mcp-session-id, mcp-protocol-version, location";

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime
            .rsplit_once('+')
            .is_some_and(|(t, s)| t.starts_with("application/") && s.eq_ignore_ascii_case("json"))
}

/// A request that carries a body (or says it does).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.contains_key(header::CONTENT_TYPE)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0")
}

async fn site_guard(State(rules): State<SiteRules>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if !rules.host_allowed(headers) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "Host header names another server (this listener is on loopback: use localhost, 127.0.0.1 or [::1], or list the name in the gateway's trusted_hosts)",
        );
    }
    let origin = match rules.origin_allowed(headers) {
        Ok(o) => o.map(str::to_owned),
        Err(()) => {
            return refuse(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: add the page's origin to the gateway's cors_origins to allow it",
            )
        }
    };
    if req.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Some(o) = &origin {
            let h = r.headers_mut();
            cors_headers(h, o);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        return r;
    }
    let writes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if rules.json_bodies && writes && has_body(headers) && !is_json(headers) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "request bodies must be JSON: send Content-Type: application/json",
        );
    }
    let mut r = next.run(req).await;
    if let Some(o) = &origin {
        cors_headers(r.headers_mut(), o);
        r.headers_mut().insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    r
}

fn cors_headers(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("localhost"), "localhost");
        assert!(is_loopback_name("LOCALHOST"));
        assert!(!is_loopback_name("evil.example"));
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        for (ct, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), ok, "{ct}");
        }
    }
}
