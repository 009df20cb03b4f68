//! Route advancement and destinations (protocol.md §5).

use serde_json::Value;

use crate::envelope::{Headers, Route};

/// Header carrying the logical→physical route override.
pub const HEADER_ROUTE_OVERRIDE: &str = "x-asya-route-override";
/// Header carrying the route resolution audit.
pub const HEADER_ROUTE_RESOLVED: &str = "x-asya-route-resolved";

/// §5.1: `prev' = prev + [curr]`; `curr' = next[0]` (or `""`); `next' = next[1:]`.
pub fn advance(route: &Route) -> Route {
    todo!("{route:?}")
}

/// Where a frame goes (§5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The queue of this actor (physical name, after override).
    Actor(String),
    /// End of route: x-sink with phase succeeded.
    Sink,
}

/// §5.2 + §5.3: destination of an advanced route. `curr == ""` or equal to the sink or
/// sump name → [`Destination::Sink`]; otherwise the override target if
/// `headers[x-asya-route-override][curr]` is a non-empty string, else `curr`. When an
/// override applies, stamps `x-asya-route-resolved[curr] = {"target", "by": self_actor}`.
pub fn destination(
    route: &Route,
    headers: &mut Headers,
    self_actor: &str,
    sink: &str,
    sump: &str,
) -> Destination {
    todo!("{route:?}{headers:?}{self_actor}{sink}{sump}")
}

/// §5.3 / §8 step 7: does this actor accept an envelope whose `route.curr` is `curr`?
pub fn accepts(curr: &str, self_actor: &str, headers: &Headers) -> bool {
    todo!("{curr}{self_actor}{headers:?}")
}

/// Override target for a logical actor, if any.
pub fn override_target<'a>(headers: &'a Headers, logical: &str) -> Option<&'a str> {
    headers
        .get(HEADER_ROUTE_OVERRIDE)
        .and_then(|v: &Value| v.get(logical))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}
