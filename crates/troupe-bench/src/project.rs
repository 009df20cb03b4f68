//! The throwaway project the benchmark runs: a mesh file with three no-op actors and the
//! scripts it needs.

use std::io;
use std::path::{Path, PathBuf};

/// Actors of the pipeline, in route order.
pub const ACTORS: [&str; 3] = ["a", "b", "c"];

/// Handler module: returns its payload unchanged, so every cost measured is overhead.
pub const NOOP_PY: &str = "def noop(p):\n    return p\n";

/// The floor client: the same three `POST /invoke` round trips, straight to the runtimes.
pub const FLOOR_CLIENT_PY: &str = include_str!("floor_client.py");

/// File name of the floor client inside the project folder.
pub const FLOOR_CLIENT_FILE: &str = "floor_client.py";

/// The mesh file: one replica per actor (autoscaling off, so no scaler runs), one message
/// at a time per replica.
pub fn mesh_yaml(python: &str, persist_results: bool) -> String {
    let mut y = String::from("namespace: bench\n");
    y.push_str(&format!(
        "python: {}\n",
        serde_json::Value::String(python.to_owned())
    ));
    if !persist_results {
        y.push_str("crew: {persist_results: false}\n");
    }
    y.push_str("actors:\n");
    for actor in ACTORS {
        y.push_str(&format!(
            "  - actor: {actor}\n    handler: noop.noop\n    replicas: 1\n    scaling: {{enabled: false}}\n    concurrency: 1\n"
        ));
    }
    y
}

/// The gateway benchmark's extra actor: no replicas, so tasks created on it stay pending
/// while SSE subscribers follow them.
pub const HOLD_ACTOR: &str = "hold";

/// The gateway benchmark's mesh file: the pipeline's actors, [`HOLD_ACTOR`] with no
/// replicas, and the gateway's task store (`sqlite`, the default, or `memory`).
pub fn gateway_mesh_yaml(python: &str, persist_results: bool, store: &str) -> String {
    let mut y = format!("gateway: {{store: {store}}}\n");
    y.push_str(&mesh_yaml(python, persist_results));
    y.push_str(&format!(
        "  - actor: {HOLD_ACTOR}\n    handler: noop.noop\n    replicas: 0\n    scaling: {{enabled: false}}\n"
    ));
    y
}

/// Paths of a written project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Project folder (mesh file, handler module, floor client).
    pub root: PathBuf,
    /// The mesh file.
    pub mesh_file: PathBuf,
    /// The floor client script.
    pub floor_client: PathBuf,
}

/// Writes the mesh file, `noop.py` and the floor client into `root`.
pub fn write(root: &Path, python: &str, persist_results: bool) -> io::Result<Project> {
    write_with(root, &mesh_yaml(python, persist_results))
}

/// Writes the project with `mesh` as its mesh file.
pub fn write_with(root: &Path, mesh: &str) -> io::Result<Project> {
    std::fs::create_dir_all(root)?;
    let mesh_file = root.join(troupe_mesh::config::MESH_FILE_NAME);
    std::fs::write(&mesh_file, mesh)?;
    std::fs::write(root.join("noop.py"), NOOP_PY)?;
    let floor_client = root.join(FLOOR_CLIENT_FILE);
    std::fs::write(&floor_client, FLOOR_CLIENT_PY)?;
    Ok(Project {
        root: root.to_path_buf(),
        mesh_file,
        floor_client,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use troupe_mesh::MeshConfig;

    #[test]
    fn written_project_loads_as_three_fixed_single_replica_actors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "python3", true).unwrap();
        let (mesh, warnings) = MeshConfig::load(&p.mesh_file).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(mesh.namespace, "bench");
        let names: Vec<&str> = mesh.actors.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ACTORS);
        for a in &mesh.actors {
            assert_eq!(a.handler, "noop.noop");
            assert_eq!(a.python, "python3");
            assert!(!a.scaling.enabled);
            assert_eq!(a.scaling.replicas, 1);
            assert_eq!(a.concurrency, 1);
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("noop.py")).unwrap(),
            NOOP_PY
        );
        assert!(p.floor_client.is_file());
    }

    #[test]
    fn gateway_project_adds_a_stopped_hold_actor_and_the_store() {
        use troupe_mesh::config::GatewayStore;
        let dir = tempfile::tempdir().unwrap();
        for (store, want) in [
            ("sqlite", GatewayStore::Sqlite),
            ("memory", GatewayStore::Memory),
        ] {
            let p = write_with(dir.path(), &gateway_mesh_yaml("python3", false, store)).unwrap();
            let (mesh, warnings) = MeshConfig::load(&p.mesh_file).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            let names: Vec<&str> = mesh.actors.iter().map(|a| a.name.as_str()).collect();
            assert_eq!(names, ["a", "b", "c", HOLD_ACTOR]);
            let hold = &mesh.actors[3];
            assert!(!hold.scaling.enabled);
            assert_eq!(hold.scaling.replicas, 0);
            assert_eq!(mesh.gateway.store, want);
            assert!(!mesh.crew.persist_results);
        }
    }

    #[test]
    fn interpreter_path_is_quoted() {
        let y = mesh_yaml("/opt/my python/bin/python3", true);
        assert!(
            y.contains("python: \"/opt/my python/bin/python3\"\n"),
            "{y}"
        );
    }
}
