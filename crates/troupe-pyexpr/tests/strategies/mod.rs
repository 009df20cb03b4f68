//! Random payloads, expressions and statements for the differential test, biased toward the
//! values where Python's rules have edges: int/float/bool mixes, 64-bit limits, negative
//! operands, quotes and non-printable characters, number-like and `%`-format strings.

use proptest::prelude::*;
use serde_json::{json, Value};

const KEYS: &[&str] = &["a", "b", "n", "s", "l", "d", "f", "x"];

const STRINGS: &[&str] = &[
    "",
    "a",
    "b",
    "ab",
    "abc",
    "A",
    "x",
    "n",
    "é",
    "日本",
    "😀",
    "it's",
    "say \"hi\"",
    "both ' and \"",
    "back\\slash",
    "tab\t",
    "nl\n",
    "cr\r",
    "\u{7f}",
    "\u{0}",
    "\u{1f}",
    "\u{a0}",
    "\u{ad}",
    "\u{200b}",
    "\u{2028}",
    "\u{e000}",
    "\u{378}",
    "\u{1c}7",
    " 7 ",
    "12",
    "-3",
    "+5",
    "007",
    "1_000",
    "1__0",
    "_1",
    "٣",
    "١٢",
    "1.5",
    " -2.5e3 ",
    "1e400",
    "inf",
    "-Infinity",
    "nan",
    ".5",
    "5.",
    "1e",
    "0x10",
    "1 2",
    "%s",
    "%d",
    "%5.2f",
    "%(a)s",
    "%r|%a",
    "%x%%",
    "%c",
    "%-4d|",
    "%+.3e",
    "%g",
    "%05.1f",
    "%i",
    "%o",
    "%X",
    "%#x",
    "100%",
    "%s %s",
    "%(n)d",
    "%.2s",
    "%z",
    "%(a",
    "%10.4g|%G",
    "%e",
    "%#o",
    "% d",
    "%.0f",
    "%u",
    "%F",
    "%E",
];

const INTS: &[i128] = &[
    0,
    1,
    -1,
    2,
    3,
    7,
    10,
    -7,
    100,
    2_147_483_648,
    9_007_199_254_740_992,
    9_007_199_254_740_993,
    4_611_686_018_427_387_904,
    9_223_372_036_854_775_807,
    -9_223_372_036_854_775_808,
    9_223_372_036_854_775_808,
    18_446_744_073_709_551_615,
    1_000_000,
];

const FLOATS: &[f64] = &[
    0.0,
    -0.0,
    0.5,
    1.5,
    -2.5,
    0.1,
    0.2,
    1e20,
    1e-5,
    1e16,
    1e15,
    123.456,
    1e308,
    -1e308,
    5e-324,
    9_007_199_254_740_992.0,
    3.0,
    -7.5,
    2.5,
    1e22,
    0.0001,
    1.0,
    -1.0,
    1e100,
];

fn int_value(i: i128) -> Value {
    if let Ok(v) = i64::try_from(i) {
        json!(v)
    } else {
        json!(u64::try_from(i).unwrap_or(u64::MAX))
    }
}

/// A scalar: None, bool, int, float or str.
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        4 => (-10i64..20).prop_map(|i| json!(i)),
        2 => prop::sample::select(INTS).prop_map(int_value),
        2 => prop::sample::select(FLOATS).prop_map(|f| json!(f)),
        1 => (-1000.0f64..1000.0).prop_map(|f| json!(f)),
        1 => prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        5 => prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        2 => prop::sample::select(KEYS).prop_map(|s| json!(s)),
    ]
}

/// Any JSON value, nested a little.
pub fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => (-10i64..20).prop_map(|i| json!(i)),
        1 => prop::sample::select(INTS).prop_map(int_value),
        2 => prop::sample::select(FLOATS).prop_map(|f| json!(f)),
        1 => (-1000.0f64..1000.0).prop_map(|f| json!(f)),
        1 => any::<bool>().prop_map(Value::Bool),
    ]
}

fn string() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        1 => prop::sample::select(KEYS).prop_map(|s| json!(s)),
    ]
}

