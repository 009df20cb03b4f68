//! The gRPC code in `src/generated/` is checked in (docs/decisions.md "Push scaler: the
//! generated code is checked in"); this test regenerates it from `proto/` with protox (a
//! protobuf compiler in Rust, so no system `protoc`) and fails when the two differ.
//! `TROUPE_REGENERATE=1 cargo test -p troupe-scaler --test generated` rewrites it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn the_checked_in_grpc_code_is_what_the_proto_generates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["externalscaler.proto"], [root.join("proto")]).unwrap();
    let out = tempfile::tempdir().unwrap();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out.path())
        .compile_fds(fds)
        .unwrap();
    let fresh = std::fs::read_to_string(out.path().join("externalscaler.rs")).unwrap();
    let checked_in = root.join("src/generated/externalscaler.rs");
    if std::env::var("TROUPE_REGENERATE").is_ok_and(|v| v == "1") {
        std::fs::write(&checked_in, &fresh).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    assert!(
        current == fresh,
        "{} is not what proto/externalscaler.proto generates; run \
         TROUPE_REGENERATE=1 cargo test -p troupe-scaler --test generated and commit the result",
        checked_in.display()
    );
}
