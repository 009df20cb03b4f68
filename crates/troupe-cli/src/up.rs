//! `troupe up`.

use std::path::Path;

use troupe_mesh::{Mesh, MeshConfig, MeshOptions};

/// Runs the mesh until Ctrl-C / SIGTERM. Returns the process exit code.
pub async fn run(path: &Path, grace: &str, no_gateway: bool, no_native_routers: bool) -> u8 {
    let grace = match troupe_protocol::duration::parse_go_duration(grace) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("troupe up: --grace: {e}");
            return 2;
        }
    };
    let (config, warnings) = match MeshConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("troupe up: invalid mesh file:\n{e}");
            return 2;
        }
    };
    for w in warnings {
        tracing::warn!("{w}");
    }
    let mesh = match Mesh::start(
        config,
        MeshOptions {
            grace: Some(grace),
            no_gateway,
            no_native_routers,
            ..MeshOptions::default()
        },
    )
    .await
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("troupe up: {e}");
            return u8::try_from(e.exit_code()).unwrap_or(1);
        }
    };
    let stop = match crate::signals::stop_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("troupe up: cannot install signal handlers: {e}");
            mesh.stop().await;
            return 1;
        }
    };
    mesh.run_until(stop).await;
    0
}
