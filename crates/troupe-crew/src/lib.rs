//! Native crew actors.
