//! The agent registry (gateway.md §4 "Registry"): `*.yaml`/`*.yml` files with a
//! top-level `agents:` list plus inline entries, validated as a whole and swapped
//! atomically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{json, Map, Value};

/// Default input/output modes of an agent.
pub(crate) const DEFAULT_MODES: [&str; 2] = ["text/plain", "application/json"];
/// Timeout used when an agent has none (or 0).
pub(crate) const DEFAULT_TIMEOUT_S: u64 = 300;

/// One agent: an entry actor exposed over A2A.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agent {
    pub name: String,
    pub actor: String,
    pub description: String,
    /// Seconds; 0 is replaced by [`DEFAULT_TIMEOUT_S`] when used.
    pub timeout: u64,
    pub streaming: bool,
    /// Skills as card objects (`id`, `name`, `description`, `tags`, …).
    pub skills: Vec<Value>,
    pub input_modes: Vec<String>,
    pub output_modes: Vec<String>,
}

impl Agent {
    /// The task timeout in seconds (0 → 300).
    pub fn timeout_s(&self) -> u64 {
        if self.timeout == 0 {
            DEFAULT_TIMEOUT_S
        } else {
            self.timeout
        }
    }

    /// Whether this agent owns a skill with id `skill`.
    fn has_skill(&self, skill: &str) -> bool {
        self.skills
            .iter()
            .any(|s| s.get("id").and_then(Value::as_str) == Some(skill))
    }
}

/// Where the agents come from, and the current validated set.
pub(crate) struct Registry {
    dir: Option<PathBuf>,
    inline: Vec<Value>,
    current: RwLock<Arc<Vec<Agent>>>,
    /// Last load error reported, so a broken file is not re-logged every poll.
    last_error: RwLock<Option<String>>,
}

impl Registry {
    /// Loads once; the error names the file (or "inline agents") and the problem.
    pub fn open(dir: Option<PathBuf>, inline: Vec<Value>) -> Result<Self, String> {
        let agents = load(dir.as_deref(), &inline)?;
        Ok(Registry {
            dir,
            inline,
            current: RwLock::new(Arc::new(agents)),
            last_error: RwLock::new(None),
        })
    }

    /// The current agents.
    pub fn agents(&self) -> Arc<Vec<Agent>> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the sources; on error keeps the current set. Returns whether the set changed.
    pub fn reload(&self) -> bool {
        match load(self.dir.as_deref(), &self.inline) {
            Ok(agents) => {
                self.set_last_error(None);
                if *self.agents() == agents {
                    return false;
                }
                let n = agents.len();
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(agents),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(agents),
                }
                tracing::info!(agents = n, "A2A agent registry reloaded");
                true
            }
            Err(e) => {
                if self.set_last_error(Some(e.clone())) {
                    tracing::warn!(error = %e, "A2A agent registry not reloaded; keeping the previous agents");
                } else {
                    tracing::debug!(error = %e, "A2A agent registry still invalid");
                }
                false
            }
        }
    }

    /// Records the last error; `true` when it differs from the one before.
    fn set_last_error(&self, e: Option<String>) -> bool {
        let mut g = match self.last_error.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let changed = *g != e;
        *g = e;
        changed
    }
}

/// Picks the agent for a request: `preselected` (the `/a2a/{agent}` path) by name,
/// else the `skill` hint by skill id or agent name, else the only agent. The error
/// is the text of the `rejected` status.
pub(crate) fn select(
    agents: &[Agent],
    preselected: Option<&str>,
    skill: Option<&str>,
) -> Result<Agent, String> {
    if let Some(name) = preselected {
        return agents
            .iter()
            .find(|a| a.name == name)
            .cloned()
            .ok_or_else(|| format!("agent \"{name}\" not found"));
    }
    if let Some(skill) = skill {
        return agents
            .iter()
            .find(|a| a.has_skill(skill))
            .or_else(|| agents.iter().find(|a| a.name == skill))
            .cloned()
            .ok_or_else(|| format!("skill \"{skill}\" not found"));
    }
    if let [only] = agents {
        return Ok(only.clone());
    }
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    Err(format!(
        "skill not specified. Available agents: [{}]",
        names.join(", ")
    ))
}

