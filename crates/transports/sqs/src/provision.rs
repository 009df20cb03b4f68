//! Queue provisioning for the operator: `CreateQueue` with the attributes the transport
//! uses on first use (`Inner::create_queue`, strict), `DeleteQueue` by URL.

use serde_json::json;
use troupe_transport::TransportError;

use crate::{is_no_queue, lock, valid_queue_name, CallError, Inner, CALL_TIMEOUT, KIND};

impl Inner {
    /// Creates `queue` (and the DLQ its redrive points to) with the transport's
    /// attributes; SQS answers an existing queue with the same attributes with its URL.
    pub(crate) async fn provision(&self, queue: &str) -> Result<(), TransportError> {
        // Ask SQS, not the cache: the queue may have been deleted since.
        lock(&self.urls).remove(queue);
        self.create_queue(queue, true).await.map(|_| ())
    }

    /// `DeleteQueue` (its messages go with it). A queue that does not exist, or a name
    /// no queue can have, is not an error. AWS refuses to create a queue of the same
    /// name for 60 s after the delete; emulators do not.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        if !valid_queue_name(queue) {
            return Ok(());
        }
        lock(&self.urls).remove(queue);
        let Some(url) = self.queue_url(queue, false).await? else {
            return Ok(());
        };
        lock(&self.urls).remove(queue);
        match self
            .call_retrying("DeleteQueue", &json!({ "QueueUrl": url }), CALL_TIMEOUT)
            .await
        {
            Ok(_) => {
                tracing::info!(queue, "deleted SQS queue");
                Ok(())
            }
            Err(CallError::Service { code, .. }) if is_no_queue(&code) => Ok(()),
            Err(CallError::Service { code, message }) => Err(TransportError::QueueRefused {
                kind: KIND,
                queue: queue.to_owned(),
                reason: format!("{code}: {message}"),
            }),
            Err(e) => Err(self.error(e, queue)),
        }
    }
}
