//! Route advancement and destinations (protocol.md §5).

use serde_json::{Map, Value};

use crate::envelope::{Headers, Route};

/// Header carrying the logical→physical route override.
pub const HEADER_ROUTE_OVERRIDE: &str = "x-asya-route-override";
/// Header carrying the route resolution audit.
pub const HEADER_ROUTE_RESOLVED: &str = "x-asya-route-resolved";

/// §5.1: `prev' = prev + [curr]`; `curr' = next[0]` (or `""`); `next' = next[1:]`.
pub fn advance(route: &Route) -> Route {
    let mut prev = Vec::with_capacity(route.prev.len() + 1);
    prev.extend(route.prev.iter().cloned());
    prev.push(route.curr.clone());
    let (curr, next) = match route.next.split_first() {
        Some((first, rest)) => (first.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    Route { prev, curr, next }
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
    let curr = route.curr.as_str();
    if curr.is_empty() || curr == sink || curr == sump {
        return Destination::Sink;
    }
    let Some(target) = override_target(headers, curr).map(str::to_owned) else {
        return Destination::Actor(curr.to_owned());
    };
    let mut entry = Map::new();
    entry.insert("target".to_owned(), Value::String(target.clone()));
    entry.insert("by".to_owned(), Value::String(self_actor.to_owned()));
    let resolved = headers
        .entry(HEADER_ROUTE_RESOLVED)
        .or_insert_with(|| Value::Object(Map::new()));
    // A malformed audit value (not an object) is replaced rather than failing the send.
    if !resolved.is_object() {
        *resolved = Value::Object(Map::new());
    }
    if let Value::Object(map) = resolved {
        map.insert(curr.to_owned(), Value::Object(entry));
    }
    Destination::Actor(target)
}

/// §5.3 / §8 step 7: does this actor accept an envelope whose `route.curr` is `curr`?
pub fn accepts(curr: &str, self_actor: &str, headers: &Headers) -> bool {
    curr == self_actor || override_target(headers, curr) == Some(self_actor)
}

/// Override target for a logical actor, if any.
pub fn override_target<'a>(headers: &'a Headers, logical: &str) -> Option<&'a str> {
    headers
        .get(HEADER_ROUTE_OVERRIDE)
        .and_then(|v: &Value| v.get(logical))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(prev: &[&str], curr: &str, next: &[&str]) -> Route {
        Route {
            prev: prev.iter().map(|s| (*s).to_owned()).collect(),
            curr: curr.to_owned(),
            next: next.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn headers(v: Value) -> Headers {
        match v {
            Value::Object(m) => m,
            _ => panic!("headers must be an object"),
        }
    }

    #[test]
    fn advance_moves_one_step() {
        assert_eq!(
            advance(&route(&["a"], "b", &["c", "d"])),
            route(&["a", "b"], "c", &["d"])
        );
        assert_eq!(advance(&route(&[], "a", &["b"])), route(&["a"], "b", &[]));
    }

    #[test]
    fn advance_past_last_actor_leaves_empty_curr() {
        assert_eq!(
            advance(&route(&["a"], "b", &[])),
            route(&["a", "b"], "", &[])
        );
    }

    #[test]
    fn destination_of_empty_curr_is_sink() {
        let mut h = Headers::new();
        let d = destination(&route(&["a"], "", &[]), &mut h, "a", "x-sink", "x-sump");
        assert_eq!(d, Destination::Sink);
        assert!(h.is_empty());
    }

    #[test]
    fn sink_or_sump_in_route_ends_it() {
        let mut h = Headers::new();
        for end in ["x-sink", "x-sump", "my-sink", "my-sump"] {
            let (sink, sump) = if end.starts_with("my") {
                ("my-sink", "my-sump")
            } else {
                ("x-sink", "x-sump")
            };
            let d = destination(&route(&["a"], end, &["b"]), &mut h, "a", sink, sump);
            assert_eq!(d, Destination::Sink, "{end}");
        }
        // With custom names, the defaults are ordinary actors.
        let d = destination(
            &route(&[], "x-sink", &[]),
            &mut h,
            "a",
            "my-sink",
            "my-sump",
        );
        assert_eq!(d, Destination::Actor("x-sink".into()));
    }

    #[test]
    fn plain_destination_is_curr() {
        let mut h = headers(json!({"x-asya-route-override": {"other": "elsewhere"}}));
        let before = h.clone();
        let d = destination(&route(&["a"], "b", &[]), &mut h, "a", "x-sink", "x-sump");
        assert_eq!(d, Destination::Actor("b".into()));
        assert_eq!(h, before, "no audit stamp without an override for curr");
    }

    #[test]
    fn override_redirects_and_stamps_audit() {
        let mut h = headers(json!({"x-asya-route-override": {"b": "b-canary"}}));
        let d = destination(&route(&["a"], "b", &["c"]), &mut h, "a", "x-sink", "x-sump");
        assert_eq!(d, Destination::Actor("b-canary".into()));
        assert_eq!(
            h[HEADER_ROUTE_RESOLVED],
            json!({"b": {"target": "b-canary", "by": "a"}})
        );
    }

    #[test]
    fn override_merges_into_existing_audit() {
        let mut h = headers(json!({
            "x-asya-route-override": {"c": "c2"},
            "x-asya-route-resolved": {"b": {"target": "b2", "by": "a"}}
        }));
        let d = destination(
            &route(&["a", "b"], "c", &[]),
            &mut h,
            "b2",
            "x-sink",
            "x-sump",
        );
        assert_eq!(d, Destination::Actor("c2".into()));
        assert_eq!(
            h[HEADER_ROUTE_RESOLVED],
            json!({"b": {"target": "b2", "by": "a"}, "c": {"target": "c2", "by": "b2"}})
        );
    }

    #[test]
    fn malformed_audit_is_replaced() {
        let mut h = headers(json!({
            "x-asya-route-override": {"b": "b2"},
            "x-asya-route-resolved": "garbage"
        }));
        destination(&route(&[], "b", &[]), &mut h, "a", "x-sink", "x-sump");
        assert_eq!(
            h[HEADER_ROUTE_RESOLVED],
            json!({"b": {"target": "b2", "by": "a"}})
        );
    }

    #[test]
    fn empty_or_non_string_override_is_ignored() {
        for ov in [
            json!({"b": ""}),
            json!({"b": 5}),
            json!({"b": null}),
            json!("b"),
            json!(["b"]),
        ] {
            let mut h = headers(json!({ "x-asya-route-override": ov }));
            let d = destination(&route(&[], "b", &[]), &mut h, "a", "x-sink", "x-sump");
            assert_eq!(d, Destination::Actor("b".into()), "{ov}");
            assert!(!h.contains_key(HEADER_ROUTE_RESOLVED));
        }
    }

    #[test]
    fn accepts_own_name_or_override() {
        let none = Headers::new();
        assert!(accepts("a", "a", &none));
        assert!(!accepts("b", "a", &none));
        let h = headers(json!({"x-asya-route-override": {"b": "a"}}));
        assert!(accepts("b", "a", &h));
        assert!(accepts("a", "a", &h));
        assert!(!accepts("c", "a", &h));
        let h = headers(json!({"x-asya-route-override": {"b": "z"}}));
        assert!(!accepts("b", "a", &h));
    }

    #[test]
    fn override_target_reads_only_non_empty_strings() {
        let h = headers(json!({"x-asya-route-override": {"b": "b2", "c": ""}}));
        assert_eq!(override_target(&h, "b"), Some("b2"));
        assert_eq!(override_target(&h, "c"), None);
        assert_eq!(override_target(&h, "d"), None);
    }
}