/// Reads every registry file (sorted by name) and the inline entries.
fn load(dir: Option<&Path>, inline: &[Value]) -> Result<Vec<Agent>, String> {
    let mut agents = Vec::new();
    if let Some(dir) = dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: cannot read the folder: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                // Hidden entries are ConfigMap bookkeeping (`..data`), not registries.
                let hidden = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'));
                !hidden
                    && p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| x == "yaml" || x == "yml")
            })
            .collect();
        files.sort();
        for file in files {
            let src = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{src}: cannot read: {e}"))?;
            let doc: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_yaml::from_str(&text).map_err(|e| format!("{src}: invalid YAML: {e}"))?
            };
            // Files without `agents:` belong to something else (e.g. MCP tools).
            let Some(list) = doc.get("agents") else {
                continue;
            };
            let Value::Array(list) = list else {
                return Err(format!("{src}: `agents` must be a list"));
            };
            for (i, entry) in list.iter().enumerate() {
                agents.push(parse_agent(entry).map_err(|e| format!("{src}: agents[{i}]: {e}"))?);
            }
        }
    }
    for (i, entry) in inline.iter().enumerate() {
        agents.push(parse_agent(entry).map_err(|e| format!("inline agents[{i}]: {e}"))?);
    }
    let mut seen = HashSet::new();
    for a in &agents {
        if !seen.insert(a.name.as_str()) {
            return Err(format!(
                "agent name \"{}\" is declared twice; names must be unique",
                a.name
            ));
        }
    }
    Ok(agents)
}

fn string_field(o: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn modes(o: &Map<String, Value>, keys: [&str; 2]) -> Result<Vec<String>, String> {
    let Some((key, v)) = keys.iter().find_map(|k| o.get(*k).map(|v| (*k, v))) else {
        return Ok(DEFAULT_MODES.iter().map(|s| (*s).to_owned()).collect());
    };
    let list = v
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|m| m.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("`{key}` must be a list of MIME types"))?;
    Ok(list)
}

fn parse_agent(entry: &Value) -> Result<Agent, String> {
    let Value::Object(o) = entry else {
        return Err("an agent must be a mapping with `name` and `actor`".into());
    };
    let name = string_field(o, "name")?
        .filter(|s| !s.is_empty())
        .ok_or("`name` is required")?;
    let actor = string_field(o, "actor")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("agent \"{name}\": `actor` (the entry actor) is required"))?;
    let description = string_field(o, "description")?.unwrap_or_default();
    let timeout = match o.get("timeout") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            format!("agent \"{name}\": `timeout` must be a whole number of seconds")
        })?,
    };
    let streaming = match o.get("streaming") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(format!(
                "agent \"{name}\": `streaming` must be true or false"
            ))
        }
    };
    let skills = match o.get("skills") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, s)| skill(s).map_err(|e| format!("agent \"{name}\": skills[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err(format!("agent \"{name}\": `skills` must be a list")),
    };
    let input_modes =
        modes(o, ["inputModes", "input_modes"]).map_err(|e| format!("agent \"{name}\": {e}"))?;
    let output_modes =
        modes(o, ["outputModes", "output_modes"]).map_err(|e| format!("agent \"{name}\": {e}"))?;
    Ok(Agent {
        name,
        actor,
        description,
        timeout,
        streaming,
        skills,
        input_modes,
        output_modes,
    })
}

/// A skill as a card object: `id` required; `name` defaults to the id, `description`
/// to "" and `tags` to [] (the card schema requires all four).
fn skill(v: &Value) -> Result<Value, String> {
    let Value::Object(o) = v else {
        return Err("a skill must be a mapping with `id`".into());
    };
    let id = string_field(o, "id")?
        .filter(|s| !s.is_empty())
        .ok_or("`id` is required")?;
    let mut out = o.clone();
    if !matches!(out.get("name"), Some(Value::String(_))) {
        out.insert("name".into(), Value::String(id.clone()));
    }
    if !matches!(out.get("description"), Some(Value::String(_))) {
        out.insert("description".into(), Value::from(""));
    }
    if !matches!(out.get("tags"), Some(Value::Array(_))) {
        out.insert("tags".into(), json!([]));
    }
    for (snake, camel) in [
        ("input_modes", "inputModes"),
        ("output_modes", "outputModes"),
    ] {
        if let Some(v) = out.remove(snake) {
            out.entry(camel).or_insert(v);
        }
    }
    Ok(Value::Object(out))
}

