//! NATS JetStream transport (`nats`, platform.md §1.3). Work in progress.
