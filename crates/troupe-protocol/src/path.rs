//! The ABI path grammar (protocol.md §6.4) with GET/SET/DEL on JSON values.
//!
//! This is the reference implementation the flow routers use; the Python runtime
//! implements the same semantics and both are checked against `testdata/abi_paths.json`.
