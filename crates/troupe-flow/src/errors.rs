//! Python's built-in exception hierarchy, so that a native router raises what CPython
//! would report: `details.type` and `details.mro` as the runtime writes them (bases without
//! the class itself, `object` and `BaseException`; protocol.md §9.2 matches on them).

use serde_json::Value;

/// `(name, mro)` of every built-in exception class (CPython 3.11–3.13).
const BUILTIN: &[(&str, &[&str])] = &[
    ("ArithmeticError", &["Exception"]),
    ("AssertionError", &["Exception"]),
    ("AttributeError", &["Exception"]),
    ("BaseException", &[]),
    ("BaseExceptionGroup", &[]),
    ("BlockingIOError", &["OSError", "Exception"]),
    (
        "BrokenPipeError",
        &["ConnectionError", "OSError", "Exception"],
    ),
    ("BufferError", &["Exception"]),
    ("BytesWarning", &["Warning", "Exception"]),
    ("ChildProcessError", &["OSError", "Exception"]),
    (
        "ConnectionAbortedError",
        &["ConnectionError", "OSError", "Exception"],
    ),
    ("ConnectionError", &["OSError", "Exception"]),
    (
        "ConnectionRefusedError",
        &["ConnectionError", "OSError", "Exception"],
    ),
    (
        "ConnectionResetError",
        &["ConnectionError", "OSError", "Exception"],
    ),
    ("DeprecationWarning", &["Warning", "Exception"]),
    ("EOFError", &["Exception"]),
    ("EncodingWarning", &["Warning", "Exception"]),
    ("Exception", &[]),
    ("ExceptionGroup", &["BaseExceptionGroup", "Exception"]),
    ("FileExistsError", &["OSError", "Exception"]),
    ("FileNotFoundError", &["OSError", "Exception"]),
    ("FloatingPointError", &["ArithmeticError", "Exception"]),
    ("FutureWarning", &["Warning", "Exception"]),
    ("GeneratorExit", &[]),
    ("ImportError", &["Exception"]),
    ("ImportWarning", &["Warning", "Exception"]),
    ("IndentationError", &["SyntaxError", "Exception"]),
    ("IndexError", &["LookupError", "Exception"]),
    ("InterruptedError", &["OSError", "Exception"]),
    ("IsADirectoryError", &["OSError", "Exception"]),
    ("KeyError", &["LookupError", "Exception"]),
    ("KeyboardInterrupt", &[]),
    ("LookupError", &["Exception"]),
    ("MemoryError", &["Exception"]),
    ("ModuleNotFoundError", &["ImportError", "Exception"]),
    ("NameError", &["Exception"]),
    ("NotADirectoryError", &["OSError", "Exception"]),
    ("NotImplementedError", &["RuntimeError", "Exception"]),
    ("OSError", &["Exception"]),
    ("OverflowError", &["ArithmeticError", "Exception"]),
    ("PendingDeprecationWarning", &["Warning", "Exception"]),
    ("PermissionError", &["OSError", "Exception"]),
    ("ProcessLookupError", &["OSError", "Exception"]),
    ("RecursionError", &["RuntimeError", "Exception"]),
    ("ReferenceError", &["Exception"]),
    ("ResourceWarning", &["Warning", "Exception"]),
    ("RuntimeError", &["Exception"]),
    ("RuntimeWarning", &["Warning", "Exception"]),
    ("StopAsyncIteration", &["Exception"]),
    ("StopIteration", &["Exception"]),
    ("SyntaxError", &["Exception"]),
    ("SyntaxWarning", &["Warning", "Exception"]),
    ("SystemError", &["Exception"]),
    ("SystemExit", &[]),
    (
        "TabError",
        &["IndentationError", "SyntaxError", "Exception"],
    ),
    ("TimeoutError", &["OSError", "Exception"]),
    ("TypeError", &["Exception"]),
    ("UnboundLocalError", &["NameError", "Exception"]),
    (
        "UnicodeDecodeError",
        &["UnicodeError", "ValueError", "Exception"],
    ),
    (
        "UnicodeEncodeError",
        &["UnicodeError", "ValueError", "Exception"],
    ),
    ("UnicodeError", &["ValueError", "Exception"]),
    (
        "UnicodeTranslateError",
        &["UnicodeError", "ValueError", "Exception"],
    ),
    ("UnicodeWarning", &["Warning", "Exception"]),
    ("UserWarning", &["Warning", "Exception"]),
    ("ValueError", &["Exception"]),
    ("Warning", &["Exception"]),
    ("ZeroDivisionError", &["ArithmeticError", "Exception"]),
    ("PythonFinalizationError", &["RuntimeError", "Exception"]),
];

/// The mro the runtime reports for an exception raised as `error_type`: a built-in's
/// own, or `[Exception]` for any other name (routers.py creates such classes on the fly
/// as subclasses of `Exception`).
pub fn mro_of(error_type: &str) -> Vec<String> {
    match BUILTIN.iter().find(|(n, _)| *n == error_type) {
        Some((_, mro)) => mro.iter().map(|s| (*s).to_owned()).collect(),
        None => vec!["Exception".to_owned()],
    }
}

/// `str(E(message))` (or `str(E())` without a message): a `KeyError` shows its argument's
/// repr, every other class the argument itself.
pub fn raised_message(error_type: &str, message: Option<&str>) -> String {
    match message {
        None => String::new(),
        Some(m) if error_type == "KeyError" => troupe_pyexpr::py_repr(&Value::String(m.to_owned())),
        Some(m) => m.to_owned(),
    }
}

/// The names of the built-in exception classes this table knows.
pub fn builtin_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}
