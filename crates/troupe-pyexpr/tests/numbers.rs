//! Arithmetic: int vs float, `/` always float, floor semantics of `//` and `%`, `**`, bool as
//! an int, the ZeroDivisionError messages, and the 64-bit limit of JSON ints.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;
use troupe_pyexpr::{Expr, INT_OVERFLOW};

#[test]
fn int_and_float_stay_distinct() {
    check(&binc("+", json!(1), json!(2)), Ok(json!(3)));
    check(&binc("+", json!(1), json!(2.0)), Ok(json!(3.0)));
    check(&binc("*", json!(2.5), json!(2)), Ok(json!(5.0)));
    check(&binc("-", json!(0.0), json!(0)), Ok(json!(0.0)));
    // `json!` compares 3 and 3.0 as different numbers: the check would catch a float.
    assert_ne!(json!(3).to_string(), json!(3.0).to_string());
}

#[test]
fn true_division_is_always_float() {
    check(&binc("/", json!(6), json!(3)), Ok(json!(2.0)));
    check(
        &binc("/", json!(1), json!(3)),
        Ok(json!(0.3333333333333333)),
    );
    check(&binc("/", json!(0), json!(-5)), Ok(json!(-0.0)));
    // Correctly rounded past 2**53, as CPython's long division is.
    check(
        &binc("/", json!(1_152_921_504_606_846_977_i64), json!(3)),
        Ok(json!(3.843071682022823e17)),
    );
    check(
        &binc("/", json!(u64::MAX), json!(7)),
        Ok(json!(2.6352491533870787e18)),
    );
}

#[test]
fn floor_division_and_modulo_round_toward_negative_infinity() {
    let cases = [
        ("//", json!(-7), json!(2), json!(-4)),
        ("%", json!(-7), json!(2), json!(1)),
        ("%", json!(7), json!(-2), json!(-1)),
        ("//", json!(7), json!(-2), json!(-4)),
        ("//", json!(-7.5), json!(2), json!(-4.0)),
        ("%", json!(-7.5), json!(2), json!(0.5)),
        ("%", json!(7.5), json!(-2), json!(-0.5)),
        ("%", json!(-0.0), json!(5), json!(0.0)),
        ("%", json!(0.0), json!(-5), json!(-0.0)),
        ("%", json!(5), json!(-0.5), json!(-0.0)),
        ("//", json!(1), json!(0.1), json!(9.0)),
        ("%", json!(1), json!(0.1), json!(0.09999999999999995)),
    ];
    for (op, a, b, want) in cases {
        check(&binc(op, a, b), Ok(want));
    }
}

#[test]
fn zero_division_messages_match_cpython() {
    let cases = [
        ("/", json!(1), json!(0), "division by zero"),
        ("/", json!(1.0), json!(0), "float division by zero"),
        ("/", json!(1), json!(0.0), "float division by zero"),
        (
            "//",
            json!(1),
            json!(0),
            "integer division or modulo by zero",
        ),
        ("%", json!(1), json!(0), "integer modulo by zero"),
        ("//", json!(1.0), json!(0), "float floor division by zero"),
        ("//", json!(1), json!(0.0), "float floor division by zero"),
        ("%", json!(1.0), json!(0), "float modulo"),
        ("%", json!(1), json!(false), "integer modulo by zero"),
        (
            "**",
            json!(0),
            json!(-1),
            "0.0 cannot be raised to a negative power",
        ),
        (
            "**",
            json!(0.0),
            json!(-1),
            "0.0 cannot be raised to a negative power",
        ),
    ];
    for (op, a, b, msg) in cases {
        check(&binc(op, a, b), Err(&format!("ZeroDivisionError: {msg}")));
    }
}

#[test]
fn power() {
    check(&binc("**", json!(2), json!(10)), Ok(json!(1024)));
    check(&binc("**", json!(2), json!(-1)), Ok(json!(0.5)));
    check(&binc("**", json!(-1), json!(-1)), Ok(json!(-1.0)));
    check(&binc("**", json!(0.0), json!(0)), Ok(json!(1.0)));
    check(&binc("**", json!(-2.0), json!(3)), Ok(json!(-8.0)));
    check(
        &binc("**", json!(2), json!(0.5)),
        Ok(json!(std::f64::consts::SQRT_2)),
    );
    check(&binc("**", json!(2), json!(-1075)), Ok(json!(0.0)));
    check(
        &binc("**", json!(1e300), json!(2)),
        Err("OverflowError: (34, 'Numerical result out of range')"),
    );
    // A complex result in Python: documented as a ValueError here.
    check(
        &binc("**", json!(-8.0), json!(0.5)),
        Err("ValueError: negative number cannot be raised to a fractional power (Python gives a complex number, which a JSON payload cannot hold)"),
    );
}

#[test]
fn bool_is_an_int() {
    check(&binc("+", json!(true), json!(1)), Ok(json!(2)));
    check(&binc("*", json!(true), json!(true)), Ok(json!(1)));
    check(&binc("/", json!(true), json!(2)), Ok(json!(0.5)));
    check(&Expr::Neg(Box::new(c(json!(true)))), Ok(json!(-1)));
    check(&Expr::Pos(Box::new(c(json!(false)))), Ok(json!(0)));
    check(
        &cmp(c(json!(true)), vec![("==", c(json!(1)))]),
        Ok(json!(true)),
    );
    check(
        &cmp(c(json!(1)), vec![("==", c(json!(1.0)))]),
        Ok(json!(true)),
    );
}

