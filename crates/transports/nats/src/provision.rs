//! Queue provisioning for the operator: the queue's stream and durable consumer, made by
//! the same code as on first use (`Inner::stream`, `Inner::consumer`), and removed by
//! deleting the stream (which takes its consumer and messages with it).

use troupe_transport::TransportError;

use crate::{check_queue, Failure, Inner, KIND};

impl Inner {
    /// Creates the stream (both subjects) and the durable consumer, or finds them. A
    /// name JetStream cannot take, or a stream the server refuses (a subject another
    /// stream already claims), is a [`TransportError::QueueRefused`].
    pub(crate) async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.check_open()?;
        check_queue(queue).map_err(|e| TransportError::QueueRefused {
            kind: KIND,
            queue: queue.to_owned(),
            reason: match e {
                TransportError::Config { message, .. } => message,
                e => e.to_string(),
            },
        })?;
        // Ask the server, not the cache: the stream may have been deleted since.
        self.forget(queue);
        self.retry(queue, || self.consumer(queue)).await.map(|_| ())
    }

    /// Deletes the queue's stream; one that is not there (or a name no stream can have)
    /// is not an error. The shared dead-letter stream is left.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        use async_nats::jetstream::context::DeleteStreamErrorKind as K;
        self.check_open()?;
        if check_queue(queue).is_err() {
            return Ok(());
        }
        self.forget(queue);
        let deleted = self
            .retry(queue, || async move {
                match self.js.delete_stream(queue).await {
                    Ok(_) => Ok(()),
                    Err(e) => match e.kind() {
                        K::JetStream(je)
                            if je.error_code()
                                == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                        {
                            Ok(())
                        }
                        K::JetStream(je) => Err(Failure::Fatal(TransportError::QueueRefused {
                            kind: KIND,
                            queue: queue.to_owned(),
                            reason: format!("cannot delete the JetStream stream: {je}"),
                        })),
                        _ => Err(Failure::Transient(format!(
                            "deleting stream '{queue}': {e}"
                        ))),
                    },
                }
            })
            .await;
        // A receiver may have cached the stream again meanwhile.
        self.forget(queue);
        deleted
    }
}
