//! The scaler's errors, and how each reaches KEDA as a gRPC status.

use troupe_transport::TransportError;

/// What can go wrong serving KEDA. Messages say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ScalerError {
    /// The gRPC server stopped with an error (the listener failed).
    #[error("the push scaler's gRPC server on {addr} failed; check that the port is free and reachable from KEDA")]
    Serve {
        /// Address it listened on.
        addr: String,
        /// What tonic reported.
        #[source]
        source: tonic::transport::Error,
    },
    /// The listener's own address could not be read.
    #[error("cannot read the push scaler listener's address")]
    Listener(#[source] std::io::Error),
    /// The trigger's metadata names no queue.
    #[error("ScaledObject {scaled_object}: the external-push trigger's metadata has no 'queue'; set it to the actor's queue name (asya-NAMESPACE-ACTOR), as `troupe render` does")]
    MissingQueue {
        /// `namespace/name` of the ScaledObject.
        scaled_object: String,
    },
    /// `queueLength` in the trigger's metadata is not a positive number.
    #[error("ScaledObject {scaled_object}: queueLength '{value}' is not a positive integer; use the actor's scaling.queueLength")]
    BadQueueLength {
        /// `namespace/name` of the ScaledObject.
        scaled_object: String,
        /// What the metadata said.
        value: String,
    },
    /// The broker could not be asked for the queue's depth.
    #[error("cannot read the depth of queue '{queue}' from the broker")]
    Depth {
        /// The queue.
        queue: String,
        /// What the transport reported.
        #[source]
        source: TransportError,
    },
}

impl From<ScalerError> for tonic::Status {
    fn from(e: ScalerError) -> Self {
        // The cause chain goes into the message: KEDA logs only the status message.
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        match e {
            ScalerError::MissingQueue { .. } | ScalerError::BadQueueLength { .. } => {
                tonic::Status::invalid_argument(message)
            }
            ScalerError::Depth { .. } => tonic::Status::unavailable(message),
            ScalerError::Serve { .. } | ScalerError::Listener(_) => {
                tonic::Status::internal(message)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_status_carries_the_cause_and_the_right_code() {
        let s = tonic::Status::from(ScalerError::Depth {
            queue: "asya-ns-a".into(),
            source: TransportError::Closed,
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(
            s.message().ends_with(": transport closed"),
            "{}",
            s.message()
        );
        let s = tonic::Status::from(ScalerError::MissingQueue {
            scaled_object: "ns/a".into(),
        });
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("'queue'"));
    }
}
