//! The transport conformance suite against a real nats-server with JetStream
//! (scripts/services/nats.sh).
mod common;

troupe_transport_conformance::conformance_tests!(match common::NatsHarness::new() {
    Some(h) => h,
    None => return,
});
