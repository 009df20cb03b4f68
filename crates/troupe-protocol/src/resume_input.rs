//! A resume payload checked against the fields its pause declared (protocol.md §14.2:
//! `fields[] = {name, type, prompt, payload_key, required, default, options}`).
//!
//! x-resume itself enforces nothing (as Asya's); the gateway refuses a bad resume with
//! this check before the task leaves `paused`, for every client (mesh API, CLI, A2A).

use serde_json::Value;

/// Why a resume payload does not fit the pause's fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeInputError {
    /// The payload is not a JSON object although the pause declared fields.
    #[error("the resume payload must be a JSON object with the fields {fields}, got {got}")]
    NotAnObject {
        /// The declared field names, e.g. `'approved' (boolean)`.
        fields: String,
        /// What was sent.
        got: String,
    },
    /// A `required` field without a `default` is missing (or null).
    #[error("field '{field}' is required: send {{\"{field}\": <{expected}>}}")]
    Missing {
        /// Field name.
        field: String,
        /// The expected type, in words.
        expected: String,
    },
    /// A field has a value of the wrong JSON type.
    #[error("field '{field}' must be {expected}, got {got}")]
    WrongType {
        /// Field name.
        field: String,
        /// The expected type, in words.
        expected: String,
        /// What was sent.
        got: String,
    },
    /// A field with `options` has a value that is not one of them.
    #[error("field '{field}' must be one of {options}, got {got}")]
    NotAnOption {
        /// Field name.
        field: String,
        /// The allowed values, as JSON.
        options: String,
        /// What was sent.
        got: String,
    },
}

/// The JSON types a field may declare (with the spellings pause metadata uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Boolean,
    Integer,
    Number,
    Object,
    Array,
}

impl Kind {
    /// `None` for a missing or unknown type: such a field accepts any value.
    fn parse(text: &str) -> Option<Kind> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "text" => Kind::String,
            "boolean" | "bool" => Kind::Boolean,
            "integer" | "int" => Kind::Integer,
            "number" | "float" => Kind::Number,
            "object" | "dict" => Kind::Object,
            "array" | "list" => Kind::Array,
            _ => return None,
        })
    }

    fn words(self) -> &'static str {
        match self {
            Kind::String => "a string",
            Kind::Boolean => "a boolean (true or false)",
            Kind::Integer => "an integer",
            Kind::Number => "a number",
            Kind::Object => "an object",
            Kind::Array => "an array",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            Kind::String => v.is_string(),
            Kind::Boolean => v.is_boolean(),
            Kind::Integer => v.is_i64() || v.is_u64(),
            Kind::Number => v.is_number(),
            Kind::Object => v.is_object(),
            Kind::Array => v.is_array(),
        }
    }
}

/// `the string "yes-please"`, `the number 3`, ... (long values cut).
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".to_owned(),
        Value::Bool(_) => "the boolean",
        Value::Number(_) => "the number",
        Value::String(_) => "the string",
        Value::Array(_) => "the array",
        Value::Object(_) => "the object",
    };
    let mut text = v.to_string();
    if text.len() > 80 {
        let mut end = 77;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    format!("{kind} {text}")
}

