//! The serialized forms of native expressions and statements, as the flow front end emits
//! them: one-key JSON objects such as `{"sub": [{"name": "p"}, {"const": "k"}]}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An expression of the native subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expr {
    /// A literal: `None`, `True`/`False`, int, float or str.
    Const(Value),
    /// The state `p`, or a comprehension variable.
    Name(String),
    /// `value[index]`.
    Sub(Box<(Expr, Expr)>),
    /// A chained comparison `left op1 right1 op2 right2 …`.
    Cmp(Box<Expr>, Vec<(CmpOp, Expr)>),
    /// `a and b and …` (the result is an operand).
    And(Vec<Expr>),
    /// `a or b or …` (the result is an operand).
    Or(Vec<Expr>),
    /// `not e`.
    Not(Box<Expr>),
    /// A binary arithmetic operation.
    Bin(BinOp, Box<Expr>, Box<Expr>),
    /// Unary `-e`.
    Neg(Box<Expr>),
    /// Unary `+e`.
    Pos(Box<Expr>),
    /// `fn(arg)` for `fn` in `len`, `str`, `int`, `float`, `bool`.
    Call(String, Box<Expr>),
    /// A list display.
    List(Vec<Expr>),
    /// A dict display.
    Dict(Vec<(Expr, Expr)>),
    /// `body if test else orelse`, serialized as `[test, body, orelse]`.
    Ifexp(Box<(Expr, Expr, Expr)>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==`
    #[serde(rename = "==")]
    Eq,
    /// `!=`
    #[serde(rename = "!=")]
    Ne,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `<=`
    #[serde(rename = "<=")]
    Le,
    /// `>`
    #[serde(rename = ">")]
    Gt,
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `in`
    #[serde(rename = "in")]
    In,
    /// `not in`
    #[serde(rename = "not in")]
    NotIn,
    /// `is` (only against `None`, `True`, `False`)
    #[serde(rename = "is")]
    Is,
    /// `is not`
    #[serde(rename = "is not")]
    IsNot,
}

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    /// `+`
    #[serde(rename = "+")]
    Add,
    /// `-`
    #[serde(rename = "-")]
    Sub,
    /// `*`
    #[serde(rename = "*")]
    Mul,
    /// `/`
    #[serde(rename = "/")]
    Div,
    /// `//`
    #[serde(rename = "//")]
    FloorDiv,
    /// `%`
    #[serde(rename = "%")]
    Mod,
    /// `**`
    #[serde(rename = "**")]
    Pow,
}

/// The indexes from `p` to the assigned location: `p["a"][0]` is `[{"const":"a"}, {"const":0}]`.
pub type Target = Vec<Expr>;

/// A native statement: one mutation of `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stmt {
    /// `target = value`.
    Assign(Target, Expr),
    /// `target op= value`.
    Augassign(BinOp, Target, Expr),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_forms_round_trip() {
        let cases = [
            json!({"cmp": [{"sub": [{"name": "p"}, {"const": "x"}]}, [[">", {"const": 3}], ["not in", {"list": []}]]]}),
            json!({"and": [{"const": true}, {"not": {"name": "p"}}]}),
            json!({"bin": ["//", {"const": 7}, {"neg": {"const": 2}}]}),
            json!({"call": ["len", {"name": "p"}]}),
            json!({"dict": [[{"const": "k"}, {"const": null}]]}),
            json!({"ifexp": [{"const": 1}, {"const": "a"}, {"const": "b"}]}),
        ];
        for c in cases {
            let e: Expr = serde_json::from_value(c.clone()).unwrap();
            assert_eq!(serde_json::to_value(&e).unwrap(), c);
        }
        // Augmented assignments carry the plain operator (`+`, not `+=`).
        assert!(serde_json::from_value::<Stmt>(
            json!({"augassign": ["+=", [{"const": "n"}], {"const": 1}]})
        )
        .is_err());
        let ok: Stmt =
            serde_json::from_value(json!({"augassign": ["+", [{"const": "n"}], {"const": 1}]}))
                .unwrap();
        assert!(matches!(ok, Stmt::Augassign(BinOp::Add, _, _)));
    }
}
