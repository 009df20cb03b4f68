//! Queue naming (protocol.md §4).

/// How a transport names queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueScheme {
    /// `asya-{namespace}-{actor}` (sqs, rabbitmq, pubsub, nats, redis).
    Prefixed,
    /// Bare actor name (socket, embedded).
    Bare,
}

/// Invalid actor name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid actor name '{0}': use a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)")]
pub struct ActorNameError(pub String);

/// Validates an actor name as a DNS label.
pub fn validate_actor_name(name: &str) -> Result<(), ActorNameError> {
    todo!("{name}")
}

/// Queue name for `actor` in `namespace` under `scheme`.
pub fn queue_name(scheme: QueueScheme, namespace: &str, actor: &str) -> String {
    todo!("{scheme:?}{namespace}{actor}")
}
