//! troupe up.
