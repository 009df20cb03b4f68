//! `{state_dir}/mesh.json`: how another terminal finds a running mesh. It holds nothing
//! secret (no key, no sidecar token): see docs/security.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Contents of `mesh.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MeshState {
    /// Base URL of the mesh API listener (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Process id of `troupe up`.
    pub pid: u32,
    /// The MCP endpoint a client pastes (`http://…/mcp`); absent without a gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_url: Option<String>,
    /// The A2A JSON-RPC endpoint a client pastes (`http://…/a2a/`; the agent card is at
    /// `/.well-known/agent-card.json` on the same host); absent without a gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub a2a_url: Option<String>,
}

/// Path of the state file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("mesh.json")
}

/// Writes the state file atomically.
pub fn write(state_dir: &Path, state: &MeshState) -> std::io::Result<()> {
    let tmp = state_dir.join("mesh.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(state).unwrap_or_default())?;
    std::fs::rename(tmp, path(state_dir))
}

/// Reads the state file, if a mesh wrote one.
pub fn read(state_dir: &Path) -> Option<MeshState> {
    let bytes = std::fs::read(path(state_dir)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes the state file (on clean shutdown).
pub fn remove(state_dir: &Path) {
    let _ = std::fs::remove_file(path(state_dir));
}

/// True when a process with this pid exists (a mesh killed with `kill -9` leaves its
/// state file behind).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}
