//! KEDA's external scaler API (`proto/externalscaler.proto`, package `externalscaler`):
//! messages, the server trait and a client. The code is generated once and checked in
//! (`src/generated/`), so building needs no `protoc`; `tests/generated.rs` fails when it
//! no longer matches the proto.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!("generated/externalscaler.rs");