/// The state `p`: a dict where each of the usual keys is mostly present, so that `p["k"]`
/// often finds something, with `n` mostly a number, `s` a str, `l` a list and `d` a dict, so
/// that typed expressions over them often run to the end.
pub fn payload() -> impl Strategy<Value = Value> {
    let present = |s: BoxedStrategy<Value>| prop::option::weighted(0.85, s);
    (
        (
            present(number().boxed()),
            present(string().boxed()),
            present(
                prop::collection::vec(scalar(), 0..5)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
            present(json_value().boxed()),
        ),
        prop::collection::vec(present(json_value().boxed()), 4),
    )
        .prop_map(|((n, s, l, d), rest)| {
            let others = ["a", "b", "f", "x"].into_iter().zip(rest);
            let typed = [("n", n), ("s", s), ("l", l), ("d", d)].into_iter();
            Value::Object(
                typed
                    .chain(others)
                    .filter_map(|(k, v)| Some((k.to_string(), v?)))
                    .collect(),
            )
        })
}

fn p_at(k: &str) -> Value {
    node("sub", json!([{"name": "p"}, {"const": k}]))
}

/// Arithmetic over numbers: mostly runs, sometimes divides by zero or overflows.
pub fn num_expr() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => number().prop_map(|v| node("const", v)),
        2 => Just(p_at("n")),
        1 => string().prop_map(|s| node("call", json!(["len", {"const": s}]))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            6 => (prop::sample::select(BINOPS), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| node("bin", json!([op, a, b]))),
            1 => inner.clone().prop_map(|e| node("neg", e)),
            1 => (prop::sample::select(&["int", "float", "pos"][..]), inner.clone())
                .prop_map(|(f, e)| if f == "pos" { node("pos", e) } else { node("call", json!([f, e])) }),
            1 => (cond_leaf(), inner.clone(), inner)
                .prop_map(|(t, b, o)| node("ifexp", json!([t, b, o]))),
        ]
    })
}

fn cond_leaf() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(&["<", "<=", "==", "!=", ">", ">="][..]),
        number(),
        number(),
    )
        .prop_map(|(op, a, b)| node("cmp", json!([{"const": a}, [[op, {"const": b}]]])))
}

/// A printf-style format: literal text and conversions with random keys, flags, widths,
/// precisions, length modifiers and types (some invalid).
pub fn format_string() -> impl Strategy<Value = Value> {
    let conversion = (
        prop::option::weighted(0.2, prop::sample::select(&["a", "n", "(a)", "", "x"][..])),
        prop::collection::vec(prop::sample::select(&["-", "+", " ", "#", "0"][..]), 0..3),
        prop::option::weighted(
            0.4,
            prop_oneof![
                Just("*".to_string()),
                (0u32..25).prop_map(|w| w.to_string())
            ],
        ),
        prop::option::weighted(
            0.4,
            prop_oneof![
                Just("*".to_string()),
                (0u32..25).prop_map(|p| p.to_string())
            ],
        ),
        prop::option::weighted(0.05, prop::sample::select(&["h", "l", "L", "ll"][..])),
        prop::sample::select(
            &[
                "s", "r", "a", "d", "i", "u", "o", "x", "X", "e", "E", "f", "F", "g", "G", "c",
                "%", "z", "é", "",
            ][..],
        ),
    )
        .prop_map(|(key, flags, width, prec, len, ty)| {
            let key = key.map(|k| format!("({k})")).unwrap_or_default();
            let prec = prec.map(|p| format!(".{p}")).unwrap_or_default();
            format!(
                "%{key}{}{}{prec}{}{ty}",
                flags.concat(),
                width.unwrap_or_default(),
                len.unwrap_or_default()
            )
        });
    let piece = prop_oneof![
        3 => conversion,
        1 => prop::sample::select(&["x", " ", "%%", "é", "-"][..]).prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 1..4).prop_map(|p| json!(p.concat()))
}

