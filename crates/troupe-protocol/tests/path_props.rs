#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests for the ABI path grammar and its GET/SET/DEL semantics.

use proptest::prelude::*;
use serde_json::{json, Value};
use troupe_protocol::path::{Path, Segment};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_-]{0,8}",
        // Anything but '"' is a valid bracket key, including '.', ']' and spaces.
        "[^\"]{1,8}",
    ]
}

fn segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        key().prop_map(Segment::Key),
        any::<i64>().prop_map(Segment::Index),
        (any::<Option<i64>>(), any::<Option<i64>>()).prop_map(|(a, b)| Segment::Slice(a, b)),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    // The string form must start with '.', so the first segment is an identifier key.
    (
        "[a-zA-Z_][a-zA-Z0-9_-]{0,8}",
        prop::collection::vec(segment(), 0..6),
    )
        .prop_map(|(first, rest)| {
            let mut segs = vec![Segment::Key(first)];
            segs.extend(rest);
            Path::from_segments(segs).unwrap()
        })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-c]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Python list slice assignment with step 1, modelled element by element.
fn model_slice_assign(
    items: &[i32],
    start: Option<i64>,
    stop: Option<i64>,
    new: &[i32],
) -> Vec<i32> {
    let len = items.len() as i128;
    let norm = |v: i64| {
        let v = i128::from(v);
        let v = if v < 0 { v + len } else { v };
        v.clamp(0, len)
    };
    let lo = start.map_or(0, norm);
    let hi = stop.map_or(len, norm);
    let mut out = Vec::new();
    let mut inserted = false;
    for (i, item) in items.iter().enumerate() {
        let i = i as i128;
        if i == lo && !inserted {
            out.extend_from_slice(new);
            inserted = true;
        }
        if !(lo <= i && i < hi) {
            out.push(*item);
        }
    }
    if !inserted {
        out.extend_from_slice(new);
    }
    out
}

proptest! {
    #[test]
    fn parse_render_round_trips(p in path()) {
        let text = p.to_string();
        prop_assert_eq!(Path::parse(&text).unwrap(), p);
    }

    #[test]
    fn parse_is_total_and_canonical(s in "[.\\[\\]\"a-c0-9:_ -]{0,16}") {
        // Any string either parses or is a ValueError; never a panic.
        match Path::parse(&s) {
            Ok(p) => {
                let canon = p.to_string();
                prop_assert_eq!(Path::parse(&canon).unwrap(), p);
            }
            Err(e) => prop_assert_eq!(e.python_type(), "ValueError"),
        }
    }

    #[test]
    fn set_then_get_returns_value(keys in prop::collection::vec(key(), 1..5), v in json_value()) {
        let segs: Vec<Segment> = std::iter::once(Segment::Key("root".into()))
            .chain(keys.into_iter().map(Segment::Key))
            .collect();
        let p = Path::from_segments(segs).unwrap();
        let mut doc = json!({});
        p.set(&mut doc, v.clone()).unwrap();
        prop_assert_eq!(p.get(&doc).unwrap(), v);
    }

    #[test]
    fn set_then_get_on_any_doc(doc in json_value(), p in path(), v in json_value()) {
        let mut doc = json!({"r": doc});
        let p = Path::from_segments(
            std::iter::once(Segment::Key("r".into())).chain(p.segments().iter().cloned()).collect(),
        ).unwrap();
        let before = doc.clone();
        match p.set(&mut doc, v.clone()) {
            Ok(()) => {
                if !matches!(p.segments().last(), Some(Segment::Slice(..))) {
                    prop_assert_eq!(p.get(&doc).unwrap(), v);
                }
            }
            Err(_) => prop_assert_eq!(doc, before, "failed SET changed the document"),
        }
    }

    #[test]
    fn failed_ops_leave_doc_unchanged(doc in json_value(), p in path()) {
        let mut doc = json!({"r": doc});
        let p = Path::from_segments(
            std::iter::once(Segment::Key("r".into())).chain(p.segments().iter().cloned()).collect(),
        ).unwrap();
        let before = doc.clone();
        let got = p.get(&doc);
        prop_assert_eq!(&doc, &before);
        match p.del(&mut doc) {
            Ok(()) => {
                // Deleting something that GET could read.
                prop_assert!(got.is_ok());
                prop_assert_ne!(&doc, &before);
            }
            Err(e) => {
                prop_assert_eq!(&doc, &before);
                // GET and DEL navigate the same way: a GET failure is a DEL failure.
                if let Err(g) = got {
                    prop_assert_eq!(g.python_type(), e.python_type());
                }
            }
        }
    }

    #[test]
    fn slice_set_matches_python_model(
        items in prop::collection::vec(0i32..100, 0..8),
        start in prop::option::of(-10i64..10),
        stop in prop::option::of(-10i64..10),
        new in prop::collection::vec(100i32..200, 0..4),
    ) {
        let mut doc = json!({"l": items});
        let p = Path::from_segments(vec![Segment::Key("l".into()), Segment::Slice(start, stop)]).unwrap();
        p.set(&mut doc, json!(new)).unwrap();
        let want = model_slice_assign(&items, start, stop, &new);
        prop_assert_eq!(doc["l"].clone(), json!(want));
    }

    #[test]
    fn index_set_and_del_follow_python(items in prop::collection::vec(0i32..100, 0..6), i in -8i64..8) {
        let len = items.len() as i64;
        let p = Path::from_segments(vec![Segment::Key("l".into()), Segment::Index(i)]).unwrap();
        let in_range = -len <= i && i < len;
        let idx = if i < 0 { i + len } else { i };

        let mut doc = json!({"l": items.clone()});
        match p.set(&mut doc, json!(-1)) {
            Ok(()) => {
                prop_assert!(in_range);
                let mut want = items.clone();
                want[idx as usize] = -1;
                prop_assert_eq!(doc["l"].clone(), json!(want));
            }
            Err(e) => {
                prop_assert!(!in_range);
                prop_assert_eq!(e.python_type(), "IndexError");
            }
        }

        let mut doc = json!({"l": items.clone()});
        match p.del(&mut doc) {
            Ok(()) => {
                let mut want = items.clone();
                want.remove(idx as usize);
                prop_assert_eq!(doc["l"].clone(), json!(want));
            }
            Err(e) => {
                prop_assert!(!in_range);
                prop_assert_eq!(e.python_type(), "IndexError");
            }
        }
    }
}
