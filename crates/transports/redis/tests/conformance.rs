//! The transport conformance suite against a real redis-server (scripts/services/redis.sh).
mod common;

troupe_transport_conformance::conformance_tests!(match common::RedisHarness::new() {
    Some(h) => h,
    None => return,
});
