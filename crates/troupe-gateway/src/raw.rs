//! JSON the gateway carries but never looks inside (payloads, results): kept as the
//! posted text, because a parsed `serde_json::Value` tree costs about 20 times the bytes
//! (issue 9, item 3).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// A JSON value kept as its text; serialised verbatim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl RawJson {
    /// The text of `v` (for callers that already hold a tree, e.g. the adapters).
    pub fn from_value(v: &Value) -> Self {
        match serde_json::value::to_raw_value(v) {
            Ok(raw) => RawJson(raw),
            // A Value always serialises; keep a valid document if it ever does not.
            Err(_) => Self::null(),
        }
    }

    /// Checks that `text` is one JSON value and keeps it.
    pub fn from_text(text: &str) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(RawJson)
    }

    /// JSON `null`.
    pub fn null() -> Self {
        RawJson(RawValue::NULL.to_owned())
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Whether the text is empty (never, for a parsed value).
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// Whether the value is JSON `null`.
    pub fn is_null(&self) -> bool {
        self.0.get().trim() == "null"
    }

    /// Whether the value is a JSON object.
    pub fn is_object(&self) -> bool {
        self.0.get().trim_start().starts_with('{')
    }

    /// The value parsed into a tree (tests and small values only).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl Default for RawJson {
    fn default() -> Self {
        Self::null()
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        RawJson(raw)
    }
}

impl From<&RawValue> for RawJson {
    fn from(raw: &RawValue) -> Self {
        RawJson(raw.to_owned())
    }
}

impl From<Value> for RawJson {
    fn from(v: Value) -> Self {
        RawJson::from_value(&v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keeps_text_and_compares_by_it() {
        let a = RawJson::from_text("[0, 0]").unwrap();
        assert_eq!(a.get(), "[0, 0]");
        assert_eq!(serde_json::to_string(&a).unwrap(), "[0, 0]");
        assert_eq!(a.to_value(), serde_json::json!([0, 0]));
        assert!(RawJson::null().is_null());
        assert!(RawJson::from_text("{\"a\":1}").unwrap().is_object());
        assert!(RawJson::from_text("[1").is_err());
        assert_eq!(
            RawJson::from(serde_json::json!({"a": 1})).get(),
            "{\"a\":1}"
        );
    }
}
