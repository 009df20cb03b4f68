//! `str % value`: printf-style formatting as CPython 3.11 does it for one (non-tuple)
//! argument, a list or a dict also being a mapping for `%(key)s`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use serde_json::{json, Value};

fn fmt(f: &str, arg: Value) -> troupe_pyexpr::Expr {
    binc("%", json!(f), arg)
}

#[test]
fn conversions() {
    let cases = [
        ("%s", json!(5.0), "5.0"),
        ("%s", json!([1, "a"]), "[1, 'a']"),
        ("%r", json!("a"), "'a'"),
        ("%a", json!(["é", 1.5]), "['\\xe9', 1.5]"),
        ("%d", json!(true), "1"),
        ("%i", json!(3.7), "3"),
        ("%d", json!(1e30), "1000000000000000019884624838656"),
        ("%x", json!(-255), "-ff"),
        ("%#08X", json!(255), "0X0000FF"),
        ("%#5o", json!(8), " 0o10"),
        ("%.5x", json!(-255), "-000ff"),
        ("%c", json!(65), "A"),
        ("%5c|", json!("é"), "    é|"),
        ("%.3s", json!("abcdef"), "abc"),
        ("%-5s|", json!("a"), "a    |"),
        ("%05s", json!("a"), "    a"),
        ("%-05d", json!(5), "5    "),
        ("%05.3d", json!(5), "00005"),
        ("%+5x", json!(255), "  +ff"),
        ("% d", json!(5), " 5"),
        ("%+ d", json!(5), "+5"),
        ("% 5.1f", json!(-0.0), " -0.0"),
        ("%f", json!(true), "1.000000"),
        ("%.0f", json!(2.5), "2"),
        ("%#.0f", json!(2.0), "2."),
        ("%#.0e", json!(2.0), "2.e+00"),
        ("%10.3e", json!(12345.678), " 1.235e+04"),
        ("%.2e", json!(0), "0.00e+00"),
        ("%g", json!(1e-5), "1e-05"),
        ("%g", json!(123456789), "1.23457e+08"),
        ("%g", json!(123456.5), "123456"),
        ("%g", json!(-0.0), "-0"),
        ("%#g", json!(1.0), "1.00000"),
        ("%#.1g", json!(1.0), "1."),
        ("%.0g", json!(15), "2e+01"),
        ("%G", json!(1e-10), "1E-10"),
        ("%F", json!(1e20), "100000000000000000000.000000"),
        ("%.30f", json!(0.1), "0.100000000000000005551115123126"),
        ("%hs", json!(5), "5"),
        ("100%%", json!([]), "100%"),
        ("abc", json!({}), "abc"),
        ("abc", json!([]), "abc"),
        ("%(a)s", json!({"a": 1}), "1"),
        ("%.9999999s|", json!("a"), "a|"),
        ("%((a))s", json!({"(a)": 5}), "5"),
        ("%s %(a)s", json!({"a": 1}), "{'a': 1} 1"),
    ];
    for (f, arg, want) in cases {
        check(&fmt(f, arg), Ok(json!(want)));
    }
}

#[test]
fn precisions_past_what_a_double_holds() {
    // Rust's formatter stops at u16::MAX digits; CPython goes on with zeros.
    for (f, arg) in [
        ("%.70000f", json!(0.1)),
        ("%.70000e", json!(-2.5)),
        ("%#.70000g", json!(1e-300)),
    ] {
        let got = ev0(&fmt(f, arg.clone())).unwrap();
        let got = got.as_str().unwrap();
        let mantissa = got.split(['e', 'E']).next().unwrap();
        let digits = mantissa.split('.').nth(1).unwrap();
        assert!(
            digits.len() >= 69_000,
            "{f} % {arg}: {} digits",
            digits.len()
        );
        assert!(digits.ends_with("0000000000"), "{f} % {arg}");
    }
    check(&fmt("%.70000g", json!(0.5)), Ok(json!("0.5")));
    let exact = "1000000000000000055511151231257827021181583404541015625";
    let want = format!("0.{exact}{}", "0".repeat(70_000 - exact.len()));
    check(&fmt("%.70000f", json!(0.1)), Ok(json!(want)));
}

#[test]
fn errors() {
    let cases = [
        (
            "abc",
            json!(1),
            "TypeError: not all arguments converted during string formatting",
        ),
        (
            "%%",
            json!(5),
            "TypeError: not all arguments converted during string formatting",
        ),
        (
            "%s %s",
            json!([1, 2]),
            "TypeError: not enough arguments for format string",
        ),
        (
            "%*d",
            json!(5),
            "TypeError: not enough arguments for format string",
        ),
        ("%*d", json!([1]), "TypeError: * wants int"),
        (
            "%d",
            json!("a"),
            "TypeError: %d format: a real number is required, not str",
        ),
        (
            "%x",
            json!(1.5),
            "TypeError: %x format: an integer is required, not float",
        ),
        ("%f", json!([]), "TypeError: must be real number, not list"),
        ("%c", json!("ab"), "TypeError: %c requires int or char"),
        (
            "%c",
            json!(1_114_112),
            "OverflowError: %c arg not in range(0x110000)",
        ),
        ("%(a)s", json!(5), "TypeError: format requires a mapping"),
        ("%(a)s", json!({}), "KeyError: 'a'"),
        (
            "%(a)s",
            json!([1]),
            "TypeError: list indices must be integers or slices, not str",
        ),
        ("%(a", json!({}), "ValueError: incomplete format key"),
        ("%", json!(1), "ValueError: incomplete format"),
        (
            "%lld",
            json!(5),
            "ValueError: unsupported format character 'l' (0x6c) at index 2",
        ),
        (
            "%5%",
            json!([]),
            "ValueError: unsupported format character '%' (0x25) at index 2",
        ),
        (
            "é%é",
            json!(1),
            "ValueError: unsupported format character '?' (0xe9) at index 2",
        ),
        (
            "%.9999999d",
            json!(1),
            "MemoryError: result would exceed 1000000 items, the native evaluator's limit",
        ),
        (
            "%*d",
            json!(u64::MAX),
            "OverflowError: Python int too large to convert to C ssize_t",
        ),
        (
            "%.*f",
            json!(2_147_483_648_i64),
            "OverflowError: Python int too large to convert to C int",
        ),
        (
            "%*d",
            json!(5_000_000),
            "TypeError: not enough arguments for format string",
        ),
        (
            "%5000000c",
            json!("ab"),
            "TypeError: %c requires int or char",
        ),
        // Past Py_ssize_t / C int CPython refuses the number itself.
        (
            "%99999999999999999999d",
            json!(1),
            "ValueError: width too big",
        ),
        ("%.2147483648f", json!(1), "ValueError: precision too big"),
    ];
    for (f, arg, want) in cases {
        check(&fmt(f, arg), Err(want));
    }
}
