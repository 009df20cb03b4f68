//! src/printable.rs is what scripts/gen_unicode_tables.py writes from this python3: the
//! tables `repr()`, `int()` and `float()` use stay CPython's, code point for code point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn unicode_tables_are_generated_from_python3() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{dir}/scripts/gen_unicode_tables.py"))
        .output()
        .expect("python3 must be installed: the Unicode tables are checked against it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(format!("{dir}/src/printable.rs")).unwrap();
    assert!(
        generated == committed,
        "src/printable.rs is stale: run python3 crates/troupe-pyexpr/scripts/gen_unicode_tables.py > crates/troupe-pyexpr/src/printable.rs"
    );
}
