//! Commands that talk to a running mesh over its loopback mesh API.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use troupe_mesh::control::ActorView;
use troupe_mesh::{statefile, MeshConfig};

use crate::wait;

/// Where the running mesh is.
#[derive(Debug, clap::Args)]
pub struct MeshArg {
    /// Folder holding troupe.yaml (or the mesh file) of the running mesh.
    #[arg(long = "mesh", default_value = ".")]
    path: PathBuf,
    /// Mesh API URL; overrides --mesh.
    #[arg(long, env = "TROUPE_MESH_URL")]
    url: Option<String>,
    /// Key for a mesh whose gateway has auth on (sent as X-API-Key); without it, the
    /// mesh file's `gateway.api_key` (else its MCP or A2A `api_key`) is used.
    #[arg(long, env = "TROUPE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl MeshArg {
    /// The key to present: `--api-key` / `TROUPE_API_KEY`, else the mesh file's (mesh.json
    /// holds nothing secret; whoever may read the mesh file holds its keys anyway).
    fn key(&self) -> Option<String> {
        if let Some(k) = self.api_key.as_ref().filter(|k| !k.is_empty()) {
            return Some(k.clone());
        }
        if self.url.is_some() {
            return None;
        }
        let (config, _) = MeshConfig::load(&self.path).ok()?;
        let g = &config.gateway;
        g.api_key
            .clone()
            .or_else(|| g.mcp.options.get("api_key").cloned())
            .or_else(|| g.a2a.options.get("api_key").cloned())
            .filter(|k| !k.is_empty())
    }

    /// An HTTP client that presents the key, when there is one.
    pub fn client(&self) -> Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(key) = self.key() {
            let mut v = reqwest::header::HeaderValue::from_str(&key)
                .context("the API key has characters a header cannot carry")?;
            v.set_sensitive(true);
            headers.insert("x-api-key", v);
        }
        reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")
    }

    /// Resolves the mesh API base URL from the mesh file's state dir.
    pub fn base_url(&self) -> Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.trim_end_matches('/').to_owned());
        }
        let (config, _) = MeshConfig::load(&self.path)
            .map_err(|e| anyhow!("cannot read the mesh file at {}:\n{e}", self.path.display()))?;
        let state = statefile::read(&config.state_dir)
            .filter(|s| statefile::pid_alive(s.pid))
            .ok_or_else(|| {
                anyhow!(
                    "no running mesh found for {} (no {}): start one with `troupe up`",
                    config.file.display(),
                    statefile::path(&config.state_dir).display()
                )
            })?;
        Ok(state.url)
    }
}

fn read_payload(arg: Option<&str>) -> Result<Value> {
    let text = match arg {
        None => return Ok(json!({})),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the payload from stdin")?;
            s
        }
        Some(s) => s.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("payload is not valid JSON: {text}"))
}

async fn error_text(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or(body);
    if status == reqwest::StatusCode::NOT_FOUND && msg.is_empty() {
        // No JSON error: the route itself is missing, i.e. the mesh has no gateway.
        return format!(
            "{status}: this mesh runs without its gateway (troupe up --no-gateway); restart it without that flag to create tasks"
        );
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return format!(
            "{status}: {msg} (this mesh wants a key: set TROUPE_API_KEY or pass --api-key)"
        );
    }
    format!("{status}: {msg}")
}

/// `troupe send`.
pub async fn send(
    mesh: &MeshArg,
    actor: &str,
    payload: Option<&str>,
    route: &[String],
    follow: bool,
    timeout: Option<&str>,
) -> Result<u8> {
    let payload = read_payload(payload)?;
    let timeout = timeout
        .map(troupe_protocol::duration::parse_go_duration)
        .transpose()
        .map_err(|e| anyhow!("--timeout: {e}"))?;
    let base = mesh.base_url()?;
    let client = mesh.client()?;
    let mut body = json!({"payload": payload});
    if let Some(t) = timeout {
        body["timeout"] = json!(t.as_secs().max(1));
    }
    let resp = if route.is_empty() {
        client
            .post(format!("{base}/api/v1/mesh/"))
            .query(&[("actor", actor)])
            .json(&body)
            .send()
            .await
    } else {
        body["actor"] = json!(actor);
        body["route_next"] = json!(route);
        client
            .post(format!("{base}/troupe/v1/tasks"))
            .json(&body)
            .send()
            .await
    }
    .with_context(|| format!("cannot reach the mesh at {base}"))?;
    if !resp.status().is_success() {
        bail!("send failed: {}", error_text(resp).await);
    }
    let created: Value = resp
        .json()
        .await
        .context("unexpected reply from the mesh")?;
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("reply without id: {created}"))?
        .to_owned();
    if !follow {
        crate::stdout_line(&id);
        return Ok(0);
    }
    eprintln!("task {id}");
    wait::follow(
        &client,
        &base,
        &id,
        timeout.map(|t| t + Duration::from_secs(5)),
    )
    .await
}

