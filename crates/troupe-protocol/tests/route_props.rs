#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests for route advancement and destinations (protocol.md §5).

use proptest::prelude::*;
use serde_json::json;
use troupe_protocol::envelope::Headers;
use troupe_protocol::route::{accepts, advance, destination, Destination, HEADER_ROUTE_RESOLVED};
use troupe_protocol::Route;

fn actor() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}"
}

fn route() -> impl Strategy<Value = Route> {
    (
        prop::collection::vec(actor(), 0..5),
        actor(),
        prop::collection::vec(actor(), 0..5),
    )
        .prop_map(|(prev, curr, next)| Route { prev, curr, next })
}

proptest! {
    #[test]
    fn advance_shifts_by_one(r in route()) {
        let a = advance(&r);
        prop_assert_eq!(a.prev.len(), r.prev.len() + 1);
        prop_assert_eq!(&a.prev[..r.prev.len()], &r.prev[..]);
        prop_assert_eq!(a.prev.last().unwrap(), &r.curr);
        match r.next.first() {
            Some(first) => {
                prop_assert_eq!(&a.curr, first);
                prop_assert_eq!(&a.next[..], &r.next[1..]);
            }
            None => {
                prop_assert_eq!(a.curr.as_str(), "");
                prop_assert!(a.next.is_empty());
            }
        }
        // The total number of actors is preserved (an empty curr counts as none).
        let total = |x: &Route| x.prev.len() + usize::from(!x.curr.is_empty()) + x.next.len();
        prop_assert_eq!(total(&a), total(&r));
    }

    #[test]
    fn advancing_to_the_end_visits_every_actor_in_order(r in route()) {
        let mut cur = r.clone();
        for _ in 0..=r.next.len() {
            prop_assert!(!cur.curr.is_empty());
            cur = advance(&cur);
        }
        prop_assert_eq!(cur.curr.as_str(), "");
        prop_assert!(cur.next.is_empty());
        let mut want = r.prev.clone();
        want.push(r.curr.clone());
        want.extend(r.next.iter().cloned());
        prop_assert_eq!(cur.prev, want);
    }

    #[test]
    fn destination_without_override_is_curr_or_sink(r in route(), me in actor()) {
        let adv = advance(&r);
        let mut h = Headers::new();
        let d = destination(&adv, &mut h, &me, "x-sink", "x-sump");
        if adv.curr.is_empty() || adv.curr == "x-sink" || adv.curr == "x-sump" {
            prop_assert_eq!(d, Destination::Sink);
        } else {
            prop_assert_eq!(d, Destination::Actor(adv.curr.clone()));
        }
        prop_assert!(h.is_empty());
    }

    #[test]
    fn override_target_is_accepted_by_the_receiver(logical in actor(), physical in actor(), me in actor()) {
        prop_assume!(logical != "x-sink" && logical != "x-sump");
        let mut h = Headers::new();
        h.insert("x-asya-route-override".into(), json!({ logical.clone(): physical.clone() }));
        let r = Route { prev: vec![me.clone()], curr: logical.clone(), next: vec![] };
        let d = destination(&r, &mut h, &me, "x-sink", "x-sump");
        prop_assert_eq!(d, Destination::Actor(physical.clone()));
        prop_assert_eq!(&h[HEADER_ROUTE_RESOLVED][&logical], &json!({"target": physical, "by": me}));
        // The physical actor accepts the envelope whose curr is the logical name.
        prop_assert!(accepts(&logical, &physical, &h));
    }
}
