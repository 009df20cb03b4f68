//! The tool registry (gateway.md §3): `tools:` lists read from YAML files and the mesh
//! file, validated as a whole and swapped atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

/// Seconds a tool call waits when its `timeout` is 0 or missing.
pub const DEFAULT_TOOL_TIMEOUT_S: u64 = 300;

/// One registered tool: an MCP name bound to the mesh's entry actor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// MCP tool name (unique).
    pub name: String,
    /// Entry actor the task is created for.
    pub actor: String,
    /// Description shown by `tools/list`.
    pub description: Option<String>,
    /// Seconds the call waits for a result (0 = [`DEFAULT_TOOL_TIMEOUT_S`]).
    pub timeout: u64,
    /// Whether progress notifications are sent.
    pub progress: bool,
    /// JSON Schema of the arguments, as written (default `{"type": "object"}`).
    pub input_schema: Value,
}

impl Tool {
    /// The call deadline in seconds (0 or missing = 300).
    pub fn timeout_secs(&self) -> u64 {
        if self.timeout == 0 {
            DEFAULT_TOOL_TIMEOUT_S
        } else {
            self.timeout
        }
    }

    /// Names listed in the schema's top-level `required`.
    pub fn required(&self) -> impl Iterator<Item = &str> {
        self.input_schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }

    /// The `tools/list` entry.
    pub fn to_listing(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(self.name.clone()));
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        m.insert("inputSchema".into(), self.input_schema.clone());
        Value::Object(m)
    }
}

/// A validated tool set, in registration order (files by name, then inline tools).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolSet {
    tools: Vec<Tool>,
}

impl ToolSet {
    /// The tools in registration order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.iter().find(|t| t.name == name)
    }
}

/// Where the registry is read from.
#[derive(Debug, Clone, Default)]
pub struct RegistrySource {
    /// Folder of `*.yaml`/`*.yml` files.
    pub dir: Option<PathBuf>,
    /// Entries from the mesh file.
    pub inline: Vec<Value>,
}

/// A load failure: the file (or "inline tools") and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file (or folder, or `inline tools`) at fault.
    pub source: String,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.problem)
    }
}

const INLINE: &str = "inline tools (gateway.mcp.tools)";

impl RegistrySource {
    /// Reads and validates every source; any problem fails the whole load.
    pub fn load(&self) -> Result<ToolSet, LoadError> {
        let mut tools: Vec<Tool> = Vec::new();
        // name → where it was first defined, for the duplicate message.
        let mut seen: HashMap<String, String> = HashMap::new();
        if let Some(dir) = &self.dir {
            for file in yaml_files(dir)? {
                let shown = file.display().to_string();
                let err = |problem: String| LoadError {
                    source: shown.clone(),
                    problem,
                };
                let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
                let Some(entries) = tools_of(&text).map_err(err)? else {
                    continue;
                };
                add_entries(&mut tools, &mut seen, &entries, &shown)?;
            }
        }
        add_entries(&mut tools, &mut seen, &self.inline, INLINE)?;
        Ok(ToolSet { tools })
    }
}

/// The registry files of `dir`, sorted by name so the order (and `tools/list`) is stable.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let err = |problem: String| LoadError {
        source: dir.display().to_string(),
        problem,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| err(e.to_string()))? {
        let path = entry.map_err(|e| err(e.to_string()))?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        // ConfigMap mounts show each key twice (`..data/` symlinks); `is_file` follows
        // links and hidden entries are the mount's own bookkeeping.
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if yaml && !hidden && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// The `tools:` entries of one file; `None` when the file has no top-level `tools:`
/// (another component's file sharing the folder, or an empty file).
fn tools_of(text: &str) -> Result<Option<Vec<Value>>, String> {
    let doc: Value = serde_yaml::from_str::<Option<Value>>(text)
        .map_err(|e| format!("invalid YAML: {e}"))?
        .unwrap_or(Value::Null);
    let top = match doc {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        _ => return Err("the top level must be a mapping with a `tools:` list".into()),
    };
    match top.get("tools") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(_) => Err("`tools` must be a list".into()),
    }
}

fn add_entries(
    tools: &mut Vec<Tool>,
    seen: &mut HashMap<String, String>,
    entries: &[Value],
    source: &str,
) -> Result<(), LoadError> {
    for (i, entry) in entries.iter().enumerate() {
        let tool = parse_tool(entry).map_err(|p| LoadError {
            source: source.to_owned(),
            problem: format!("tool #{}: {p}", i + 1),
        })?;
        if let Some(first) = seen.get(&tool.name) {
            return Err(LoadError {
                source: source.to_owned(),
                problem: format!(
                    "tool name '{}' is not unique (already defined in {first})",
                    tool.name
                ),
            });
        }
        seen.insert(tool.name.clone(), source.to_owned());
        tools.push(tool);
    }
    Ok(())
}

/// Validates one registry entry. Unknown keys are ignored (Asya's files may carry more).
fn parse_tool(entry: &Value) -> Result<Tool, String> {
    let obj = entry
        .as_object()
        .ok_or("an entry must be a mapping with `name` and `actor`")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a string")),
        }
    };
    let name = text("name")?
        .filter(|s| !s.trim().is_empty())
        .ok_or("`name` is required")?;
    let named = |p: String| format!("'{name}': {p}");
    let actor = text("actor")
        .map_err(named)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| named("`actor` is required".into()))?;
    let description = text("description").map_err(named)?;
    let timeout = match obj.get("timeout") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            // Whole seconds, as the mesh API's create does.
            (None, Some(f)) if f >= 0.0 => f as u64,
            _ => {
                return Err(named(
                    "`timeout` must be a non-negative number of seconds".into(),
                ))
            }
        },
        Some(_) => return Err(named("`timeout` must be a number of seconds".into())),
    };
    let progress = match obj.get("progress") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(named("`progress` must be true or false".into())),
    };
    let input_schema = match obj.get("inputSchema") {
        None | Some(Value::Null) => serde_json::json!({"type": "object"}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(named(
                "`inputSchema` must be a mapping (a JSON Schema)".into(),
            ))
        }
    };
    if let Some(req) = input_schema.get("required") {
        let ok = req
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(named(
                "`inputSchema.required` must be a list of argument names".into(),
            ));
        }
    }
    Ok(Tool {
        name,
        actor,
        description,
        timeout,
        progress,
        input_schema,
    })
}

