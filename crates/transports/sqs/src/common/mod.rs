//! Helpers shared by the HTTP-based cloud transports (SQS and Pub/Sub). The Pub/Sub
//! crate includes these files with `#[path]` rather than depending on this crate, so
//! neither transport pulls in the other.

pub(crate) mod deferral;
pub(crate) mod inbox;
pub(crate) mod retry;
