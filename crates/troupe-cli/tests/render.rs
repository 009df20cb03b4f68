//! `troupe render`: `--crd` prints the golden AsyncActor CRD; anything else is refused
//! with exit 2 until the renderer exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn render_crd_prints_the_golden_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["render", "--crd"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../troupe-resource/tests/golden/crd.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), golden);
}

#[test]
fn render_without_crd_exits_2_and_says_so() {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .arg("render")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not implemented yet: only --crd"), "{err}");
}
