//! `crew: fan-in` actors in the mesh file and [`ActorConfig::fan_in`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use troupe_mesh::config::{ActorConfig, ConfigError, CrewActor, MeshConfig};

fn parse(src: &str) -> Result<(MeshConfig, Vec<String>), Vec<ConfigError>> {
    MeshConfig::from_source(Path::new("/mesh/troupe.yaml"), src).map_err(|e| e.0)
}

const WORKER: &str = "  - actor: worker\n    handler: m.work\n";

#[test]
fn a_fan_in_actor_needs_no_handler_and_takes_its_timeout() {
    let src = format!(
        "actors:\n{WORKER}  - actor: fanin-x\n    crew: fan-in\n    fanIn: {{timeout: 30s}}\n  - {{actor: fanin-y, crew: fan-in}}\n"
    );
    let (c, warnings) = parse(&src).map_err(|e| format!("{e:?}")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let x = c.actor("fanin-x").unwrap();
    assert_eq!(
        x.crew,
        Some(CrewActor::FanIn {
            timeout: Duration::from_secs(30)
        })
    );
    assert_eq!(x.handler, "");
    assert_eq!(
        c.actor("fanin-y").unwrap().crew,
        Some(CrewActor::FanIn {
            timeout: troupe_crew::DEFAULT_FANIN_TIMEOUT
        })
    );
    assert_eq!(c.actor("worker").unwrap().crew, None);
}

#[test]
fn wrong_crew_settings_are_located_errors() {
    let cases = [
        (
            "  - {actor: f, crew: x-sink}\n",
            "crew",
            "unknown crew 'x-sink'",
        ),
        (
            "  - {actor: f, crew: fan-in, fanIn: {timeout: soon}}\n",
            "fanIn.timeout",
            "invalid duration",
        ),
        (
            "  - {actor: f, crew: fan-in, fanIn: {timeout: 0s}}\n",
            "fanIn.timeout",
            "must be positive",
        ),
        (
            "  - {actor: f, crew: fan-in, fanIn: {wait: 1s}}\n",
            "fanIn.wait",
            "",
        ),
        (
            "  - {actor: f, handler: m.f, fanIn: {timeout: 1s}}\n",
            "fanIn",
            "add crew: fan-in",
        ),
    ];
    for (actor, field, needle) in cases {
        let src = format!("actors:\n{WORKER}{actor}");
        let e = parse(&src)
            .err()
            .unwrap_or_else(|| panic!("{actor} was accepted"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, format!("actors[1].{field}"), "{actor}");
        assert_eq!(e[0].line, 4, "{actor}");
        assert!(e[0].to_string().contains(needle), "{}", e[0]);
    }
}

#[test]
fn a_handler_on_a_fan_in_actor_is_warned_about() {
    let src = format!("actors:\n{WORKER}  - {{actor: f, crew: fan-in, handler: m.f}}\n");
    let (_, warnings) = parse(&src).map_err(|e| format!("{e:?}")).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no runtime"), "{warnings:?}");
}

#[test]
fn the_constructor_builds_what_the_file_declares() {
    let src =
        format!("actors:\n{WORKER}  - {{actor: fanin-x, crew: fan-in, fanIn: {{timeout: 45s}}}}\n");
    let (c, _) = parse(&src).map_err(|e| format!("{e:?}")).unwrap();
    let read = c.actor("fanin-x").unwrap();
    let built = ActorConfig::fan_in("fanin-x", Some(Duration::from_secs(45)));
    assert_eq!(built.crew, read.crew);
    assert_eq!(built.name, read.name);
    assert_eq!(built.spec, read.spec);
    assert_eq!(
        ActorConfig::fan_in("f", None).crew,
        Some(CrewActor::FanIn {
            timeout: Duration::from_secs(600)
        })
    );
}
