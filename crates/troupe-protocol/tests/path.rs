#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Unit tests of the ABI path API beyond the shared vectors: parsed structure, rendering,
//! error types and messages, access rules, atomicity.

use serde_json::{json, Value};
use troupe_protocol::path::{self, check_write_access, AbiError, Path, Segment};

fn ctx() -> Value {
    json!({
        "id": "abc",
        "parent_id": "",
        "route": {"prev": ["a"], "curr": "b", "next": ["c", "d"]},
        "headers": {"trace": "t"},
        "status": {}
    })
}

#[test]
fn parses_every_segment_form() {
    let p = Path::parse(r#".a.b-c._d["x.y"][0][-2][:][1:][:-1][-3:4]"#).unwrap();
    assert_eq!(
        p.segments(),
        &[
            Segment::Key("a".into()),
            Segment::Key("b-c".into()),
            Segment::Key("_d".into()),
            Segment::Key("x.y".into()),
            Segment::Index(0),
            Segment::Index(-2),
            Segment::Slice(None, None),
            Segment::Slice(Some(1), None),
            Segment::Slice(None, Some(-1)),
            Segment::Slice(Some(-3), Some(4)),
        ]
    );
}

#[test]
fn huge_integers_saturate() {
    let p = Path::parse(".a[99999999999999999999][-99999999999999999999]").unwrap();
    assert_eq!(
        &p.segments()[1..],
        &[Segment::Index(i64::MAX), Segment::Index(i64::MIN)]
    );
}

#[test]
fn renders_canonical_form() {
    let p = Path::parse(r#".x["a"].b["c.d"]["e"][1][:2]"#).unwrap();
    assert_eq!(p.to_string(), r#".x.a.b["c.d"].e[1][:2]"#);
    let p: Path = ".headers.x-asya-fan-in[0][-1:]".parse().unwrap();
    assert_eq!(p.to_string(), ".headers.x-asya-fan-in[0][-1:]");
    assert_eq!(Path::parse(p.to_string().as_str()).unwrap(), p);
}

#[test]
fn from_segments_rejects_empty() {
    assert!(Path::from_segments(vec![]).is_none());
    let p = Path::from_segments(vec![Segment::Key("with space".into())]).unwrap();
    assert_eq!(p.to_string(), r#"["with space"]"#);
}

#[test]
fn is_ident_matches_grammar() {
    for ok in ["a", "_", "A_b-9", "x-asya-fan-in"] {
        assert!(path::is_ident(ok), "{ok}");
    }
    for bad in ["", "1a", "-a", "a.b", "a b", "caf\u{e9}"] {
        assert!(!path::is_ident(bad), "{bad}");
    }
}

#[test]
fn errors_map_to_python_types() {
    let doc = ctx();
    let cases: [(&str, &str); 6] = [
        ("id", "ValueError"),
        (".route.next[0:1]", "ValueError"),
        (".payload", "KeyError"),
        (".route.next[2]", "IndexError"),
        (".route.next.x", "TypeError"),
        (".headers[0]", "KeyError"),
    ];
    for (p, want) in cases {
        let err = path::get(&doc, p).unwrap_err();
        assert_eq!(err.python_type(), want, "{p}: {err}");
        assert_eq!(err.to_string(), err.message());
    }
    let err = check_write_access(".id").unwrap_err();
    assert_eq!(err.python_type(), "PermissionError");
}

#[test]
fn messages_tell_where_and_what() {
    let doc = ctx();
    let err = path::get(&doc, ".headers.missing").unwrap_err();
    assert!(err.message().contains("\"missing\""), "{err}");
    assert!(err.message().contains(".headers"), "{err}");
    let err = path::get(&doc, ".route.next[5]").unwrap_err();
    assert!(err.message().contains("length 2"), "{err}");
    let err = path::get(&doc, ".route .next").unwrap_err();
    assert!(err.message().contains("offset 6"), "{err}");
    let err = path::get(&doc, "route").unwrap_err();
    assert!(err.message().contains("must start with '.'"), "{err}");
    let mut doc = ctx();
    let err = path::set(&mut doc, ".route.next[0:1]", json!("x")).unwrap_err();
    assert!(err.message().contains("list"), "{err}");
    let err = path::set(&mut doc, ".headers[3]", json!(1)).unwrap_err();
    assert!(err.message().contains(r#"["3"]"#), "{err}");
}

#[test]
fn write_access_follows_prefixes() {
    for ok in [
        ".route.next",
        ".route.next[0]",
        ".route.next[:0]",
        ".headers",
        ".headers.x",
        ".status",
        ".status.deadline_at",
        // The check is a plain prefix test on the string, as in Asya.
        ".headersX",
        ".route.nextX",
    ] {
        assert_eq!(check_write_access(ok), Ok(()), "{ok}");
    }
    for denied in [
        ".id",
        ".parent_id",
        ".route",
        ".route.prev",
        ".route.curr",
        ".payload",
        "headers",
        "",
    ] {
        let err = check_write_access(denied).unwrap_err();
        assert!(matches!(err, AbiError::Permission(_)), "{denied}");
        assert!(err.message().contains(".route.next, .headers or .status"));
    }
}

#[test]
fn get_returns_a_copy() {
    let doc = ctx();
    let mut got = path::get(&doc, ".route").unwrap();
    got["curr"] = json!("changed");
    assert_eq!(doc["route"]["curr"], "b");
}

#[test]
fn failed_set_rolls_back_auto_created_keys() {
    let mut doc = ctx();
    let before = doc.clone();
    // .a and .a.b are created, then [0] on an object fails.
    let err = path::set(&mut doc, ".headers.a.b[0]", json!(1)).unwrap_err();
    assert_eq!(err.python_type(), "TypeError");
    assert_eq!(doc, before);
    let err = path::set(&mut doc, ".new.x[1:2]", json!([1])).unwrap_err();
    assert_eq!(err.python_type(), "TypeError");
    assert_eq!(doc, before);
}

#[test]
fn set_on_non_object_root() {
    let mut doc = json!([1, 2]);
    let err = path::set(&mut doc, ".a", json!(1)).unwrap_err();
    assert_eq!(err.python_type(), "TypeError");
    let mut doc = json!({});
    path::set(&mut doc, ".a", json!(1)).unwrap();
    assert_eq!(doc, json!({"a": 1}));
}

#[test]
fn slice_set_and_python_bounds() {
    let mut doc = json!({"l": [0, 1, 2, 3, 4]});
    path::set(&mut doc, ".l[1:-1]", json!(["x"])).unwrap();
    assert_eq!(doc["l"], json!([0, "x", 4]));
    path::set(&mut doc, ".l[-100:100]", json!([])).unwrap();
    assert_eq!(doc["l"], json!([]));
    path::set(&mut doc, ".l[5:]", json!([7, 8])).unwrap();
    assert_eq!(doc["l"], json!([7, 8]));
    assert_eq!(path::slice_bounds(Some(3), Some(1), 5), (3, 3));
    assert_eq!(path::slice_bounds(Some(-2), None, 5), (3, 5));
    assert_eq!(path::slice_bounds(None, Some(-7), 5), (0, 0));
    assert_eq!(
        path::slice_bounds(Some(i64::MIN), Some(i64::MAX), 5),
        (0, 5)
    );
}

#[test]
fn string_characters_are_code_points() {
    let doc = json!({"s": "h\u{e9}\u{1f600}"});
    assert_eq!(path::get(&doc, ".s[1]").unwrap(), json!("\u{e9}"));
    assert_eq!(path::get(&doc, ".s[-1]").unwrap(), json!("\u{1f600}"));
    assert_eq!(
        path::get(&doc, ".s[3]").unwrap_err().python_type(),
        "IndexError"
    );
}

#[test]
fn del_index_shifts_following_elements() {
    let mut doc = json!({"l": ["a", "b", "c"]});
    path::del(&mut doc, ".l[-2]").unwrap();
    assert_eq!(doc["l"], json!(["a", "c"]));
    path::del(&mut doc, ".l").unwrap();
    assert_eq!(doc, json!({}));
}