#[test]
fn ints_beyond_64_bits_raise_overflow_error() {
    let overflow = format!("OverflowError: {INT_OVERFLOW}");
    // JSON holds -2**63 ..= 2**64-1, the union of i64 and u64.
    check(
        &binc("+", json!(i64::MAX), json!(1)),
        Ok(json!(9_223_372_036_854_775_808_u64)),
    );
    check(&binc("+", json!(u64::MAX), json!(0)), Ok(json!(u64::MAX)));
    check(&binc("+", json!(u64::MAX), json!(1)), Err(&overflow));
    check(&binc("-", json!(i64::MIN), json!(1)), Err(&overflow));
    check(&binc("*", json!(u64::MAX), json!(u64::MAX)), Err(&overflow));
    check(&binc("**", json!(2), json!(64)), Err(&overflow));
    check(&binc("**", json!(2), json!(1_000_000)), Err(&overflow));
    check(&binc("**", json!(-1), json!(1_000_001)), Ok(json!(-1)));
    check(&Expr::Neg(Box::new(c(json!(u64::MAX)))), Err(&overflow));
    check(&call("int", c(json!(1e30))), Err(&overflow));
    check(
        &call("int", c(json!("99999999999999999999"))),
        Err(&overflow),
    );
    // Floats past the largest double: inf in Python, an error here.
    check(
        &binc("*", json!(1e308), json!(10)),
        Err("OverflowError: float result is inf, which a JSON payload cannot hold"),
    );
    check(
        &call("float", c(json!("-inf"))),
        Err("OverflowError: float result is -inf, which a JSON payload cannot hold"),
    );
}

#[test]
fn operand_type_errors() {
    let cases = [
        (
            "+",
            json!(1),
            json!("a"),
            "unsupported operand type(s) for +: 'int' and 'str'",
        ),
        (
            "+",
            json!("a"),
            json!(1),
            "can only concatenate str (not \"int\") to str",
        ),
        (
            "+",
            json!([]),
            json!("a"),
            "can only concatenate list (not \"str\") to list",
        ),
        (
            "-",
            json!("a"),
            json!(1),
            "unsupported operand type(s) for -: 'str' and 'int'",
        ),
        (
            "+",
            json!(null),
            json!(1),
            "unsupported operand type(s) for +: 'NoneType' and 'int'",
        ),
        (
            "**",
            json!(1),
            json!("a"),
            "unsupported operand type(s) for ** or pow(): 'int' and 'str'",
        ),
        (
            "*",
            json!([]),
            json!(1.5),
            "can't multiply sequence by non-int of type 'float'",
        ),
        (
            "*",
            json!(null),
            json!("a"),
            "can't multiply sequence by non-int of type 'NoneType'",
        ),
        (
            "*",
            json!({}),
            json!(2),
            "unsupported operand type(s) for *: 'dict' and 'int'",
        ),
        (
            "%",
            json!([]),
            json!(1),
            "unsupported operand type(s) for %: 'list' and 'int'",
        ),
        (
            "%",
            json!(1),
            json!("a"),
            "unsupported operand type(s) for %: 'int' and 'str'",
        ),
    ];
    for (op, a, b, msg) in cases {
        check(&binc(op, a, b), Err(&format!("TypeError: {msg}")));
    }
    check(
        &Expr::Neg(Box::new(c(json!("a")))),
        Err("TypeError: bad operand type for unary -: 'str'"),
    );
    check(
        &Expr::Pos(Box::new(c(json!(null)))),
        Err("TypeError: bad operand type for unary +: 'NoneType'"),
    );
}

#[test]
fn sequences_concatenate_and_repeat() {
    check(&binc("+", json!("ab"), json!("c")), Ok(json!("abc")));
    check(
        &binc("+", json!([1]), json!([2, "x"])),
        Ok(json!([1, 2, "x"])),
    );
    check(&binc("*", json!("ab"), json!(3)), Ok(json!("ababab")));
    check(
        &binc("*", json!(2), json!([1, [2]])),
        Ok(json!([1, [2], 1, [2]])),
    );
    check(&binc("*", json!("a"), json!(-1)), Ok(json!("")));
    check(&binc("*", json!([1]), json!(true)), Ok(json!([1])));
    check(
        &binc("*", json!("a"), json!(u64::MAX)),
        Err("OverflowError: cannot fit 'int' into an index-sized integer"),
    );
    check(
        &binc("*", json!("ab"), json!(600_000)),
        Err("MemoryError: result would exceed 1000000 items, the native evaluator's limit"),
    );
    // A list's cost counts what its items hold: JSON repeats copies.
    check(
        &binc("*", json!([[1, 2, 3, 4]]), json!(300_000)),
        Err("MemoryError: result would exceed 1000000 items, the native evaluator's limit"),
    );
}

#[test]
fn repeating_an_empty_sequence_is_instant() {
    check(&binc("*", json!([]), json!(i64::MAX)), Ok(json!([])));
    check(&binc("*", json!(""), json!(i64::MAX)), Ok(json!("")));
    check(&binc("*", json!([[]]), json!(0)), Ok(json!([])));
}
