//! Subscripts of dicts, lists and strs with their errors; names; displays; `if`-expressions.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;
use troupe_pyexpr::{eval, Expr, Scope};

#[test]
fn dict_keys() {
    let state = json!({"a": {"b": [10, 20]}});
    assert_eq!(
        run(&sub(pk(json!("a")), c(json!("b"))), &state),
        Ok(json!([10, 20]))
    );
    assert_eq!(run(&pk(json!("x")), &state), Err("KeyError: 'x'".into()));
    assert_eq!(run(&pk(json!(1)), &state), Err("KeyError: 1".into()));
    assert_eq!(run(&pk(json!(1.5)), &state), Err("KeyError: 1.5".into()));
    assert_eq!(run(&pk(json!(null)), &state), Err("KeyError: None".into()));
    assert_eq!(
        run(&pk(json!("it's")), &state),
        Err("KeyError: \"it's\"".into())
    );
    assert_eq!(
        run(&pk(json!([])), &state),
        Err("TypeError: unhashable type: 'list'".into())
    );
}

#[test]
fn list_indexes() {
    let l = || c(json!([10, 20, 30]));
    check(&sub(l(), c(json!(-1))), Ok(json!(30)));
    check(&sub(l(), c(json!(-3))), Ok(json!(10)));
    check(&sub(l(), c(json!(true))), Ok(json!(20)));
    for i in [json!(3), json!(-4)] {
        check(&sub(l(), c(i)), Err("IndexError: list index out of range"));
    }
    check(
        &sub(l(), c(json!(u64::MAX))),
        Err("IndexError: cannot fit 'int' into an index-sized integer"),
    );
    for (i, t) in [
        (json!("a"), "str"),
        (json!(1.0), "float"),
        (json!(null), "NoneType"),
    ] {
        check(
            &sub(l(), c(i)),
            Err(&format!(
                "TypeError: list indices must be integers or slices, not {t}"
            )),
        );
    }
}

#[test]
fn str_indexes() {
    let s = || c(json!("h€😀"));
    check(&sub(s(), c(json!(1))), Ok(json!("€")));
    check(&sub(s(), c(json!(-1))), Ok(json!("😀")));
    check(
        &sub(s(), c(json!(3))),
        Err("IndexError: string index out of range"),
    );
    check(
        &sub(s(), c(json!("a"))),
        Err("TypeError: string indices must be integers, not 'str'"),
    );
}

#[test]
fn scalars_are_not_subscriptable() {
    for (v, t) in [
        (json!(null), "NoneType"),
        (json!(1), "int"),
        (json!(1.5), "float"),
        (json!(true), "bool"),
    ] {
        check(
            &sub(c(v), c(json!(0))),
            Err(&format!("TypeError: '{t}' object is not subscriptable")),
        );
    }
}

#[test]
fn names_read_p_and_the_comprehension_variable() {
    let p = json!({"k": 1});
    let x = json!({"id": 7});
    let scope = Scope::new(&p).with_var("x", &x);
    let e = bin(
        "+",
        sub(Expr::Name("x".into()), c(json!("id"))),
        pk(json!("k")),
    );
    assert_eq!(eval(&e, &scope), Ok(json!(8)));
    let err = eval(&Expr::Name("y".into()), &scope).unwrap_err();
    assert_eq!(err.to_string(), "NameError: name 'y' is not defined");
    assert_eq!(err.error_type, "NameError");
    assert_eq!(err.message, "name 'y' is not defined");
}

#[test]
fn displays_and_conditional_expressions() {
    check(
        &Expr::List(vec![c(json!(1)), binc("/", json!(1), json!(2))]),
        Ok(json!([1, 0.5])),
    );
    check(
        &Expr::Dict(vec![
            (c(json!("a")), c(json!(1))),
            (c(json!("a")), c(json!(2))),
        ]),
        Ok(json!({"a": 2})),
    );
    check(
        &Expr::Dict(vec![(c(json!([])), c(json!(1)))]),
        Err("TypeError: unhashable type: 'list'"),
    );
    // JSON objects have str keys: an int key raises (documented), saying what to write.
    check(
        &Expr::Dict(vec![(c(json!(1)), c(json!(2)))]),
        Err("TypeError: dict keys must be str in a JSON payload, not int (1); convert it with str()"),
    );
    // Every key and value is evaluated before the dict is built, as CPython does.
    check(
        &Expr::Dict(vec![
            (c(json!(1)), c(json!(2))),
            (c(json!("k")), pk(json!("m"))),
        ]),
        Err("KeyError: 'm'"),
    );
    let ifexp = |t| Expr::Ifexp(Box::new((c(t), c(json!("yes")), pk(json!("missing")))));
    check(&ifexp(json!([0])), Ok(json!("yes")));
    check(&ifexp(json!("")), Err("KeyError: 'missing'"));
}