/// The card's skills: every agent's skills (first id wins), an agent without skills
/// contributing `{id: name, name, description}`.
pub(crate) fn card_skills(agents: &[Agent]) -> Vec<Value> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in agents {
        let own: Vec<Value> = if a.skills.is_empty() {
            vec![json!({"id": a.name, "name": a.name, "description": a.description, "tags": []})]
        } else {
            a.skills.clone()
        };
        for s in own {
            let id = s
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if seen.insert(id) {
                out.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn agent(v: Value) -> Agent {
        parse_agent(&v).unwrap()
    }

    #[test]
    fn parse_defaults_and_validation() {
        let a = agent(json!({"name": "r", "actor": "start-r"}));
        assert_eq!(a.timeout_s(), 300);
        assert!(!a.streaming);
        assert_eq!(a.input_modes, DEFAULT_MODES);
        let a = agent(
            json!({"name": "r", "actor": "a", "timeout": 30, "streaming": true,
            "skills": [{"id": "s1"}], "inputModes": ["application/json"]}),
        );
        assert_eq!(a.timeout_s(), 30);
        assert_eq!(
            a.skills[0],
            json!({"id": "s1", "name": "s1", "description": "", "tags": []})
        );
        assert_eq!(a.input_modes, ["application/json"]);
        for (bad, want) in [
            (json!({"actor": "a"}), "`name` is required"),
            (json!({"name": "x"}), "`actor`"),
            (json!({"name": "x", "actor": "a", "timeout": -1}), "timeout"),
            (
                json!({"name": "x", "actor": "a", "streaming": "yes"}),
                "streaming",
            ),
            (
                json!({"name": "x", "actor": "a", "skills": [{"name": "n"}]}),
                "skills[0]",
            ),
            (
                json!({"name": "x", "actor": "a", "inputModes": "text"}),
                "inputModes",
            ),
            (json!("x"), "mapping"),
        ] {
            let e = parse_agent(&bad).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn selection() {
        let agents = vec![
            agent(json!({"name": "research", "actor": "a", "skills": [{"id": "web"}]})),
            agent(json!({"name": "sum", "actor": "b"})),
        ];
        assert_eq!(select(&agents, None, Some("web")).unwrap().name, "research");
        assert_eq!(select(&agents, None, Some("sum")).unwrap().name, "sum");
        assert_eq!(
            select(&agents, None, Some("x")).unwrap_err(),
            "skill \"x\" not found"
        );
        assert_eq!(
            select(&agents, None, None).unwrap_err(),
            "skill not specified. Available agents: [research, sum]"
        );
        assert_eq!(
            select(&agents, Some("sum"), Some("web")).unwrap().name,
            "sum"
        );
        assert!(select(&agents, Some("nope"), None).is_err());
        assert_eq!(select(&agents[..1], None, None).unwrap().name, "research");
    }

    #[test]
    fn load_files_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "agents:\n  - {name: one, actor: a1}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("tools.yml"), "tools: []\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "agents: [").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "agents: [").unwrap();
        let inline = vec![json!({"name": "two", "actor": "a2"})];
        let agents = load(Some(dir.path()), &inline).unwrap();
        assert_eq!(
            agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );

        std::fs::write(
            dir.path().join("b.yml"),
            "agents:\n  - {name: one, actor: x}\n",
        )
        .unwrap();
        assert!(load(Some(dir.path()), &[]).unwrap_err().contains("twice"));
        std::fs::write(dir.path().join("b.yml"), "agents: [\n").unwrap();
        let e = load(Some(dir.path()), &[]).unwrap_err();
        assert!(e.contains("b.yml") && e.contains("invalid YAML"), "{e}");
        std::fs::write(dir.path().join("b.yml"), "agents:\n  - {name: z}\n").unwrap();
        let e = load(Some(dir.path()), &[]).unwrap_err();
        assert!(e.contains("b.yml: agents[0]") && e.contains("actor"), "{e}");
    }

    #[test]
    fn skills_union() {
        let agents = vec![
            agent(json!({"name": "r", "actor": "a", "description": "R",
                "skills": [{"id": "web", "name": "Web"}, {"id": "x"}]})),
            agent(json!({"name": "s", "actor": "b", "description": "S"})),
            agent(json!({"name": "t", "actor": "c", "skills": [{"id": "web"}]})),
        ];
        let skills = card_skills(&agents);
        let ids: Vec<&str> = skills.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["web", "x", "s"]);
        assert_eq!(skills[0]["name"], "Web");
        assert_eq!(skills[2]["description"], "S");
    }
}
