//! Session files: the shipped ones, and table-driven valid/invalid cases under `tests/sessions/`.
//!
//! Each invalid file starts with a `# expect: …` line holding the exact message it must produce
//! (the path in it is the file's path relative to the crate root, as the test passes it).

use std::path::{Path, PathBuf};

use perseus::session::{
    DEMO_SESSION, ModelLookup, StaticModels, fleet_to_toml, fresh_session_path, load_fleet_session,
    load_session, parse_fleet_session, parse_session, save_atomic, to_toml,
};
use perseus::vocab::spec::{Arrival, CostSpec, FleetSpec, Load, RunSpec, TargetSpec, Transport};

/// The emulator catalog's models, as the CLI would look them up.
fn catalog() -> StaticModels {
    [
        ("resnet50", 128),
        ("mobilenet_v2", 128),
        ("inception_v3", 128),
        ("densenet121", 128),
        ("vgg16", 128),
        ("efficientnet_b0", 128),
        ("resnet152", 128),
        ("simple", 8),
    ]
    .into_iter()
    .collect()
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| Path::new(dir).join(p.file_name().unwrap()))
        .collect();
    files.sort();
    files
}

/// Saving and reading back gives the same run: what the TUI's "save session" relies on.
fn assert_round_trips(spec: &RunSpec, file: &Path) {
    let text = to_toml(spec);
    let again = parse_session(&text, file, &catalog()).unwrap_or_else(|e| {
        panic!(
            "{}: to_toml output does not parse: {e}\n{text}",
            file.display()
        )
    });
    assert_eq!(
        &again,
        spec,
        "{}: round trip changed the run\n{text}",
        file.display()
    );
}

#[test]
fn every_shipped_session_parses_and_round_trips() {
    let files = toml_files("sessions");
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "demo.toml",
        "perseus-t4.toml",
        "perseus-p4.toml",
        "bursty.toml",
        "h100-packing.toml",
        "triton-local.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "sessions/{expected} is missing"
        );
    }
    for file in &files {
        let fleet = load_fleet_session(file, &catalog()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            fleet.tenants().next().is_some(),
            "{}: no tenants",
            file.display()
        );
        assert_fleet_round_trips(&fleet, file);
        if !fleet.is_fleet() {
            let spec = load_session(file, &catalog()).unwrap_or_else(|e| panic!("{e}"));
            assert_round_trips(&spec, file);
        }
    }
}

/// As [`assert_round_trips`], for every target of a session.
fn assert_fleet_round_trips(fleet: &FleetSpec, file: &Path) {
    let text = fleet_to_toml(fleet);
    let again = parse_fleet_session(&text, file, &catalog()).unwrap_or_else(|e| {
        panic!(
            "{}: fleet_to_toml output does not parse: {e}\n{text}",
            file.display()
        )
    });
    assert_eq!(
        &again,
        fleet,
        "{}: round trip changed the session\n{text}",
        file.display()
    );
}

