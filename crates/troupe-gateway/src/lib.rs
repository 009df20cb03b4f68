//! Troupe gateway, first slice: the mesh API (gateway.md §2).
//!
//! - [`Gateway`]: the operations (create, list, get, events, cancel, resume, children,
//!   SLA backstop), HTTP-free; [`Gateway::router`] serves them over axum and
//!   [`Gateway::reporter`] applies sidecar reports in-process.
//! - [`TaskStore`]: storage seam (compare-and-set on status, overdue query);
//!   [`MemoryStore`] keeps tasks in memory; [`SqliteStore`] in a file (what `troupe up` uses).
//! - [`Ingress`]: how the gateway publishes envelopes to actor queues.
//! - [`status`] and [`progress`]: the pure status model and progress math.

pub mod auth;
mod config;
mod event;
mod fanout;
mod flows;
mod follow;
mod gateway;
mod http;
mod hub;
mod ingress;
pub mod limits;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub mod progress;
mod raw;
mod reporter;
pub mod security;
mod sqlite;
mod sse;
pub mod status;
mod store;
mod task;

pub use auth::{Auth, AuthConfig, Caller};
pub use config::{GatewayConfig, DEFAULT_API_PREFIX};
pub use event::{EventData, LenientStr, RouteList, MAX_ROUTE_LEN};
pub use fanout::{EventFanout, FanoutEvent};
pub use flows::FlowStarts;
pub use follow::{TaskEvent, TaskEvents};
pub use gateway::{ChildOutcome, EventOutcome, Gateway, GatewayError, NewTask, MAX_FLY_BYTES};
pub use http::{no_delay, Listener, NoDelayListener};
pub use ingress::Ingress;
pub use limits::{Limits, LimitsError};
#[cfg(feature = "postgres")]
pub use postgres::{attach_postgres_fanout, PostgresStore};
pub use raw::RawJson;
pub use reporter::InProcessReporter;
pub use security::{SecurityConfig, SIDECAR_TOKEN_ENV};
pub use sqlite::SqliteStore;
pub use status::TaskStatus;
pub use store::{CasOutcome, ListFilter, MemoryStore, StoreError, TaskPage, TaskStore};
pub use task::{format_ts_millis, merge_update, MessageView, Task, TaskData};
