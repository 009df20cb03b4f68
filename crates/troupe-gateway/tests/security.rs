//! The mesh API refuses forged and cross-site requests (issue 9, items 1 and 2): over
//! real HTTP on a loopback listener, reproducing the audit's attacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use troupe_gateway::{
    AuthConfig, Gateway, GatewayConfig, Ingress, Listener, MemoryStore, SecurityConfig,
};

const KEY: &str = "client-key";
const TOKEN: &str = "sidecar-token";
const APP: &str = "https://app.example";
const EVIL: &str = "http://evil.example";

struct Actors(HashSet<String>);

#[async_trait]
impl Ingress for Actors {
    fn has_actor(&self, actor: &str) -> bool {
        self.0.contains(actor)
    }
    async fn publish(&self, _actor: &str, _body: bytes::Bytes) -> Result<(), String> {
        Ok(())
    }
}

fn secured() -> SecurityConfig {
    SecurityConfig {
        client_auth: AuthConfig {
            api_keys: vec![KEY.into()],
            ..AuthConfig::default()
        },
        sidecar_token: Some(TOKEN.into()),
        cors_origins: vec![APP.into()],
        loopback_hosts: Some(Vec::new()),
    }
}

struct Mesh {
    base: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Mesh {
    async fn start(security: SecurityConfig) -> Self {
        Self::start_on(security, Listener::Both).await
    }

    async fn start_on(security: SecurityConfig, which: Listener) -> Self {
        let config = GatewayConfig {
            security,
            ..GatewayConfig::with_internal_url("http://127.0.0.1:1")
        };
        let ingress = Arc::new(Actors(["a".to_owned()].into_iter().collect()));
        let gw = Gateway::new(config, Arc::new(MemoryStore::new()), ingress);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let router = gw.router_for(which);
        tokio::spawn(async move {
            gw.serve_router(listener, router, async move {
                let _ = rx.await;
            })
            .await
        });
        Mesh {
            base,
            http: reqwest::Client::new(),
            _stop: stop,
        }
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A task created with the client key.
    async fn task(&self) -> String {
        let r = self
            .req(Method::POST, "/api/v1/mesh/?actor=a")
            .header("x-api-key", KEY)
            .json(&json!({"payload": {"secret": "s3cr3t"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn status_of(&self, id: &str) -> String {
        let r = self
            .req(Method::GET, &format!("/api/v1/mesh/{id}"))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v["status"].as_str().unwrap_or_default().to_owned()
    }
}

fn forged_result() -> Value {
    json!({"type": "status", "status": "succeeded", "data": {"result": {"forged": true}}})
}

#[tokio::test]
async fn sidecar_routes_refuse_callers_without_the_sidecar_token() {
    let m = Mesh::start(secured()).await;
    let id = m.task().await;
    let child = json!({"id": "c1", "parent_id": id});
    let forgeries = [
        (format!("/api/v1/mesh/{id}/events"), forged_result()),
        (format!("/api/v1/mesh/{id}/children"), child.clone()),
        (
            format!("/api/v1/mesh/{id}/adopt"),
            json!({"actor": "a", "payload": {}}),
        ),
        (
            "/mesh".to_owned(),
            json!({"id": "c2", "parent_id": id, "prev": [], "curr": "a", "next": []}),
        ),
    ];
    for (path, body) in &forgeries {
        // No credential, and a client key: a client is not a sidecar.
        for key in [None, Some(KEY)] {
            let mut r = m.req(Method::POST, path).json(body);
            if let Some(k) = key {
                r = r.header("x-api-key", k).bearer_auth(k);
            }
            let r = r.send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} key={key:?}");
        }
    }
    assert_eq!(
        m.status_of(&id).await,
        "pending",
        "the forged result did not land"
    );
    // The sidecar's own report goes through.
    let r = m
        .req(Method::POST, &format!("/api/v1/mesh/{id}/events"))
        .bearer_auth(TOKEN)
        .json(&forged_result())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(m.status_of(&id).await, "succeeded");
}

#[tokio::test]
async fn client_routes_refuse_callers_without_the_key() {
    let m = Mesh::start(secured()).await;
    let id = m.task().await;
    let routes = [
        (Method::POST, "/api/v1/mesh/?actor=a".to_owned()),
        (Method::GET, "/api/v1/mesh/".to_owned()),
        (Method::GET, "/api/v1/mesh".to_owned()),
        (Method::GET, format!("/api/v1/mesh/{id}")),
        (Method::GET, format!("/api/v1/mesh/{id}/events")),
        (Method::POST, format!("/api/v1/mesh/{id}/pause")),
        (Method::POST, format!("/api/v1/mesh/{id}/resume")),
        (Method::DELETE, format!("/api/v1/mesh/{id}")),
    ];
    for (method, path) in &routes {
        for bad in [None, Some("wrong-key")] {
            let mut r = m.req(method.clone(), path).json(&json!({"payload": {}}));
            if let Some(k) = bad {
                r = r.header("x-api-key", k);
            }
            let r = r.send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} key={bad:?}"
            );
            let body = r.text().await.unwrap();
            assert!(!body.contains("s3cr3t"), "{body}");
        }
    }
    assert_eq!(
        m.status_of(&id).await,
        "pending",
        "nothing was canceled or paused"
    );
    // The key works as X-API-Key and as a bearer token; so does the sidecar token.
    for auth in [
        ("x-api-key", KEY.to_owned()),
        ("authorization", format!("Bearer {KEY}")),
        ("authorization", format!("Bearer {TOKEN}")),
    ] {
        let r = m
            .req(Method::GET, "/api/v1/mesh/")
            .header(auth.0, &auth.1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{auth:?}");
    }
    let r = m
        .req(Method::DELETE, &format!("/api/v1/mesh/{id}"))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // health stays open for probes
    assert_eq!(
        m.req(Method::GET, "/health").send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn non_json_bodies_are_refused_with_415() {
    for security in [secured(), SecurityConfig::default()] {
        let m = Mesh::start(security).await;
        let r = m
            .req(Method::POST, "/api/v1/mesh/?actor=a")
            .header("x-api-key", KEY)
            .header("content-type", "text/plain")
            .body(r#"{"payload": {}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(r.text().await.unwrap().contains("application/json"));
        let r = m
            .req(Method::POST, "/api/v1/mesh/x/events")
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(forged_result().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_even_without_auth() {
    let open = SecurityConfig {
        cors_origins: vec![APP.into()],
        ..SecurityConfig::default()
    };
    for security in [secured(), open] {
        let m = Mesh::start(security).await;
        for (method, path) in [
            (Method::POST, "/api/v1/mesh/?actor=a"),
            (Method::GET, "/api/v1/mesh/"),
        ] {
            let r = m
                .req(method.clone(), path)
                .header("x-api-key", KEY)
                .header("origin", EVIL)
                .json(&json!({"payload": {}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
        // A preflight from a foreign origin is refused too.
        let r = m
            .req(Method::OPTIONS, "/api/v1/mesh/")
            .header("origin", EVIL)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn allowed_origin_gets_preflight_and_cors_headers() {
    let m = Mesh::start(secured()).await;
    let r = m
        .req(Method::OPTIONS, "/api/v1/mesh/")
        .header("origin", APP)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, x-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("x-api-key") && allowed.contains("content-type"));
    // The actual request still needs the key, and is answered with the CORS header.
    let r = m
        .req(Method::POST, "/api/v1/mesh/?actor=a")
        .header("origin", APP)
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = m
        .req(Method::POST, "/api/v1/mesh/?actor=a")
        .header("origin", APP)
        .header("x-api-key", KEY)
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
}

#[tokio::test]
async fn foreign_host_on_a_loopback_bind_is_refused() {
    let m = Mesh::start(secured()).await;
    let port = m.base.rsplit(':').next().unwrap().to_owned();
    for host in [format!("evil.example:{port}"), "attacker.test".to_owned()] {
        let r = m
            .req(Method::GET, "/api/v1/mesh/")
            .header("host", &host)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = m
            .req(Method::GET, "/api/v1/mesh/")
            .header("host", &host)
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn without_a_token_sidecar_routes_close_once_client_auth_is_on() {
    // Client auth on, no sidecar token, one listener: nobody may forge (fail closed).
    let m = Mesh::start(SecurityConfig {
        sidecar_token: None,
        ..secured()
    })
    .await;
    let id = m.task().await;
    for key in [None, Some(KEY)] {
        let mut r = m
            .req(Method::POST, &format!("/api/v1/mesh/{id}/events"))
            .json(&forged_result());
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("TROUPE_GATEWAY_TOKEN"));
    }
    // A separate internal listener without a token is Asya's model: the network guards it.
    let internal = Mesh::start_on(
        SecurityConfig {
            sidecar_token: None,
            ..secured()
        },
        Listener::Internal,
    )
    .await;
    let r = internal
        .req(Method::POST, "/api/v1/mesh/nope/events")
        .json(&forged_result())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // With a token, the internal listener wants it, also for the pre-flight lookup.
    let internal = Mesh::start_on(secured(), Listener::Internal).await;
    for (method, path) in [
        (Method::GET, "/api/v1/mesh/nope"),
        (Method::POST, "/api/v1/mesh/nope/events"),
    ] {
        let r = internal
            .req(method.clone(), path)
            .header("x-api-key", KEY)
            .json(&forged_result())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}
