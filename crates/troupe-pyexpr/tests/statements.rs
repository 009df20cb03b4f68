//! Statements: assignment through nested subscripts, augmented assignment (read, operate,
//! write), Python's order of evaluation, and `p` unchanged when a statement raises.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;

#[test]
fn assignment_through_nested_subscripts() {
    let state = json!({"a": {"b": 0}, "l": [1, 2, 3]});
    let s = assign(vec![c(json!("a")), c(json!("b"))], c(json!(1)));
    assert_eq!(
        run_stmt(&s, &state),
        Ok(json!({"a": {"b": 1}, "l": [1, 2, 3]}))
    );
    let s = assign(vec![c(json!("l")), c(json!(-1))], c(json!("x")));
    assert_eq!(
        run_stmt(&s, &state),
        Ok(json!({"a": {"b": 0}, "l": [1, 2, "x"]}))
    );
    let s = assign(vec![c(json!("new"))], c(json!([])));
    assert_eq!(run_stmt(&s, &state).unwrap()["new"], json!([]));
    // An empty target replaces the whole state.
    assert_eq!(
        run_stmt(&assign(vec![], c(json!({"z": 1}))), &state),
        Ok(json!({"z": 1}))
    );
}

#[test]
fn the_value_reads_p_before_the_store() {
    let state = json!({"n": 1, "l": [0, 0]});
    // p["l"][p["n"]] = p["n"] + 1
    let s = assign(
        vec![c(json!("l")), pk(json!("n"))],
        bin("+", pk(json!("n")), c(json!(1))),
    );
    assert_eq!(run_stmt(&s, &state), Ok(json!({"n": 1, "l": [0, 2]})));
    // p["n"] = p: the value is a copy of p as it was.
    let s = assign(vec![c(json!("n"))], p());
    assert_eq!(run_stmt(&s, &json!({"n": 1})), Ok(json!({"n": {"n": 1}})));
}

#[test]
fn store_errors() {
    let state = json!({"a": {}, "l": [1], "s": "ab", "z": null});
    let cases = [
        (vec![c(json!("missing")), c(json!("b"))], "KeyError: 'missing'"),
        (vec![c(json!("l")), c(json!(5))], "IndexError: list assignment index out of range"),
        (vec![c(json!("l")), c(json!(5)), c(json!(0))], "IndexError: list index out of range"),
        (vec![c(json!("l")), c(json!("k"))], "TypeError: list indices must be integers or slices, not str"),
        (vec![c(json!("s")), c(json!(0))], "TypeError: 'str' object does not support item assignment"),
        (vec![c(json!("s")), c(json!(0)), c(json!(0))], "TypeError: 'str' object does not support item assignment"),
        (vec![c(json!("z")), c(json!(0))], "TypeError: 'NoneType' object does not support item assignment"),
        (vec![c(json!("a")), c(json!([]))], "TypeError: unhashable type: 'list'"),
        (vec![c(json!("a")), c(json!(1))], "TypeError: dict keys must be str in a JSON payload, not int (1); convert it with str()"),
    ];
    for (target, want) in cases {
        let s = assign(target, c(json!(0)));
        assert_eq!(run_stmt(&s, &state), Err(want.to_string()), "{s:?}");
    }
    // The value is evaluated first: its error wins over the target's.
    let s = assign(vec![c(json!("missing")), c(json!(0))], pk(json!("value")));
    assert_eq!(run_stmt(&s, &state), Err("KeyError: 'value'".into()));
}

#[test]
fn a_failed_statement_leaves_p_unchanged() {
    let mut p = json!({"l": [1, 2]});
    let s = augassign("+", vec![c(json!("l"))], c(json!(1)));
    let err = troupe_pyexpr::exec(&s, &mut p).unwrap_err();
    assert_eq!(err.to_string(), "TypeError: 'int' object is not iterable");
    assert_eq!(p, json!({"l": [1, 2]}));
}

#[test]
fn augmented_assignment() {
    let state = json!({"n": 5, "s": "ab", "l": [1], "d": {"k": 1.5}});
    let cases = [
        (augassign("+", vec![c(json!("n"))], c(json!(1))), json!(6)),
        (
            augassign("//", vec![c(json!("n"))], c(json!(-2))),
            json!(-3),
        ),
        (augassign("/", vec![c(json!("n"))], c(json!(2))), json!(2.5)),
        (augassign("**", vec![c(json!("n"))], c(json!(2))), json!(25)),
        (
            augassign("*", vec![c(json!("s"))], c(json!(2))),
            json!("abab"),
        ),
        (
            augassign("%", vec![c(json!("s"))], c(json!([]))),
            json!("ab"),
        ),
    ];
    for (s, want) in cases {
        let Stmt::Augassign(_, target, _) = &s else {
            unreachable!()
        };
        let key = match &target[0] {
            troupe_pyexpr::Expr::Const(k) => k.as_str().unwrap().to_string(),
            _ => unreachable!(),
        };
        assert_eq!(run_stmt(&s, &state).unwrap()[&key], want, "{s:?}");
    }
    // A list's += extends it with any iterable: a str adds its characters, a dict its keys.
    let s = augassign("+", vec![c(json!("l"))], c(json!("xy")));
    assert_eq!(run_stmt(&s, &state).unwrap()["l"], json!([1, "x", "y"]));
    let s = augassign("+", vec![c(json!("l"))], pk(json!("d")));
    assert_eq!(run_stmt(&s, &state).unwrap()["l"], json!([1, "k"]));
    let s = augassign("*", vec![c(json!("l"))], c(json!(3)));
    assert_eq!(run_stmt(&s, &state).unwrap()["l"], json!([1, 1, 1]));
    let s = augassign("+", vec![c(json!("d")), c(json!("k"))], c(json!(1)));
    assert_eq!(run_stmt(&s, &state).unwrap()["d"], json!({"k": 2.5}));
}

#[test]
fn augmented_assignment_errors() {
    let state = json!({"n": 5, "s": "ab", "d": {}, "z": null});
    let cases = [
        // It reads the item first: a missing key is a KeyError, not a store.
        (
            augassign("+", vec![c(json!("d")), c(json!("k"))], c(json!(1))),
            "KeyError: 'k'",
        ),
        (
            augassign("+", vec![c(json!("m"))], pk(json!("other"))),
            "KeyError: 'm'",
        ),
        (
            augassign("+", vec![c(json!("n"))], c(json!("a"))),
            "TypeError: unsupported operand type(s) for +=: 'int' and 'str'",
        ),
        (
            augassign("+", vec![c(json!("s"))], c(json!(1))),
            "TypeError: can only concatenate str (not \"int\") to str",
        ),
        (
            augassign("*", vec![c(json!("z"))], c(json!(2))),
            "TypeError: unsupported operand type(s) for *=: 'NoneType' and 'int'",
        ),
        (
            augassign("**", vec![c(json!("n"))], c(json!(null))),
            "TypeError: unsupported operand type(s) for **=: 'int' and 'NoneType'",
        ),
        (
            augassign("*", vec![c(json!("d"))], c(json!([1]))),
            "TypeError: unsupported operand type(s) for *=: 'dict' and 'list'",
        ),
        (
            augassign("+", vec![c(json!("s")), c(json!(0))], c(json!("x"))),
            "TypeError: 'str' object does not support item assignment",
        ),
        (
            augassign("//", vec![c(json!("n"))], c(json!(0))),
            "ZeroDivisionError: integer division or modulo by zero",
        ),
    ];
    for (s, want) in cases {
        assert_eq!(run_stmt(&s, &state), Err(want.to_string()), "{s:?}");
    }
}

use troupe_pyexpr::Stmt;
