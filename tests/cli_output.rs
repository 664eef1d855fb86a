//! The real binary where its output can go wrong: signals mid-run, `-` for stdout, full devices,
//! closed pipes, unwritable paths, and error messages (each cause once, control characters
//! escaped).

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/cli.rs"]
mod cli;
use cli::{check_schema, command, perseus, serial, text, tmp};

const MODELS: [&str; 2] = ["simple", "mobilenet_v2"];

/// Two light tenants: these tests are about where results go, so the run should succeed even on
/// a busy machine.
fn light_session(dir: &Path) -> String {
    let path = dir.join("light.toml");
    std::fs::write(
        &path,
        "name = \"light\"\n\
         [[tenant]]\nmodel = \"simple\"\nrate = 50\n\
         [[tenant]]\nmodel = \"mobilenet_v2\"\nrate = 10\nsla = { latency_ms = 1000, percentile = 95 }\n",
    )
    .expect("session written");
    path.to_str().expect("a UTF-8 temp path").to_string()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_panic(out: &std::process::Output) {
    let err = stderr_of(out);
    assert!(
        out.status.code() != Some(101) && !err.contains("panicked"),
        "{}",
        text(out)
    );
}

fn read_json(path: &Path) -> Value {
    let body = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}\n{body}", path.display()))
}

