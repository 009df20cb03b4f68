//! The ABI path grammar (protocol.md §6.4) and GET/SET/DEL: no path panics, a parsed
//! path renders to a string that parses to the same path, and a failed SET or DEL
//! leaves the document unchanged (path.rs promises it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use troupe_protocol::path::{check_write_access, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An optional JSON value to SET after a NUL: `path\0value`.
    let (path_text, value) = match text.split_once('\0') {
        Some((p, v)) => (p, serde_json::from_str::<Value>(v).unwrap_or(Value::Null)),
        None => (text, json!(["v"])),
    };
    let _ = check_write_access(path_text);
    let Ok(path) = Path::parse(path_text) else {
        return;
    };
    let rendered = path.to_string();
    let back = Path::parse(&rendered)
        .unwrap_or_else(|e| panic!("rendered path {rendered:?} does not parse: {e}"));
    assert_eq!(back, path, "render/parse round trip of {path_text:?}");

    let doc = json!({
        "id": "t1",
        "route": {"prev": ["a"], "curr": "b", "next": ["c", "d"]},
        "headers": {"trace": "x", "n": [1, 2, {"k": "v"}], "": 0, "a-b": "é"},
        "status": {"phase": "processing", "attempt": 1},
        "payload": {"text": "héllo", "list": [[], {}, null, true, 1.5]}
    });
    let _ = path.get(&doc);

    let mut set_doc = doc.clone();
    match path.set(&mut set_doc, value.clone()) {
        Ok(()) => {
            // A key or index SET reads back what was written.
            if !matches!(
                path.segments().last(),
                Some(troupe_protocol::path::Segment::Slice(..))
            ) {
                if let Ok(got) = path.get(&set_doc) {
                    assert_eq!(got, value, "GET after SET at {rendered}");
                }
            }
        }
        Err(_) => assert_eq!(
            set_doc, doc,
            "failed SET at {rendered} changed the document"
        ),
    }
    let mut del_doc = doc.clone();
    if path.del(&mut del_doc).is_err() {
        assert_eq!(
            del_doc, doc,
            "failed DEL at {rendered} changed the document"
        );
    }
});
