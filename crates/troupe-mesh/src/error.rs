//! Errors of `troupe up`.

/// Why the mesh could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The mesh file is invalid (exit code 2).
    #[error("{0}")]
    Config(String),
    /// A handler module cannot be imported (exit code 2).
    #[error("{0}")]
    Handler(String),
    /// The state dir cannot be used.
    #[error("state dir {path}: {message}")]
    StateDir {
        /// Path involved.
        path: String,
        /// What failed.
        message: String,
    },
    /// The queue transport (embedded store or broker) failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The gateway's store or adapters could not start.
    #[error("gateway: {0}")]
    Gateway(String),
    /// The mesh API listener could not be bound.
    #[error("cannot listen on {addr}: {message} (pick another port with gateway.listen in the mesh file)")]
    Listen {
        /// Address.
        addr: String,
        /// What failed.
        message: String,
    },
}

impl MeshError {
    /// Process exit code for this error: 2 for user configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            MeshError::Config(_) | MeshError::Handler(_) => 2,
            _ => 1,
        }
    }
}
