//! The AsyncActor operator (`troupe operator`, platform.md §2–§3): watches AsyncActors,
//! creates each actor's queue through the transport crates, server-side-applies the
//! renderer's children (owned by the AsyncActor), writes the status
//! (`Creating`/`Ready`/`Napping`, `infrastructure.*`, conditions) and deletes the queue
//! through finalizer `asya.sh/finalizer`. Problems the user must fix (unknown transport,
//! missing Secret, a queue the broker refuses) become a status condition and a Kubernetes
//! Event, with nothing applied. Only the holder of a Lease reconciles; every operator
//! serves `/metrics` and `/healthz`.
//!
//! Files: [`config`] (settings), [`controller`] (watches, leader gate), [`reconcile`]
//! (one actor), [`status`] (pure status computation), [`queues`] (brokers), [`events`],
//! [`leader`], [`metrics`], [`error`].

pub mod config;
pub mod controller;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod queues;
pub mod reconcile;
pub mod status;

pub use config::{OperatorConfig, FIELD_MANAGER, FINALIZER};
pub use controller::run;
pub use error::OperatorError;
pub use metrics::Metrics;