/// Strings: concatenation, repetition, `%` formatting, `str()` and indexing.
pub fn str_expr() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => string().prop_map(|v| node("const", v)),
        2 => Just(p_at("s")),
        1 => number().prop_map(|v| node("call", json!(["str", {"const": v}]))),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone()).prop_map(|(a, b)| node("bin", json!(["+", a, b]))),
            1 => (inner.clone(), -2i64..4)
                .prop_map(|(a, n)| node("bin", json!(["*", a, {"const": n}]))),
            2 => (format_string(), prop_oneof![
                    4 => scalar().prop_map(|v| node("const", v)).boxed(),
                    1 => Just(p_at("d")).boxed(),
                    1 => Just(p_at("l")).boxed(),
                    1 => json_value().prop_map(|v| node("const", v)).boxed(),
                ])
                .prop_map(|(f, a)| node("bin", json!(["%", {"const": f}, a]))),
            2 => (inner.clone(), prop_oneof![
                    number().prop_map(|v| node("const", v)).boxed(),
                    inner.clone().boxed(),
                    Just(p_at("d")).boxed(),
                    Just(p_at("l")).boxed(),
                ])
                .prop_map(|(f, a)| node("bin", json!(["%", f, a]))),
            1 => (inner.clone(), -4i64..4)
                .prop_map(|(a, i)| node("sub", json!([a, {"const": i}]))),
            1 => inner.prop_map(|e| node("call", json!(["str", e]))),
        ]
    })
}

/// Conditions a router would write: comparisons, membership, `is None`, and/or/not.
pub fn cond_expr() -> impl Strategy<Value = Value> {
    let cmp_num = (
        num_expr(),
        prop::collection::vec(
            (
                prop::sample::select(&["<", "<=", "==", "!=", ">", ">="][..]),
                num_expr(),
            ),
            1..3,
        ),
    )
        .prop_map(|(a, rest)| node("cmp", json!([a, rest])));
    let cmp_str = (
        str_expr(),
        prop::sample::select(&["<", "==", "!=", ">=", "in", "not in"][..]),
        str_expr(),
    )
        .prop_map(|(a, op, b)| node("cmp", json!([a, [[op, b]]])));
    let member = (
        prop_oneof![
            string().prop_map(|v| node("const", v)),
            number().prop_map(|v| node("const", v))
        ],
        prop::sample::select(&["in", "not in"][..]),
        prop::sample::select(&["l", "d", "s"][..]),
    )
        .prop_map(|(a, op, k)| node("cmp", json!([a, [[op, p_at(k)]]])));
    let is_none = (
        prop::sample::select(KEYS),
        prop::sample::select(&["is", "is not"][..]),
    )
        .prop_map(|(k, op)| node("cmp", json!([p_at(k), [[op, {"const": null}]]])));
    let leaf = prop_oneof![cmp_num, cmp_str, member, is_none];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| node("and", json!(v))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| node("or", json!(v))),
            inner.prop_map(|e| node("not", e)),
        ]
    })
}

fn node(kind: &str, v: Value) -> Value {
    json!({ kind: v })
}

fn key_const() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(|k| node("const", json!(k))),
        1 => (-3i64..4).prop_map(|i| node("const", json!(i))),
    ]
}

fn leaf(with_x: bool) -> impl Strategy<Value = Value> {
    let names: Vec<&'static str> = if with_x { vec!["p", "x"] } else { vec!["p"] };
    prop_oneof![
        4 => scalar().prop_map(|v| node("const", v)),
        1 => prop::sample::select(names).prop_map(|n| node("name", json!(n))),
        4 => key_const().prop_map(|k| node("sub", json!([{"name": "p"}, k]))),
    ]
}

const BINOPS: &[&str] = &["+", "-", "*", "/", "//", "%", "**"];
const CMPOPS: &[&str] = &[
    "==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not",
];
const CALLS: &[&str] = &["len", "str", "int", "float", "bool"];

fn cmp_pair(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    (prop::sample::select(CMPOPS), inner, 0..3usize).prop_map(|(op, e, singleton)| {
        let right = if op.starts_with("is") {
            node(
                "const",
                [json!(null), json!(true), json!(false)][singleton].clone(),
            )
        } else {
            e
        };
        json!([op, right])
    })
}

