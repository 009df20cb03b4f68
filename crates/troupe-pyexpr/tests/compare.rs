//! Comparisons: chained, across int/float/bool, lexicographic str and list, the TypeError of
//! incompatible orderings, `in`, `is`, and `and`/`or` returning an operand.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;
use troupe_pyexpr::Expr;

#[test]
fn equality_across_numeric_types_is_exact() {
    let eq = |a, b| cmp(c(a), vec![("==", c(b))]);
    check(&eq(json!(1), json!(1.0)), Ok(json!(true)));
    check(&eq(json!(true), json!(1.0)), Ok(json!(true)));
    check(&eq(json!([1]), json!([1.0])), Ok(json!(true)));
    check(&eq(json!({"a": 1}), json!({"a": true})), Ok(json!(true)));
    check(&eq(json!(1), json!("1")), Ok(json!(false)));
    check(&eq(json!(null), json!(null)), Ok(json!(true)));
    // 2**53 + 1 is not the float 2**53, though float(2**53 + 1) is.
    check(
        &eq(
            json!(9_007_199_254_740_993_i64),
            json!(9_007_199_254_740_992.0),
        ),
        Ok(json!(false)),
    );
    check(
        &cmp(
            c(json!(u64::MAX)),
            vec![("<", c(json!(1.8446744073709552e19)))],
        ),
        Ok(json!(true)),
    );
}

#[test]
fn chained_comparisons_stop_at_the_first_false() {
    let chain = cmp(
        c(json!(1)),
        vec![
            ("<", c(json!(2))),
            ("<", c(json!(3))),
            ("<=", c(json!(3.0))),
        ],
    );
    check(&chain, Ok(json!(true)));
    // `3 < 2 < "x"`: the second comparison never runs, so no TypeError.
    let short = cmp(c(json!(3)), vec![("<", c(json!(2))), ("<", c(json!("x")))]);
    check(&short, Ok(json!(false)));
    let raising = cmp(c(json!(1)), vec![("<", c(json!(2))), ("<", c(json!("x")))]);
    check(
        &raising,
        Err("TypeError: '<' not supported between instances of 'int' and 'str'"),
    );
}

#[test]
fn ordering_of_str_and_list_is_lexicographic() {
    let lt = |a, b| cmp(c(a), vec![("<", c(b))]);
    check(&lt(json!("B"), json!("a")), Ok(json!(true)));
    check(&lt(json!("ab"), json!("abc")), Ok(json!(true)));
    check(&lt(json!("é"), json!("z")), Ok(json!(false)));
    check(&lt(json!([1, 2]), json!([1, 2, 3])), Ok(json!(true)));
    check(&lt(json!([1, "a"]), json!([1, "b"])), Ok(json!(true)));
    check(&lt(json!([2]), json!([1, "x"])), Ok(json!(false)));
    check(
        &lt(json!([1, "a"]), json!([1, 2])),
        Err("TypeError: '<' not supported between instances of 'str' and 'int'"),
    );
}

#[test]
fn incompatible_orderings_raise_type_error() {
    let cases = [
        (
            "<",
            json!("a"),
            json!(1),
            "'<' not supported between instances of 'str' and 'int'",
        ),
        (
            ">=",
            json!(null),
            json!(null),
            "'>=' not supported between instances of 'NoneType' and 'NoneType'",
        ),
        (
            "<=",
            json!({}),
            json!({}),
            "'<=' not supported between instances of 'dict' and 'dict'",
        ),
        (
            ">",
            json!([]),
            json!({}),
            "'>' not supported between instances of 'list' and 'dict'",
        ),
    ];
    for (op, a, b, msg) in cases {
        check(
            &cmp(c(a), vec![(op, c(b))]),
            Err(&format!("TypeError: {msg}")),
        );
    }
}

#[test]
fn membership() {
    let isin = |a, b| cmp(c(a), vec![("in", c(b))]);
    check(&isin(json!("ell"), json!("hello")), Ok(json!(true)));
    check(&isin(json!(""), json!("")), Ok(json!(true)));
    check(&isin(json!(1.0), json!([0, 1])), Ok(json!(true)));
    check(&isin(json!("k"), json!({"k": null})), Ok(json!(true)));
    check(&isin(json!(1), json!({"1": 0})), Ok(json!(false)));
    check(
        &cmp(c(json!("v")), vec![("not in", c(json!({"k": "v"})))]),
        Ok(json!(true)),
    );
    check(
        &isin(json!(1), json!("a")),
        Err("TypeError: 'in <string>' requires string as left operand, not int"),
    );
    check(
        &isin(json!([]), json!({})),
        Err("TypeError: unhashable type: 'list'"),
    );
    check(
        &isin(json!(1), json!(null)),
        Err("TypeError: argument of type 'NoneType' is not iterable"),
    );
}

#[test]
fn identity_with_none_true_false() {
    let state = json!({"a": null, "b": 0, "t": true, "one": 1});
    let is = |k: &str, op: &str, v| cmp(pk(json!(k)), vec![(op, c(v))]);
    assert_eq!(run(&is("a", "is", json!(null)), &state), Ok(json!(true)));
    assert_eq!(run(&is("b", "is", json!(null)), &state), Ok(json!(false)));
    assert_eq!(
        run(&is("b", "is not", json!(false)), &state),
        Ok(json!(true))
    );
    assert_eq!(run(&is("t", "is", json!(true)), &state), Ok(json!(true)));
    // `1 is True` is False in Python: identity, not equality.
    assert_eq!(run(&is("one", "is", json!(true)), &state), Ok(json!(false)));
}

#[test]
fn and_or_return_an_operand() {
    check(&Expr::And(vec![c(json!(1)), c(json!("x"))]), Ok(json!("x")));
    check(&Expr::And(vec![c(json!(0)), c(json!("x"))]), Ok(json!(0)));
    check(&Expr::Or(vec![c(json!("")), c(json!([]))]), Ok(json!([])));
    check(&Expr::Or(vec![c(json!([1])), c(json!(2))]), Ok(json!([1])));
    // Short circuit: the KeyError on the right never happens.
    check(
        &Expr::Or(vec![c(json!(1)), pk(json!("missing"))]),
        Ok(json!(1)),
    );
    check(&Expr::Not(Box::new(c(json!({})))), Ok(json!(true)));
}

#[test]
fn truthiness() {
    use troupe_pyexpr::truthy;
    for v in [
        json!(null),
        json!(false),
        json!(0),
        json!(0.0),
        json!(-0.0),
        json!(""),
        json!([]),
        json!({}),
    ] {
        assert!(!truthy(&v), "{v} is falsy");
    }
    for v in [
        json!(true),
        json!(-1),
        json!(0.1),
        json!(" "),
        json!([0]),
        json!({"a": null}),
    ] {
        assert!(truthy(&v), "{v} is truthy");
    }
}
