//! A Python end actor behind the runtime (`ASYA_IS_END_ACTOR=true`, protocol.md §14.1
//! step 3): Asya's Python x-sink / x-sump, or a user's own end actor.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use troupe_engine::handler::{EndHandler, EndOutcome, Requeue};
use troupe_protocol::Envelope;
use troupe_runtime::client::{RuntimeCallError, RuntimeClient, RuntimeEvent};

/// Calls the runtime with the envelope and never routes what it returns.
pub struct RuntimeEndHandler {
    client: Arc<RuntimeClient>,
    timeout: Duration,
    fatal: watch::Sender<Option<String>>,
}

impl RuntimeEndHandler {
    /// A handler calling `client` with `timeout` (the actor timeout); a timed-out call
    /// is reported on `fatal` (the sidecar then exits so the pod restarts the runtime).
    pub fn new(
        client: Arc<RuntimeClient>,
        timeout: Duration,
        fatal: watch::Sender<Option<String>>,
    ) -> Self {
        RuntimeEndHandler {
            client,
            timeout,
            fatal,
        }
    }
}

#[async_trait]
impl EndHandler for RuntimeEndHandler {
    async fn handle(&self, envelope: &Envelope) -> Result<EndOutcome, Requeue> {
        let body = Bytes::from(envelope.to_vec());
        let outcome = async {
            let mut call = self.client.invoke(body, self.timeout).await?;
            while let Some(event) = call.next().await? {
                match event {
                    // An SSE error is a broken call: requeue (step 3).
                    RuntimeEvent::Error { status: 200, body } => {
                        return Ok(Err(Requeue(format!(
                            "end-actor handler stream failed: {}",
                            String::from_utf8_lossy(&body)
                        ))));
                    }
                    // A JSON error reply is the handler's own failure: logged, ignored.
                    RuntimeEvent::Error { status, body } => {
                        tracing::error!(id = %envelope.id, status, error = %String::from_utf8_lossy(&body), "end-actor handler failed; the envelope is acked");
                    }
                    _ => {}
                }
            }
            Ok::<_, RuntimeCallError>(Ok(EndOutcome::default()))
        }
        .await;
        match outcome {
            Ok(result) => result,
            Err(RuntimeCallError::Timeout(t)) => {
                let text = format!(
                    "Runtime timeout exceeded ({}s) in the end actor",
                    t.as_secs()
                );
                tracing::error!(id = %envelope.id, "{text}; acking and restarting");
                self.fatal.send_replace(Some(text));
                Ok(EndOutcome::default())
            }
            Err(e) => Err(Requeue(e.to_string())),
        }
    }
}