/// A native expression (the wire form), reading `p` and, when `with_x`, the variable `x`.
pub fn expr_with(with_x: bool) -> impl Strategy<Value = Value> {
    leaf(with_x).prop_recursive(4, 40, 4, |inner| {
        let inner = inner.boxed();
        prop_oneof![
            3 => (inner.clone(), prop_oneof![key_const().boxed(), inner.clone()])
                .prop_map(|(v, i)| node("sub", json!([v, i]))),
            3 => (inner.clone(), prop::collection::vec(cmp_pair(inner.clone()), 1..4))
                .prop_map(|(l, rest)| node("cmp", json!([l, rest]))),
            1 => prop::collection::vec(inner.clone(), 2..4).prop_map(|v| node("and", json!(v))),
            1 => prop::collection::vec(inner.clone(), 2..4).prop_map(|v| node("or", json!(v))),
            1 => inner.clone().prop_map(|e| node("not", e)),
            6 => (prop::sample::select(BINOPS), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| node("bin", json!([op, a, b]))),
            1 => inner.clone().prop_map(|e| node("neg", e)),
            1 => inner.clone().prop_map(|e| node("pos", e)),
            3 => (prop::sample::select(CALLS), inner.clone())
                .prop_map(|(f, a)| node("call", json!([f, a]))),
            1 => prop::collection::vec(inner.clone(), 0..4).prop_map(|v| node("list", json!(v))),
            1 => prop::collection::vec(
                (prop_oneof![3 => key_const().boxed(), 1 => inner.clone()], inner.clone()),
                0..4
            )
            .prop_map(|kv| node("dict", json!(kv))),
            1 => (inner.clone(), inner.clone(), inner)
                .prop_map(|(t, b, o)| node("ifexp", json!([t, b, o]))),
        ]
    })
}

/// An expression that may read `x`: anything, or one of the typed kinds that mostly run.
pub fn expr() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => expr_with(true).boxed(),
        2 => num_expr().boxed(),
        2 => str_expr().boxed(),
        2 => cond_expr().boxed(),
    ]
}

/// The value of an assignment: anything, or a typed expression.
fn value_expr() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => expr_with(false).boxed(),
        2 => num_expr().boxed(),
        1 => str_expr().boxed(),
        1 => cond_expr().boxed(),
    ]
}

/// A native statement: `p[…] = e` or `p[…] op= e`.
pub fn stmt() -> impl Strategy<Value = Value> {
    let index = prop_oneof![
        6 => key_const(),
        1 => expr_with(false),
    ];
    // Mostly one or two levels into the typed keys, as routers write; sometimes anything.
    let typed_target = prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(|k| vec![json!({"const": k})]),
        1 => (prop::sample::select(&["l", "d"][..]), key_const())
            .prop_map(|(k, i)| vec![json!({"const": k}), i]),
    ];
    let target = prop_oneof![
        3 => typed_target.boxed(),
        2 => prop::collection::vec(index, 0..4).boxed(),
    ];
    prop_oneof![
        2 => (target.clone(), value_expr()).prop_map(|(t, v)| node("assign", json!([t, v]))),
        2 => (prop::sample::select(BINOPS), target, value_expr())
            .prop_map(|(op, t, v)| node("augassign", json!([op, t, v]))),
        3 => typed_stmt(),
    ]
}

/// Statements a router writes: counters, string building, list appends, keyed stores.
fn typed_stmt() -> impl Strategy<Value = Value> {
    let key = |k: &str| json!({ "const": k });
    prop_oneof![
        (prop::sample::select(BINOPS), num_expr())
            .prop_map(move |(op, v)| node("augassign", json!([op, [key("n")], v]))),
        (prop::sample::select(&["+", "*", "%"][..]), str_expr())
            .prop_map(move |(op, v)| node("augassign", json!([op, [key("s")], v]))),
        prop_oneof![
            prop::collection::vec(scalar().prop_map(|v| node("const", v)), 0..3)
                .prop_map(|v| node("list", json!(v))),
            str_expr(),
        ]
        .prop_map(move |v| node("augassign", json!(["+", [key("l")], v]))),
        ((-3i64..3), value_expr())
            .prop_map(move |(i, v)| node("assign", json!([[key("l"), {"const": i}], v]))),
        (prop::sample::select(KEYS), value_expr())
            .prop_map(move |(k, v)| node("assign", json!([[key("d"), {"const": k}], v]))),
        (prop::sample::select(KEYS), cond_expr())
            .prop_map(move |(k, v)| node("assign", json!([[{"const": k}], v]))),
    ]
}
