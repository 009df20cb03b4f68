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
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum)
        && bytes.iter().all(|b| alnum(b) || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ActorNameError(name.to_owned()))
    }
}

/// Queue name for `actor` in `namespace` under `scheme`.
pub fn queue_name(scheme: QueueScheme, namespace: &str, actor: &str) -> String {
    match scheme {
        QueueScheme::Prefixed => format!("asya-{namespace}-{actor}"),
        QueueScheme::Bare => actor.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        let max = "a".repeat(63);
        for name in [
            "a",
            "0",
            "x-sink",
            "x-sump",
            "my-actor-2",
            "a1",
            "9a",
            max.as_str(),
        ] {
            assert_eq!(validate_actor_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_non_dns_labels() {
        let long = "a".repeat(64);
        for name in [
            "",
            "-a",
            "a-",
            "-",
            "A",
            "myActor",
            "a_b",
            "a.b",
            "a b",
            "\u{e9}t\u{e9}",
            long.as_str(),
        ] {
            let err = validate_actor_name(name).unwrap_err();
            assert_eq!(err.0, name);
            assert!(err.to_string().contains("DNS label"));
        }
    }

    #[test]
    fn names_queues() {
        assert_eq!(
            queue_name(QueueScheme::Prefixed, "prod", "summarize"),
            "asya-prod-summarize"
        );
        assert_eq!(
            queue_name(QueueScheme::Prefixed, "default", "x-sink"),
            "asya-default-x-sink"
        );
        assert_eq!(
            queue_name(QueueScheme::Bare, "prod", "summarize"),
            "summarize"
        );
    }
}