/// Waits until the child's recording shows it has measured for a while, so a signal lands
/// mid-measurement whatever the machine's speed.
fn wait_until_measuring(child: &mut Child, data_dir: &Path) {
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("perseus run ended before the signal: {status}");
        }
        let measured = std::fs::read_dir(data_dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .flat_map(|t| {
                t.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter_map(|v| v["measured_s"].as_f64())
                    .collect::<Vec<_>>()
            })
            .fold(0.0_f64, f64::max);
        if measured >= 1.5 {
            return;
        }
        assert!(Instant::now() < give_up, "the run never started measuring");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
#[test]
fn a_signal_stops_the_run_and_reports_what_was_measured() {
    let _one_at_a_time = serial();
    for signal in ["INT", "TERM"] {
        let dir = tmp();
        let session = light_session(dir.path());
        let json = dir.path().join("out.json");
        let mut child = command(
            &[
                "run",
                &session,
                "--duration",
                "10m",
                "--warmup",
                "1s",
                "--record",
                "--json",
                json.to_str().unwrap(),
            ],
            dir.path(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perseus starts");
        wait_until_measuring(&mut child, dir.path());
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let out = child.wait_with_output().expect("perseus ends");
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for model in MODELS {
            assert!(
                stdout.contains(model),
                "SIG{signal}: summary names {model}:\n{stdout}"
            );
        }
        assert!(
            stderr_of(&out).contains(&format!("interrupted by SIG{signal}")),
            "{}",
            text(&out)
        );
        let r = read_json(&json);
        check_schema(&r);
        let measured = cli::num(&r["duration_s"], "duration_s");
        assert!((1.0..600.0).contains(&measured), "measured {measured}s");
        let tenants = r["tenants"].as_array().unwrap();
        assert!(tenants.iter().all(|t| t["sent"].as_u64() > Some(0)), "{r}");
        assert!(tenants.iter().any(|t| t["ok"].as_u64() > Some(0)), "{r}");
    }
}

#[test]
fn dash_sends_json_or_csv_to_stdout_and_the_summary_to_stderr() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let session = light_session(dir.path());
    let csv = dir.path().join("out.csv");
    let run = ["run", &session, "--duration", "2s", "--warmup", "1s"];
    let mut args = run.to_vec();
    args.extend(["--json", "-", "--csv", csv.to_str().unwrap()]);
    let out = perseus(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let r: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{}", text(&out)));
    check_schema(&r);
    let err = stderr_of(&out);
    for model in MODELS {
        assert!(
            err.contains(model),
            "the summary on stderr names {model}:\n{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        1 + 2
    );

    let mut args = run.to_vec();
    args.extend(["--csv", "-"]);
    let out = perseus(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let rows = String::from_utf8_lossy(&out.stdout);
    assert_eq!(rows.lines().count(), 1 + 2, "only CSV on stdout:\n{rows}");
    assert!(rows.starts_with("session,model,"), "{rows}");
    assert!(
        dir.path()
            .read_dir()
            .unwrap()
            .all(|e| e.unwrap().file_name() != "-")
    );

    let out = perseus(&["run", &session, "--json", "-", "--csv", "-"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_or_closed_stdout_is_reported_and_the_files_are_still_written() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let session = light_session(dir.path());
    let json = dir.path().join("out.json");
    let args = [
        "run",
        &session,
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--json",
        json.to_str().unwrap(),
    ];
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = command(&args, dir.path())
        .stdout(full)
        .output()
        .expect("perseus runs");
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr_of(&out).contains("stdout"), "{}", text(&out));
    check_schema(&read_json(&json));

    std::fs::remove_file(&json).unwrap();
    let mut child = command(&args, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perseus starts");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("perseus ends");
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    check_schema(&read_json(&json));

    let catalog = command(&["catalog"], dir.path())
        .stdout(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .output()
        .expect("perseus runs");
    assert_no_panic(&catalog);
    assert_eq!(catalog.status.code(), Some(1), "{}", text(&catalog));
}

#[cfg(target_os = "linux")]
#[test]
fn a_write_that_fails_at_the_end_still_writes_the_other_file() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let session = light_session(dir.path());
    let csv = dir.path().join("out.csv");
    let out = perseus(
        &[
            "run",
            &session,
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--json",
            "/dev/full",
            "--csv",
            csv.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_no_panic(&out);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr_of(&out).contains("cannot write /dev/full"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap().lines().count(),
        1 + 2
    );
    for model in MODELS {
        assert!(String::from_utf8_lossy(&out.stdout).contains(model));
    }
}

#[test]
fn bad_destinations_and_inputs_are_refused_before_the_run() {
    let dir = tmp();
    let session = light_session(dir.path());
    let missing = dir.path().join("no-such-dir").join("out.json");
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "name = \"nothing\"\n").unwrap();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    let cases: [(Vec<&str>, &str); 6] = [
        (vec!["--json", missing.to_str().unwrap()], "no-such-dir"),
        (
            vec!["--csv", dir.path().to_str().unwrap()],
            "is a directory",
        ),
        (
            vec!["--tls-ca", ca.to_str().unwrap()],
            "--tls-ca applies to a real Triton",
        ),
        (
            vec!["--tls-ca", "no-such-ca.pem", "--triton", "localhost:1"],
            "no-such-ca.pem",
        ),
        (
            vec!["--metrics", "http://localhost:8002/metrics"],
            "--metrics applies to a real Triton",
        ),
        (vec!["--gpu", "0"], "--gpu applies to a real Triton"),
    ];
    for (extra, says) in cases {
        let mut args = vec!["run", &session, "--duration", "1s"];
        args.extend(extra.iter().copied());
        let out = perseus(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(stderr_of(&out).contains(says), "{extra:?}: {}", text(&out));
        assert!(
            out.stdout.is_empty(),
            "{extra:?}: nothing ran: {}",
            text(&out)
        );
    }
    assert!(!missing.parent().unwrap().exists());
    let out = perseus(&["run", empty.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr_of(&out).contains("empty.toml: no tenants"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_config_tick_longer_than_the_sessions_window_is_refused_with_the_window_line() {
    let dir = tmp();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "tick = \"20s\"\n").unwrap();
    let session = dir.path().join("short.toml");
    std::fs::write(
        &session,
        "name = \"short\"\nwindow = \"5s\"\n[[tenant]]\nmodel = \"simple\"\nrate = 5\n",
    )
    .unwrap();
    let out = command(&["run", session.to_str().unwrap()], dir.path())
        .env("PERSEUS_CONFIG", &config)
        .output()
        .expect("perseus runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr_of(&out).contains(&format!(
            "{}:2:10: window: the window (5s) must be at least the tick your config file sets (20s)",
            session.display()
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn errors_give_each_cause_once() {
    let dir = tmp();
    let config = dir.path().join("missing-config.toml");
    let out = command(&["catalog"], dir.path())
        .env("PERSEUS_CONFIG", &config)
        .output()
        .expect("perseus runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: {}: cannot read config file: No such file or directory (os error 2)\n",
            config.display()
        )
    );
    let recording = dir.path().join("missing.jsonl");
    let out = perseus(&["replay", recording.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        stderr_of(&out),
        format!(
            "error: reading the recording: {}: No such file or directory (os error 2)\n",
            recording.display()
        )
    );
}

#[test]
fn control_characters_from_a_session_reach_the_terminal_escaped() {
    let dir = tmp();
    let session = dir.path().join("evil.toml");
    std::fs::write(
        &session,
        "name = \"x\"\n[[tenant]]\nmodel = \"resnet50\\u001b[2J\\u001b]0;owned\\u0007\"\nrate = 1\n",
    )
    .unwrap();
    let out = perseus(&["run", session.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        !out.stderr.iter().any(|b| *b == 0x1b || *b == 0x07),
        "raw control bytes on stderr: {:?}",
        out.stderr
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("'resnet50\\u{1b}[2J\\u{1b}]0;owned\\u{7}'"),
        "{err}"
    );
}