/// The metadata's `fields` (the metadata may be a JSON string, as in `x-asya-pause`).
pub fn declared_fields(metadata: &Value) -> Vec<Value> {
    let parsed;
    let meta = match metadata {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
            &parsed
        }
        other => other,
    };
    meta.get("fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Checks `payload` (the user's resume input; `null` = none sent) against the fields
/// `metadata` declares. No declared fields: anything goes (merged at the root). Fields
/// without a known `type` accept any value; extra keys are allowed.
pub fn validate_resume_input(metadata: &Value, payload: &Value) -> Result<(), ResumeInputError> {
    let fields = declared_fields(metadata);
    let named: Vec<(&str, &Value)> = fields
        .iter()
        .filter_map(|f| Some((f.get("name")?.as_str()?, f)))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let kind_of = |f: &Value| f.get("type").and_then(Value::as_str).and_then(Kind::parse);
    let empty = serde_json::Map::new();
    let input = match payload {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            let fields = named
                .iter()
                .map(|(n, f)| match kind_of(f) {
                    Some(k) => format!("'{n}' ({})", k.words()),
                    None => format!("'{n}'"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ResumeInputError::NotAnObject {
                fields,
                got: describe(other),
            });
        }
    };
    for (name, field) in named {
        let kind = kind_of(field);
        let expected = kind.map_or("a value", Kind::words).to_owned();
        let value = input.get(name).filter(|v| !v.is_null());
        let Some(value) = value else {
            let required = field.get("required").and_then(Value::as_bool) == Some(true);
            let has_default = field.get("default").is_some_and(|d| !d.is_null());
            if required && !has_default {
                return Err(ResumeInputError::Missing {
                    field: name.to_owned(),
                    expected,
                });
            }
            continue;
        };
        if let Some(k) = kind {
            if !k.accepts(value) {
                return Err(ResumeInputError::WrongType {
                    field: name.to_owned(),
                    expected,
                    got: describe(value),
                });
            }
        }
        if let Some(options) = field.get("options").and_then(Value::as_array) {
            // An option is a value, or `{value, label}`.
            let allowed = |o: &Value| o == value || o.get("value") == Some(value);
            if !options.is_empty() && !options.iter().any(allowed) {
                let list: Vec<&Value> = options
                    .iter()
                    .map(|o| o.get("value").unwrap_or(o))
                    .collect();
                return Err(ResumeInputError::NotAnOption {
                    field: name.to_owned(),
                    options: serde_json::to_string(&list).unwrap_or_default(),
                    got: describe(value),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn approval() -> Value {
        json!({"prompt": "Send?", "fields": [
            {"name": "approved", "type": "boolean", "required": true},
            {"name": "note", "type": "string"},
        ]})
    }

    #[test]
    fn the_issue_cases_are_refused_naming_field_and_type() {
        let e = validate_resume_input(&approval(), &json!({"approved": "yes-please"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field 'approved' must be a boolean (true or false), got the string \"yes-please\""
        );
        for none in [json!(null), json!({})] {
            let e = validate_resume_input(&approval(), &none).unwrap_err();
            assert_eq!(
                e.to_string(),
                "field 'approved' is required: send {\"approved\": <a boolean (true or false)>}"
            );
        }
        let e = validate_resume_input(&approval(), &json!([true])).unwrap_err();
        assert!(
            e.to_string()
                .contains("'approved' (a boolean (true or false)), 'note' (a string)"),
            "{e}"
        );
        assert!(validate_resume_input(&approval(), &json!({"approved": false})).is_ok());
        assert!(validate_resume_input(
            &approval(),
            &json!({"approved": true, "note": "ok", "x": 1})
        )
        .is_ok());
        let e =
            validate_resume_input(&approval(), &json!({"approved": true, "note": 5})).unwrap_err();
        assert!(matches!(e, ResumeInputError::WrongType { ref field, .. } if field == "note"));
    }

    #[test]
    fn types_defaults_options_and_string_metadata() {
        let meta = json!({"fields": [
            {"name": "n", "type": "integer", "required": true, "default": 3},
            {"name": "x", "type": "number"},
            {"name": "tags", "type": "array"},
            {"name": "cfg", "type": "object"},
            {"name": "color", "type": "string", "options": ["red", {"value": "blue", "label": "Blue"}]},
            {"name": "any", "type": "mystery"},
        ]});
        assert!(
            validate_resume_input(&meta, &json!({})).is_ok(),
            "a default satisfies required"
        );
        let ok = json!({"n": 2, "x": 1.5, "tags": [], "cfg": {}, "color": "blue", "any": [1]});
        assert!(validate_resume_input(&meta, &ok).is_ok());
        for (bad, field) in [
            (json!({"n": 2.5}), "n"),
            (json!({"x": "1"}), "x"),
            (json!({"tags": {}}), "tags"),
            (json!({"cfg": []}), "cfg"),
            (json!({"color": "green"}), "color"),
        ] {
            let e = validate_resume_input(&meta, &bad).unwrap_err();
            assert!(e.to_string().contains(&format!("field '{field}'")), "{e}");
        }
        let e = validate_resume_input(&meta, &json!({"color": "green"})).unwrap_err();
        assert!(e.to_string().contains(r#"["red","blue"]"#), "{e}");
        let text = Value::String(approval().to_string());
        assert!(validate_resume_input(&text, &json!({"approved": 1})).is_err());
        // No declared fields: any input is merged at the root.
        for meta in [json!({"prompt": "p"}), json!({"fields": []}), json!(null)] {
            assert!(validate_resume_input(&meta, &json!("anything")).is_ok());
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\\-]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("(approved|note|[a-z]{1,3})", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Any input (and any metadata) gets an answer, never a panic; a refusal names a
        /// declared field, and an accepted input gives `approved` a boolean.
        #[test]
        fn open_inputs_are_answered_consistently(payload in any_json(), meta in any_json()) {
            let _ = validate_resume_input(&meta, &payload);
            match validate_resume_input(&approval(), &payload) {
                Ok(()) => {
                    prop_assert!(payload.get("approved").is_some_and(Value::is_boolean));
                }
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.contains("'approved'") || text.contains("'note'"), "{}", text);
                }
            }
        }
    }
}
