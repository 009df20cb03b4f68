//! `str % value`: printf-style formatting (filled in below).

use serde_json::Value;

use crate::PyError;

/// `fmt % arg`.
pub(crate) fn printf(fmt: &str, arg: &Value) -> Result<String, PyError> {
    let _ = (fmt, arg);
    Err(PyError::new(
        "NotImplementedError",
        "str % is not native yet",
    ))
}
