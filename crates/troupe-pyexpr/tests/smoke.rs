//! The public API end to end: one expression, one statement.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;

#[test]
fn reads_and_writes_p() {
    let state = json!({"x": 4, "l": [1, 2]});
    let e = bin("+", pk(json!("x")), c(json!(1)));
    assert_eq!(run(&e, &state), Ok(json!(5)));
    assert_eq!(
        run(&pk(json!("y")), &state),
        Err("KeyError: 'y'".to_string())
    );
    let s = augassign("+", vec![c(json!("l")), c(json!(-1))], c(json!(10)));
    assert_eq!(run_stmt(&s, &state), Ok(json!({"x": 4, "l": [1, 12]})));
}
