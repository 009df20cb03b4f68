//! `str()`/`repr()` of every value type, `len()`, `int()`, `float()` and `bool()`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::json;
use troupe_pyexpr::{py_repr, py_str};

#[test]
fn float_repr_is_pythons() {
    let cases = [
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1.5e-7, "1.5e-07"),
        (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (2.5, "2.5"),
    ];
    for (f, want) in cases {
        assert_eq!(py_repr(&json!(f)), want);
        assert_eq!(py_str(&json!(f)), want);
    }
}

#[test]
fn str_repr_quotes_and_escapes_as_cpython() {
    let cases = [
        ("a", "'a'"),
        ("it's", "\"it's\""),
        ("a'b\"c", "'a\\'b\"c'"),
        ("say \"hi\"", "'say \"hi\"'"),
        ("back\\slash", "'back\\\\slash'"),
        ("t\tn\nr\r", "'t\\tn\\nr\\r'"),
        ("\u{0}\u{7f}\u{80}\u{a0}", "'\\x00\\x7f\\x80\\xa0'"),
        ("\u{ad}\u{200b}\u{2028}", "'\\xad\\u200b\\u2028'"),
        ("é日本😀", "'é日本😀'"),
        ("\u{e000}\u{e0001}", "'\\ue000\\U000e0001'"),
    ];
    for (s, want) in cases {
        assert_eq!(py_repr(&json!(s)), want, "repr of {s:?}");
        assert_eq!(py_str(&json!(s)), s);
    }
}

#[test]
fn containers_print_as_python() {
    let v = json!({"k": [null, true, false, 1, 1.5, "it's", {}], "a": []});
    // serde_json keeps keys sorted (documented): "a" before "k".
    assert_eq!(
        py_str(&v),
        "{'a': [], 'k': [None, True, False, 1, 1.5, \"it's\", {}]}"
    );
    assert_eq!(py_repr(&json!([[]])), "[[]]");
    check(&call("str", c(json!(null))), Ok(json!("None")));
    check(&call("str", c(json!(true))), Ok(json!("True")));
    check(
        &call("str", c(json!(u64::MAX))),
        Ok(json!("18446744073709551615")),
    );
    check(&call("str", c(json!(["a"]))), Ok(json!("['a']")));
}

#[test]
fn len() {
    check(&call("len", c(json!("日本😀"))), Ok(json!(3)));
    check(&call("len", c(json!([1, [2, 3]]))), Ok(json!(2)));
    check(&call("len", c(json!({"a": 1}))), Ok(json!(1)));
    for (v, t) in [
        (json!(1), "int"),
        (json!(null), "NoneType"),
        (json!(1.5), "float"),
        (json!(true), "bool"),
    ] {
        check(
            &call("len", c(v)),
            Err(&format!("TypeError: object of type '{t}' has no len()")),
        );
    }
}

#[test]
fn int_conversion() {
    let ok = [
        (json!("12"), 12),
        (json!(" 7 "), 7),
        (json!("+5"), 5),
        (json!("-0"), 0),
        (json!("007"), 7),
        (json!("1_000"), 1000),
        (json!("\u{663}"), 3),
        (json!("\u{3000}7\u{85}"), 7),
        (json!(3.9), 3),
        (json!(-3.9), -3),
        (json!(true), 1),
    ];
    for (v, want) in ok {
        check(&call("int", c(v)), Ok(json!(want)));
    }
    // \x1c is whitespace to str.isspace() but not to int(): CPython strips ASCII spaces only.
    for s in [
        "x", "", "1__0", "_1", "1_", "1 2", "0x10", "1.5", "+ 1", "\u{1c}7",
    ] {
        check(
            &call("int", c(json!(s))),
            Err(&format!(
                "ValueError: invalid literal for int() with base 10: {}",
                py_repr(&json!(s))
            )),
        );
    }
    let long = "x".repeat(300);
    check(
        &call("int", c(json!(long))),
        Err(&format!(
            "ValueError: invalid literal for int() with base 10: '{}",
            "x".repeat(199)
        )),
    );
    check(
        &call("int", c(json!(null))),
        Err("TypeError: int() argument must be a string, a bytes-like object or a real number, not 'NoneType'"),
    );
    check(
        &call("int", c(json!("1".repeat(4301)))),
        Err("ValueError: Exceeds the limit (4300 digits) for integer string conversion: value has 4301 digits; use sys.set_int_max_str_digits() to increase the limit"),
    );
}

#[test]
fn float_conversion() {
    let ok = [
        (json!("1.5"), 1.5),
        (json!(" -2.5e3 "), -2500.0),
        (json!(".5"), 0.5),
        (json!("5."), 5.0),
        (json!("1_0.5"), 10.5),
        (json!("1E2"), 100.0),
        (json!(3), 3.0),
        (json!(false), 0.0),
    ];
    for (v, want) in ok {
        check(&call("float", c(v)), Ok(json!(want)));
    }
    for s in ["x", "", "1e", ".", "1_", "1.5.2", "0x10", "in f", "7\u{1f}"] {
        check(
            &call("float", c(json!(s))),
            Err(&format!(
                "ValueError: could not convert string to float: {}",
                py_repr(&json!(s))
            )),
        );
    }
    check(
        &call("float", c(json!([]))),
        Err("TypeError: float() argument must be a string or a real number, not 'list'"),
    );
    check(
        &call("float", c(json!("nan"))),
        Err("OverflowError: float result is nan, which a JSON payload cannot hold"),
    );
}

#[test]
fn bool_conversion() {
    check(&call("bool", c(json!("0"))), Ok(json!(true)));
    check(&call("bool", c(json!(0.0))), Ok(json!(false)));
    check(&call("bool", c(json!([]))), Ok(json!(false)));
    check(
        &call("repr", c(json!(1))),
        Err("NameError: name 'repr' is not defined"),
    );
}