#[test]
fn multi_target_sessions_place_each_tenant_on_its_target_and_round_trip() {
    let files = toml_files("tests/sessions/fleet");
    assert!(files.len() >= 3, "too few fleet cases: {files:?}");
    for file in &files {
        let fleet = load_fleet_session(file, &catalog()).unwrap_or_else(|e| panic!("{e}"));
        assert_fleet_round_trips(&fleet, file);
    }
    let fleet = load_fleet_session(
        Path::new("tests/sessions/fleet/two-emulated.toml"),
        &catalog(),
    )
    .unwrap();
    let placed: Vec<(&str, Vec<&str>)> = fleet
        .targets
        .iter()
        .map(|t| {
            (
                t.label(),
                t.spec.tenants.iter().map(|x| x.model.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            ("gpu-a", vec!["resnet50", "inception_v3"]),
            ("gpu-b", vec!["mobilenet_v2"])
        ]
    );
    let (a, b) = (&fleet.targets[0].spec, &fleet.targets[1].spec);
    // Each target has its own price; one that names none takes the session's [cost].
    assert_eq!(a.cost, CostSpec::Instance("aws:g4dn.xlarge".into()));
    assert_eq!(b.cost, CostSpec::UsdPerHour(1.5));
    assert_eq!(b.transport, Some(Transport::Grpc));
    assert_eq!(
        b.target,
        TargetSpec::Emulated {
            gpu: "l4".into(),
            profile: None
        }
    );
    // The session-wide settings are every target's.
    assert!(fleet.targets.iter().all(
        |t| t.spec.name == "two GPUs" && t.spec.duration == std::time::Duration::from_secs(20)
    ));

    // A single [[target]] is a run on one target, named, for every command.
    let one = Path::new("tests/sessions/fleet/one-named.toml");
    let fleet = load_fleet_session(one, &catalog()).unwrap();
    assert!(!fleet.is_fleet());
    assert_eq!(fleet.targets[0].name.as_deref(), Some("only"));
    let spec = load_session(one, &catalog()).unwrap();
    assert_eq!(spec, fleet.targets[0].spec);
}

#[test]
fn a_single_target_session_is_a_fleet_of_one_unnamed_target() {
    let fleet = parse_fleet_session(DEMO_SESSION, Path::new("demo.toml"), &catalog()).unwrap();
    let spec = parse_session(DEMO_SESSION, Path::new("demo.toml"), &catalog()).unwrap();
    assert_eq!(fleet, FleetSpec::single(spec.clone()));
    assert_eq!(fleet.targets[0].label(), "default");
    // And it is written exactly as before.
    assert_eq!(fleet_to_toml(&fleet), to_toml(&spec));
}

#[test]
fn the_embedded_demo_is_three_cnns_on_an_emulated_t4() {
    let spec = parse_session(DEMO_SESSION, Path::new("demo.toml"), &catalog()).unwrap();
    assert_eq!(
        spec.target,
        TargetSpec::Emulated {
            gpu: "t4".into(),
            profile: None
        }
    );
    let models: Vec<&str> = spec.tenants.iter().map(|t| t.model.as_str()).collect();
    assert_eq!(models, ["resnet50", "mobilenet_v2", "inception_v3"]);
    assert!(
        spec.tenants
            .iter()
            .all(|t| matches!(t.load, Load::Rate { .. }))
    );
}

#[test]
fn perseus_sessions_reproduce_the_paper_setup() {
    for (file, gpu) in [
        ("sessions/perseus-t4.toml", "t4"),
        ("sessions/perseus-p4.toml", "p4"),
    ] {
        let spec = load_session(Path::new(file), &catalog()).unwrap();
        assert_eq!(
            spec.target,
            TargetSpec::Emulated {
                gpu: gpu.into(),
                profile: Some("perseus2019".into())
            }
        );
        let models: Vec<&str> = spec.tenants.iter().map(|t| t.model.as_str()).collect();
        assert_eq!(models, ["resnet50", "inception_v3"], "{file}");
        for t in &spec.tenants {
            assert_eq!(
                (t.sla.latency_ms, t.sla.percentile),
                (750.0, 95.0),
                "{file}"
            );
        }
        let db = spec.tenants[0].dynamic_batching.as_ref().unwrap();
        assert_eq!(db.preferred_batch_sizes, [4, 8]);
        assert!(matches!(spec.cost, CostSpec::UsdPerHour(p) if p > 0.0));
    }
}

#[test]
fn trace_arrivals_are_read_relative_to_the_session() {
    let spec = load_session(Path::new("sessions/bursty.toml"), &catalog()).unwrap();
    let trace = spec
        .tenants
        .iter()
        .find_map(|t| match &t.load {
            Load::Rate {
                per_s,
                arrival: Arrival::Trace { path, gaps_us },
            } => Some((*per_s, path.clone(), gaps_us.clone())),
            _ => None,
        })
        .expect("bursty.toml has a trace tenant");
    let (per_s, path, gaps) = trace;
    assert!(path.is_absolute() && path.ends_with("sessions/bursty-gaps.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    assert_eq!(gaps.len(), lines);
    // Without `rate`, the tenant runs at the trace's own mean rate.
    let mean_gap_s = gaps.iter().sum::<u64>() as f64 / gaps.len() as f64 / 1e6;
    assert!((per_s * mean_gap_s - 1.0).abs() < 1e-9);
}

#[test]
fn valid_cases_parse_and_round_trip() {
    let files = toml_files("tests/sessions/valid");
    assert!(files.len() >= 5, "too few valid cases: {files:?}");
    for file in &files {
        let spec = load_session(file, &catalog()).unwrap_or_else(|e| panic!("{e}"));
        assert_round_trips(&spec, file);
    }
}

#[test]
fn invalid_cases_give_their_exact_message() {
    let files = toml_files("tests/sessions/invalid");
    assert!(files.len() >= 20, "too few invalid cases: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be '# expect: …'", file.display()));
        match parse_session(&text, file, &catalog()) {
            Ok(_) => failures.push(format!("{}: parsed, expected: {expected}", file.display())),
            Err(e) if e.to_string() == expected => {}
            Err(e) => failures.push(format!(
                "{}:\n  expected: {expected}\n  got:      {e}",
                file.display()
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn save_atomic_writes_a_session_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec = parse_session(DEMO_SESSION, Path::new("demo.toml"), &catalog()).unwrap();
    let path = dir.path().join("saved").join("mine.toml");
    save_atomic(&spec, &path).unwrap();
    // Overwriting replaces the file whole and leaves no temporary behind.
    save_atomic(&spec, &path).unwrap();
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(load_session(&path, &catalog()).unwrap(), spec);
}

#[test]
fn unreadable_session_file_names_the_file() {
    let e = load_session(Path::new("sessions/no-such-file.toml"), &catalog()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("sessions/no-such-file.toml: cannot read session file"),
        "{e}"
    );
}

#[test]
fn fresh_session_paths_do_not_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let spec = parse_session(DEMO_SESSION, Path::new("demo.toml"), &catalog()).unwrap();
    let first = fresh_session_path(dir.path(), &spec.name);
    save_atomic(&spec, &first).unwrap();
    let second = fresh_session_path(dir.path(), &spec.name);
    assert_ne!(first, second);
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.ends_with(".toml") && !name.contains(' ') && !name.contains(':'),
        "{name}"
    );
}

/// The catalog plus a config file that sets a tick.
struct ConfigTick(std::time::Duration);

impl ModelLookup for ConfigTick {
    fn models(&self, target: &TargetSpec) -> Option<std::collections::BTreeMap<String, u32>> {
        catalog().models(target)
    }
    fn default_tick(&self) -> Option<std::time::Duration> {
        Some(self.0)
    }
}

#[test]
fn the_config_tick_is_the_default_a_session_tick_overrides_and_the_window_bounds() {
    use std::time::Duration;
    let tenant = "[[tenant]]\nmodel = \"simple\"\nrate = 5\n";
    let file = Path::new("s.toml");
    let config = ConfigTick(Duration::from_secs(2));
    let spec = parse_session(tenant, file, &config).unwrap();
    assert_eq!(spec.tick, Duration::from_secs(2));
    let own = format!("tick = \"100ms\"\n{tenant}");
    assert_eq!(
        parse_session(&own, file, &config).unwrap().tick,
        Duration::from_millis(100)
    );
    assert_eq!(
        parse_session(tenant, file, &catalog()).unwrap().tick,
        RunSpec::DEFAULT_TICK
    );
    let long = ConfigTick(Duration::from_secs(20));
    let e = parse_session(tenant, file, &long).unwrap_err().to_string();
    assert_eq!(
        e,
        "s.toml:1:1: window: the default window (10s) must be at least the tick your config \
         file sets (20s); set a longer window"
    );
}
