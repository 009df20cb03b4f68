//! Queue provisioning for the operator: `create_queue` declares an actor queue exactly
//! as the consumer does (same arguments, same binding) but, unlike the consumer, does not
//! fall back to a passive declare when the broker refuses: an operator must learn that
//! the queue it manages exists with other arguments.

use lapin::options::QueueDeleteOptions;
use lapin::ErrorKind;
use troupe_transport::TransportError;

use crate::{actor_queue_args, amqp_code, Inner, KIND};

/// AMQP reply codes by which the broker refuses a queue rather than failing: 403
/// ACCESS_REFUSED (a reserved `amq.` name, no permission), 405 RESOURCE_LOCKED (an
/// exclusive queue of another connection), 406 PRECONDITION_FAILED (other arguments).
const REFUSALS: [u16; 3] = [403, 405, 406];

/// The broker's reply text (`PRECONDITION_FAILED - inequivalent arg …`), else the error.
fn broker_reason(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(p) => p.get_message().as_str().to_owned(),
        _ => e.to_string(),
    }
}

impl Inner {
    fn refusal_or_io(&self, queue: &str, what: &str, e: &lapin::Error) -> TransportError {
        match amqp_code(e) {
            Some(code) if REFUSALS.contains(&code) => TransportError::QueueRefused {
                kind: KIND,
                queue: queue.to_owned(),
                reason: broker_reason(e),
            },
            _ => self.io(queue, what, e),
        }
    }

    /// Declares `queue` with the consumer's arguments and binds it to the exchange with
    /// its actor key. A queue that exists with the same arguments is left as it is.
    pub(crate) async fn create_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.check_open()?;
        let mut st = self.state.lock().await;
        self.ensure_exchange(&mut st).await?;
        st.queues.remove(queue);
        self.declare_queue_exact(&mut st, queue, actor_queue_args())
            .await?
            .map_err(|e| self.refusal_or_io(queue, "declaring the queue", &e))?;
        self.bind_queue(&mut st, queue).await
    }

    /// `queue.delete` (unconditional): the queue, its messages (unacked ones included)
    /// and its bindings go. Its dead-letter queue and wait queues are left: the wait
    /// queues expire by themselves (`x-expires`), and dead letters are kept for
    /// inspection.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), TransportError> {
        self.check_open()?;
        let mut st = self.state.lock().await;
        st.queues.remove(queue);
        let ch = self.admin(&mut st).await?;
        match ch
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
        {
            Ok(_) => Ok(()),
            // Older brokers answer NOT_FOUND for a queue that is not there.
            Err(e) if amqp_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.refusal_or_io(queue, "deleting the queue", &e)),
        }
    }
}