/// `troupe status`.
pub async fn status(mesh: &MeshArg, as_json: bool) -> Result<u8> {
    let base = mesh.base_url()?;
    let resp = mesh
        .client()?
        .get(format!("{base}/troupe/v1/status"))
        .send()
        .await
        .with_context(|| format!("cannot reach the mesh at {base}"))?;
    if !resp.status().is_success() {
        bail!("status failed: {}", error_text(resp).await);
    }
    let v: Value = resp.json().await?;
    if as_json {
        crate::stdout_line(&serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let actors: Vec<ActorView> =
        serde_json::from_value(v.get("actors").cloned().unwrap_or_default())?;
    crate::stdout_line(&format!(
        "{:<16} {:>7} {:>7} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}  LAST ERROR",
        "ACTOR",
        "QUEUED",
        "DELAYED",
        "INFLIGHT",
        "REPLICAS",
        "SUCCEEDED",
        "FAILED",
        "RETRIED",
        "UNACKED",
        "RESTARTS"
    ));
    for a in actors {
        let replicas = if a.crew {
            "native".to_owned()
        } else {
            format!("{}/{}", a.replicas_running, a.replicas_desired)
        };
        crate::stdout_line(&format!(
            "{:<16} {:>7} {:>7} {:>8} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}  {}",
            a.actor,
            a.ready,
            a.delayed,
            a.in_flight,
            replicas,
            a.succeeded,
            a.failed,
            a.retried,
            a.unacked,
            a.restarts,
            a.last_error
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
        ));
    }
    print_flows(v.get("flows"));
    Ok(0)
}

/// The FLOW table of `troupe status`: every router of every flow and where it runs
/// (`native`: inside the sidecars; `python`: a Python router actor, with the reason).
fn print_flows(flows: Option<&Value>) {
    let Some(flows) = flows.and_then(Value::as_array).filter(|f| !f.is_empty()) else {
        return;
    };
    crate::stdout_line("");
    crate::stdout_line(&format!(
        "{:<16} {:<40} {:<9} {:<7}  WHY PYTHON",
        "FLOW", "ROUTER", "KIND", "RUNS AS"
    ));
    for f in flows {
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let routers = f
            .get("routers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if routers.is_empty() {
            let entry: Vec<&str> = f
                .get("entry")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            crate::stdout_line(&format!(
                "{name:<16} {:<40} {:<9} {:<7}",
                entry.join(" → "),
                "route",
                "-"
            ));
        }
        for r in routers {
            let native = r.get("native").and_then(Value::as_bool).unwrap_or(false);
            crate::stdout_line(&format!(
                "{:<16} {:<40} {:<9} {:<7}  {}",
                name,
                r.get("name").and_then(Value::as_str).unwrap_or_default(),
                r.get("kind").and_then(Value::as_str).unwrap_or_default(),
                if native { "native" } else { "python" },
                if native {
                    ""
                } else {
                    r.get("why")
                        .and_then(Value::as_str)
                        .unwrap_or("native routers are off")
                }
            ));
        }
    }
}

/// `troupe resume`.
pub async fn resume(mesh: &MeshArg, id: &str, payload: Option<&str>, follow: bool) -> Result<u8> {
    let payload = read_payload(payload)?;
    let base = mesh.base_url()?;
    let client = mesh.client()?;
    let resp = client
        .post(format!("{base}/api/v1/mesh/{id}/resume"))
        .json(&json!({"payload": payload}))
        .send()
        .await
        .with_context(|| format!("cannot reach the mesh at {base}"))?;
    if !resp.status().is_success() {
        bail!("resume failed: {}", error_text(resp).await);
    }
    if !follow {
        crate::stdout_line(id);
        return Ok(0);
    }
    wait::follow(&client, &base, id, None).await
}

/// `troupe result`.
pub async fn result(mesh: &MeshArg, id: &str) -> Result<u8> {
    if id.is_empty() || id.contains(['/', '\\']) || id == "." || id == ".." {
        bail!("invalid task id '{id}': ids are the values printed by `troupe send`");
    }
    let base = mesh.base_url()?;
    let client = mesh.client()?;
    let resp = client
        .get(format!("{base}/troupe/v1/results/{id}"))
        .send()
        .await
        .with_context(|| format!("cannot reach the mesh at {base}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        // No stored envelope yet: say whether the task is still on its way.
        let task = client.get(format!("{base}/api/v1/mesh/{id}")).send().await;
        if let Some(task) = task.ok().filter(|t| t.status().is_success()) {
            let v: Value = task.json().await.unwrap_or_default();
            let status = v.get("status").and_then(Value::as_str).unwrap_or("unknown");
            bail!("task {id} has no stored result yet (status: {status}); wait for it with `troupe send --wait`, or try again");
        }
    }
    if !resp.status().is_success() {
        bail!("{}", error_text(resp).await);
    }
    let v: Value = resp.json().await?;
    crate::stdout_line(&serde_json::to_string_pretty(
        v.get("envelope").unwrap_or(&v),
    )?);
    Ok(0)
}
