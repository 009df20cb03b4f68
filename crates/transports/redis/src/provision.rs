//! Queue provisioning for the operator: the stream and its consumer group, made by the
//! same `XGROUP CREATE … MKSTREAM` the receiver uses, and removed with `DEL`.

use troupe_transport::TransportError;

use crate::{delayed_key, lock, Inner, KIND};

impl Inner {
    /// Creates the stream and group `asya` (from `0`), as the first `receive` would. A
    /// key of that name that is not a stream is refused (`WRONGTYPE`).
    pub(crate) async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.check_open()?;
        // Ask the server, not the cache: the stream may have been deleted since.
        lock(&self.groups).remove(queue);
        match self.run(queue, |_| self.ensure_group(queue)).await {
            Err(TransportError::Io { queue, message }) => Err(TransportError::QueueRefused {
                kind: KIND,
                queue,
                reason: message,
            }),
            r => r,
        }
    }

    /// `DEL` of the stream (its entries, pending ones included, and its consumer group)
    /// and of its delayed set. The shared dead-letter stream is left.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.check_open()?;
        let delayed = &delayed_key(queue);
        self.run(queue, |mut c| async move {
            redis::cmd("DEL")
                .arg(queue)
                .arg(delayed)
                .query_async::<()>(&mut c)
                .await
        })
        .await?;
        lock(&self.groups).remove(queue);
        Ok(())
    }
}
