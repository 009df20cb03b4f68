//! routers.py as a module: header, registry, and the adapters of tool-style actors run by
//! python3 (the routers themselves are compared with native execution in differential.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use troupe_flow::{compile_file, routers_py, CompileOptions};

#[test]
fn routers_py_registers_every_router_and_runs_tool_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let src = "def t(p):\n    p['y'] = summarize(p['text'], n=3)\n    shout(p['text'])\n    if p['y'] == 'hel':\n        p = a(p)\n    return p\n";
    std::fs::write(dir.path().join("flows.py"), src).unwrap();
    std::fs::write(
        dir.path().join("tools.py"),
        "CALLS = []\ndef summarize(text, n=1):\n    return text[:n]\ndef shout(text):\n    CALLS.append(text.upper())\n",
    )
    .unwrap();
    let flows = compile_file(
        &dir.path().join("flows.py"),
        None,
        &CompileOptions::default(),
    )
    .unwrap();
    let text = routers_py(&flows);
    assert!(text.starts_with("# DO NOT EDIT"), "{}", &text[..80]);
    std::fs::write(dir.path().join("routers.py"), &text).unwrap();
    let check = r#"
import routers, tools
assert set(routers.ROUTERS) == {"start-t", "router-t-if-line-4"}, routers.ROUTERS
assert routers.resolve("router-t-if-line-4").__name__ == "router_t_if_line_4"
p = routers.ADAPTERS["summarize"]({"text": "hello"})
assert p == {"text": "hello", "y": "hel"}, p
q = routers.ADAPTERS["shout"]({"text": "hi"})
assert q == {"text": "hi"} and tools.CALLS == ["HI"], (q, tools.CALLS)
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", check])
        .current_dir(dir.path())
        .env("PYTHONPATH", dir.path())
        .env("ASYA_HANDLER_SUMMARIZE", "tools.summarize")
        .env("ASYA_HANDLER_SHOUT", "tools.shout")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
