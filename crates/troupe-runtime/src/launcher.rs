//! Starting, supervising and stopping Python runtime processes.
