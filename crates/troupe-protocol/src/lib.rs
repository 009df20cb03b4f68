//! Troupe wire protocol (`docs/spec/protocol.md`): pure data types and logic, no I/O.
//!
//! Everything here is byte-compatible with Asya where the spec says so. Modules:
//! - [`envelope`]: envelope, route and status types (§2)
//! - [`route`]: route advancement and destinations (§5)
//! - [`path`]: the ABI path grammar with GET/SET/DEL (§6.4)
//! - [`resiliency`]: policies, rule matching and delay math (§9)
//! - [`errors`]: failure and error envelope builders (§11)
//! - [`resume_input`]: a resume payload checked against the pause's fields (§14.2)
//! - [`queue`]: queue naming (§4)
//! - [`sidecar_env`]: the sidecar's environment variable names (§15)
//! - [`duration`]: Go duration strings
//! - [`clock`]: timestamps and an injectable clock

pub mod clock;
pub mod duration;
pub mod envelope;
pub mod errors;
pub mod headers;
pub mod lifecycle;
pub mod path;
pub mod queue;
pub mod report;
pub mod resiliency;
pub mod resume_input;
pub mod route;
pub mod sidecar_env;

pub use clock::{Clock, SystemClock};
pub use envelope::{Envelope, ErrorInfo, Frame, Phase, Reason, Route, Status};
