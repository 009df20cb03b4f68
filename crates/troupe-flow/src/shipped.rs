//! Compiled flows handed to a standalone sidecar or gateway (Kubernetes): `troupe flow
//! compile` writes the flows' programs as JSON; the pods read them back from the
//! environment so their native routers run there too.

use std::path::PathBuf;

use crate::Flow;

/// Path of a JSON file holding an array of compiled flows (a mounted ConfigMap).
pub const FLOWS_FILE_ENV: &str = "TROUPE_FLOWS";
/// The same JSON inline (small flows, or where no volume can be mounted).
pub const FLOWS_JSON_ENV: &str = "TROUPE_FLOWS_JSON";

/// Why shipped flows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ShippedError {
    /// The file named by `TROUPE_FLOWS` could not be read.
    #[error("{FLOWS_FILE_ENV}={path}: {source}; mount the flow's program ConfigMap there or unset the variable")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The JSON is not an array of compiled flows.
    #[error("{var}: not the program of compiled flows ({source}); write it with `troupe flow compile` of this troupe version")]
    Parse {
        /// The variable read.
        var: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The flows named by `TROUPE_FLOWS` (a file) or `TROUPE_FLOWS_JSON` (inline), if either
/// is set; `TROUPE_FLOWS` wins when both are. A single flow object is accepted as well as
/// an array.
pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vec<Flow>>, ShippedError> {
    let (var, text) = match (
        get(FLOWS_FILE_ENV).filter(|v| !v.is_empty()),
        get(FLOWS_JSON_ENV).filter(|v| !v.is_empty()),
    ) {
        (Some(path), _) => {
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ShippedError::Read { path, source })?;
            (FLOWS_FILE_ENV, text)
        }
        (None, Some(json)) => (FLOWS_JSON_ENV, json),
        (None, None) => return Ok(None),
    };
    let parse = |source| ShippedError::Parse { var, source };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(parse)?;
    let flows = if value.is_array() {
        serde_json::from_value(value).map_err(parse)?
    } else {
        vec![serde_json::from_value(value).map_err(parse)?]
    };
    Ok(Some(flows))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_inline_and_file_forms() {
        let flows = vec![crate::pipeline("text", &["a".to_owned(), "b".to_owned()])];
        let json = serde_json::to_string(&flows).unwrap();
        let inline = from_env(&|k| (k == FLOWS_JSON_ENV).then(|| json.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(inline[0].entry_route(), vec!["a", "b"]);

        let dir = std::env::temp_dir().join(format!("troupe-flows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("program.json");
        std::fs::write(&file, serde_json::to_string(&flows[0]).unwrap()).unwrap();
        let path = file.display().to_string();
        let from_file = from_env(&|k| (k == FLOWS_FILE_ENV).then(|| path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(from_file[0].name, "text");
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(from_env(&|_| None).unwrap().is_none());
    }

    #[test]
    fn errors_name_the_variable_and_what_to_do() {
        let bad =
            from_env(&|k| (k == FLOWS_JSON_ENV).then(|| "{\"nope\": 1}".to_owned())).unwrap_err();
        assert!(
            bad.to_string()
                .starts_with("TROUPE_FLOWS_JSON: not the program"),
            "{bad}"
        );
        let missing =
            from_env(&|k| (k == FLOWS_FILE_ENV).then(|| "/nonexistent/p.json".to_owned()))
                .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("mount the flow's program ConfigMap"),
            "{missing}"
        );
    }
}
