//! What can go wrong in the operator. Problems the user must fix in an AsyncActor or its
//! namespace are not errors: they are [`crate::status::Problem`]s, written to the status
//! and an Event. These are the failures the operator retries (with backoff) or stops on.

use std::net::SocketAddr;

use troupe_transport::TransportError;

/// Operator failures.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// A Kubernetes API call failed (network, RBAC, conflict); retried with backoff.
    #[error("Kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the operator was doing (`applying Deployment prod/summarize`).
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// No Kubernetes client could be built (no kubeconfig, no in-cluster service account).
    #[error("cannot configure the Kubernetes client: {0}; set KUBECONFIG or run the operator in a pod with a service account")]
    Client(#[source] kube::Error),
    /// The broker could not be reached to create or delete a queue; retried with backoff.
    #[error("queue '{queue}' on {kind}: {source}")]
    Queue {
        /// Transport kind.
        kind: &'static str,
        /// Queue name.
        queue: String,
        /// The transport's error.
        #[source]
        source: TransportError,
    },
    /// A rendered object could not be turned into a request (a bug in the renderer).
    #[error("rendered {kind} '{name}' is not a valid object: {message}")]
    Object {
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// An operator setting (flag or environment variable) is invalid.
    #[error("invalid operator setting {name}: {message}")]
    Config {
        /// The flag or variable.
        name: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// `/metrics` and `/healthz` could not be served.
    #[error("cannot serve /metrics and /healthz on {addr}: {source}; pick another --metrics-addr")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The finalizer helper failed (adding or removing `asya.sh/finalizer`, or the
    /// apply/cleanup it ran).
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<OperatorError>>),
    /// This operator lost its leader lease (another one took over, or the API server
    /// could not be reached for longer than the lease lasts).
    #[error("lost the leader lease '{lease}': {message}")]
    LostLease {
        /// The lease, `namespace/name`.
        lease: String,
        /// Why.
        message: String,
    },
}

impl OperatorError {
    /// Wraps a client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        OperatorError::Kube {
            action: action.into(),
            source,
        }
    }

    /// Short label for the errors metric (`kube`, `queue`, ...).
    pub fn metric_reason(&self) -> &'static str {
        match self {
            OperatorError::Kube { .. } | OperatorError::Client(_) => "kube",
            OperatorError::Queue { .. } => "queue",
            OperatorError::Object { .. } => "object",
            OperatorError::Config { .. } => "config",
            OperatorError::Serve { .. } => "serve",
            OperatorError::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_reason(),
                _ => "finalizer",
            },
            OperatorError::LostLease { .. } => "lease",
        }
    }
}

/// Whether a client error is the API server's 404 (object or resource kind absent).
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is the API server's 409 (conflict, already exists).
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