/// The live tool set: readers take a snapshot, the reloader swaps it whole.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<ToolSet>>,
}

impl Registry {
    /// A registry holding `set`.
    pub fn new(set: ToolSet) -> Self {
        Registry {
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<ToolSet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            // A panicking writer cannot leave a half-written Arc: the value is usable.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Installs `set`; `true` when it differs from the current one.
    pub fn replace(&self, set: ToolSet) -> bool {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if **guard == set {
            return false;
        }
        *guard = Arc::new(set);
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(d.path().join(name), text).unwrap();
        }
        d
    }

    fn load(dir: &Path, inline: Vec<Value>) -> Result<ToolSet, LoadError> {
        RegistrySource {
            dir: Some(dir.to_owned()),
            inline,
        }
        .load()
    }

    #[test]
    fn reads_yaml_and_yml_sorted_and_skips_other_files() {
        let d = dir_with(&[
            (
                "b.yml",
                "tools:\n  - name: second\n    actor: b\n    timeout: 30\n    progress: true\n",
            ),
            (
                "a.yaml",
                "tools:\n  - name: first\n    actor: a\n    description: First\n",
            ),
            ("agents.yaml", "agents:\n  - name: x\n    actor: y\n"),
            ("empty.yaml", ""),
            ("notes.txt", "tools: [oops"),
            (".hidden.yaml", "tools: [oops"),
        ]);
        let set = load(d.path(), vec![json!({"name": "third", "actor": "c"})]).unwrap();
        let names: Vec<_> = set.tools().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["first", "second", "third"]);
        let second = set.get("second").unwrap();
        assert_eq!((second.timeout, second.progress), (30, true));
        assert_eq!(second.timeout_secs(), 30);
        let first = set.get("first").unwrap();
        assert_eq!(first.timeout_secs(), DEFAULT_TOOL_TIMEOUT_S);
        assert_eq!(first.input_schema, json!({"type": "object"}));
        assert_eq!(
            first.to_listing(),
            json!({"name": "first", "description": "First", "inputSchema": {"type": "object"}})
        );
    }

    #[test]
    fn schema_is_kept_as_written() {
        let d = dir_with(&[(
            "t.yaml",
            "tools:\n  - name: s\n    actor: a\n    inputSchema:\n      type: object\n      properties:\n        url: {type: string}\n        style: {type: string, enum: [short, long]}\n      required: [url]\n",
        )]);
        let set = load(d.path(), vec![]).unwrap();
        let t = set.get("s").unwrap();
        assert_eq!(
            t.input_schema,
            json!({"type": "object", "properties": {"url": {"type": "string"},
                   "style": {"type": "string", "enum": ["short", "long"]}}, "required": ["url"]})
        );
        assert_eq!(t.required().collect::<Vec<_>>(), ["url"]);
    }

    #[test]
    fn errors_name_the_file_and_problem() {
        let cases: &[(&str, &str)] = &[
            ("tools:\n  - actor: a\n", "`name` is required"),
            ("tools:\n  - name: n\n", "'n': `actor` is required"),
            ("tools: [oops", "invalid YAML"),
            ("tools: 3\n", "`tools` must be a list"),
            ("- 1\n", "top level must be a mapping"),
            (
                "tools:\n  - {name: n, actor: a, timeout: soon}\n",
                "`timeout` must be",
            ),
            (
                "tools:\n  - {name: n, actor: a, inputSchema: {required: url}}\n",
                "inputSchema.required",
            ),
            (
                "tools:\n  - {name: n, actor: a}\n  - {name: n, actor: b}\n",
                "not unique",
            ),
        ];
        for (text, want) in cases {
            let d = dir_with(&[("bad.yaml", text)]);
            let e = load(d.path(), vec![]).unwrap_err();
            assert!(e.source.ends_with("bad.yaml"), "{e}");
            assert!(e.problem.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn duplicates_across_sources_and_missing_dir() {
        let d = dir_with(&[("a.yaml", "tools:\n  - {name: n, actor: a}\n")]);
        let e = load(d.path(), vec![json!({"name": "n", "actor": "b"})]).unwrap_err();
        assert_eq!(e.source, INLINE);
        assert!(e.problem.contains("a.yaml"), "{e}");
        let e = load(&d.path().join("nope"), vec![]).unwrap_err();
        assert!(e.source.ends_with("nope"), "{e}");
        // no folder at all: inline tools only
        let set = RegistrySource {
            dir: None,
            inline: vec![json!({"name": "x", "actor": "y"})],
        }
        .load()
        .unwrap();
        assert_eq!(set.tools().len(), 1);
    }

    #[test]
    fn replace_reports_changes() {
        let reg = Registry::new(ToolSet::default());
        assert!(!reg.replace(ToolSet::default()));
        let set = RegistrySource {
            dir: None,
            inline: vec![json!({"name": "x", "actor": "y"})],
        }
        .load()
        .unwrap();
        assert!(reg.replace(set.clone()));
        assert!(!reg.replace(set));
        assert_eq!(reg.snapshot().tools().len(), 1);
    }
}
