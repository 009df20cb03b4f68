//! The flow compiler (platform.md §4): see docs/flow-ir.md.
