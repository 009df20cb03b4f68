//! Errors of `troupe sidecar`.

/// Why the sidecar cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// An environment variable is missing or invalid (exit code 2).
    #[error("{0}")]
    Config(String),
    /// The metrics listener could not be bound.
    #[error("cannot listen on {addr} (ASYA_METRICS_ADDR): {message}")]
    Listen {
        /// Address.
        addr: String,
        /// What failed.
        message: String,
    },
    /// The runtime did not become ready in time.
    #[error("the runtime at {socket} did not become ready within {seconds}s (ASYA_RUNTIME_READY_TIMEOUT); check the runtime container's logs")]
    RuntimeNotReady {
        /// Socket path.
        socket: String,
        /// Seconds waited.
        seconds: u64,
    },
    /// The runtime stopped answering or a call timed out: the pod restarts the sidecar
    /// with a fresh runtime.
    #[error("{0}")]
    Runtime(String),
    /// The Prometheus recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
}

impl SidecarError {
    /// Process exit code: 2 for configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SidecarError::Config(_) => 2,
            _ => 1,
        }
    }
}
