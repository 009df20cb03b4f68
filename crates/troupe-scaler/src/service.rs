//! KEDA's `externalscaler.ExternalScaler` gRPC service over a [`Transport`]: the queue is
//! the trigger metadata's `queue`, activity comes from [`Watchers`], metrics are the
//! queue's backlog (ready + in flight), the same number KEDA's queue trigger reads.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use troupe_transport::{QueueDepth, TransportError};

use crate::activity::{is_active, Watchers};
use crate::proto::external_scaler_server::ExternalScaler;
use crate::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};
use crate::ScalerError;

/// Trigger metadata key naming the transport queue (`asya-{namespace}-{actor}`).
pub const QUEUE_KEY: &str = "queue";
/// Trigger metadata key with the target backlog per replica (the actor's
/// `scaling.queueLength`); default [`DEFAULT_QUEUE_LENGTH`].
pub const QUEUE_LENGTH_KEY: &str = "queueLength";
/// Target backlog per replica when the metadata names none (platform.md §2's default).
pub const DEFAULT_QUEUE_LENGTH: u32 = 5;

/// The gRPC service; one per process, shared by every KEDA connection.
pub struct PushScaler {
    watchers: Arc<Watchers>,
}

impl PushScaler {
    /// A service answering from `watchers` (and their transport).
    pub fn new(watchers: Arc<Watchers>) -> Self {
        PushScaler { watchers }
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, ScalerError> {
        match self.watchers.transport().depth(queue).await {
            Ok(d) => Ok(d),
            // Not provisioned yet: nothing waits on it.
            Err(TransportError::NoSuchQueue(_)) => Ok(QueueDepth::default()),
            Err(source) => Err(ScalerError::Depth {
                queue: queue.to_owned(),
                source,
            }),
        }
    }
}

fn scaled_object(r: &ScaledObjectRef) -> String {
    format!("{}/{}", r.namespace, r.name)
}

/// The queue a trigger names.
pub fn queue_of(r: &ScaledObjectRef) -> Result<&str, ScalerError> {
    meta(&r.scaler_metadata, QUEUE_KEY).ok_or_else(|| ScalerError::MissingQueue {
        scaled_object: scaled_object(r),
    })
}

/// The target backlog per replica a trigger names.
pub fn queue_length_of(r: &ScaledObjectRef) -> Result<u32, ScalerError> {
    match meta(&r.scaler_metadata, QUEUE_LENGTH_KEY) {
        None => Ok(DEFAULT_QUEUE_LENGTH),
        Some(v) => {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ScalerError::BadQueueLength {
                    scaled_object: scaled_object(r),
                    value: v.to_owned(),
                })
        }
    }
}

fn meta<'a>(m: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    m.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The metric's name: KEDA prefixes it with the trigger index for the HPA.
pub fn metric_name(queue: &str) -> String {
    format!("troupe-{queue}")
}

/// The `StreamIsActive` answer stream.
pub type ActivityStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for PushScaler {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let r = request.into_inner();
        let queue = queue_of(&r)?;
        let depth = self.depth(queue).await?;
        let counts = self.watchers.transport().counts_backlog();
        Ok(Response::new(IsActiveResponse {
            result: is_active(depth, counts),
        }))
    }

    type StreamIsActiveStream = ActivityStream;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<ActivityStream>, Status> {
        let r = request.into_inner();
        let queue = queue_of(&r)?;
        tracing::debug!(queue, scaled_object = %scaled_object(&r), "push scaler: stream opened");
        let rx = self.watchers.watch(queue).await;
        // The first value is the current state (once known), then each change; the
        // stream ends only when KEDA closes it, which drops the receiver.
        let stream =
            WatchStream::new(rx).filter_map(|v| v.map(|result| Ok(IsActiveResponse { result })));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let r = request.into_inner();
        let queue = queue_of(&r)?;
        let target = queue_length_of(&r)?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: metric_name(queue),
                target_size: i64::from(target),
                target_size_float: f64::from(target),
            }],
        }))
    }

    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let GetMetricsRequest {
            scaled_object_ref,
            metric_name: asked,
        } = request.into_inner();
        let r = scaled_object_ref.unwrap_or_default();
        let queue = queue_of(&r)?;
        let backlog = self.depth(queue).await?.backlog();
        // Answer under the name KEDA asked for: depending on its version it asks with
        // or without the trigger-index prefix.
        let name = if asked.is_empty() {
            metric_name(queue)
        } else {
            asked
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: name,
                metric_value: i64::try_from(backlog).unwrap_or(i64::MAX),
                // Exact up to 2^53 messages.
                #[allow(clippy::cast_precision_loss)]
                metric_value_float: backlog as f64,
            }],
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn r(pairs: &[(&str, &str)]) -> ScaledObjectRef {
        ScaledObjectRef {
            name: "a".into(),
            namespace: "ns".into(),
            scaler_metadata: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_metadata_names_the_queue_and_the_target() {
        let ok = r(&[("queue", " asya-ns-a "), ("queueLength", "7")]);
        assert_eq!(queue_of(&ok).unwrap(), "asya-ns-a");
        assert_eq!(queue_length_of(&ok).unwrap(), 7);
        assert_eq!(queue_length_of(&r(&[])).unwrap(), DEFAULT_QUEUE_LENGTH);
        let err = queue_of(&r(&[("queue", "")])).unwrap_err().to_string();
        assert!(err.contains("ns/a") && err.contains("'queue'"), "{err}");
        for bad in ["0", "-1", "lots"] {
            assert!(
                matches!(
                    queue_length_of(&r(&[("queueLength", bad)])),
                    Err(ScalerError::BadQueueLength { .. })
                ),
                "{bad}"
            );
        }
    }
}
