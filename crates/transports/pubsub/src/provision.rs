//! Queue provisioning for the operator: the topic and subscription made by the same
//! code as on first use (`Inner::ensure`, the DLQ first), and removed with two `DELETE`s.

use reqwest::Method;
use troupe_transport::TransportError;

use crate::{valid_name, CallError, Inner, CALL_TIMEOUT, KIND};

impl Inner {
    /// Creates the topic and subscription of `queue`, or finds them. An invalid name
    /// or any other refusal is a [`TransportError::QueueRefused`].
    pub(crate) async fn provision(&self, queue: &str) -> Result<(), TransportError> {
        // Ask Pub/Sub, not the cache: the queue may have been deleted since.
        self.forget(queue);
        match self.ensure(queue).await {
            Ok(_) => Ok(()),
            Err(TransportError::Config { message, .. }) => Err(TransportError::QueueRefused {
                kind: KIND,
                queue: queue.to_owned(),
                reason: message,
            }),
            Err(TransportError::Io { queue, message }) => Err(TransportError::QueueRefused {
                kind: KIND,
                queue,
                reason: message,
            }),
            Err(e) => Err(e),
        }
    }

    /// Deletes the subscription (its unacked messages go with it), then the topic; a
    /// missing one (404), or a name nothing can have, is not an error. The DLQ topic and
    /// subscription are left.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        if !valid_name(queue) {
            return Ok(());
        }
        for path in [self.subscription(queue), self.topic(queue)] {
            match self
                .call_retrying(Method::DELETE, &path, None, CALL_TIMEOUT)
                .await
            {
                Ok(_) | Err(CallError::NotFound) => {}
                Err(CallError::Service { status, message }) => {
                    return Err(TransportError::QueueRefused {
                        kind: KIND,
                        queue: queue.to_owned(),
                        reason: format!("HTTP {status} deleting {path}: {message}"),
                    })
                }
                Err(e) => return Err(self.error(e, queue)),
            }
        }
        self.forget(queue);
        Ok(())
    }
}
