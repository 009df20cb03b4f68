//! The field names a type accepts, read from its `Deserialize` impl.
//!
//! `troupe up` reports unknown fields with the list of allowed ones; asking serde for that
//! list (the names `deserialize_struct` is handed, in declaration order) keeps the list and
//! the struct from drifting apart. The trick is serde-aux's `serde_introspect`, in 30 lines.

use serde::de::{self, Deserialize, Visitor};

/// Serde names of the fields of struct `T`, in declaration order; empty when `T` is not a
/// struct.
pub fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Introspect { names: &mut names });
    names
}

struct Introspect<'a> {
    names: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field introspection stops here")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for Introspect<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.names = fields;
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::{AsyncActor, AsyncActorSpec, Policy, Scaling};

    #[test]
    fn names_come_in_declaration_order() {
        assert_eq!(
            of::<Scaling>(),
            [
                "enabled",
                "minReplicaCount",
                "maxReplicaCount",
                "pollingInterval",
                "cooldownPeriod",
                "queueLength",
                "advanced",
                "additionalTriggers"
            ]
        );
        assert_eq!(of::<Policy>()[0], "maxAttempts");
        assert_eq!(of::<AsyncActorSpec>().len(), 33);
        assert!(of::<AsyncActor>().contains(&"spec"));
        assert!(of::<String>().is_empty());
    }
}
