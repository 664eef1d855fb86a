//! `perseus run` when the load generator is the bottleneck: the flag reaches the JSON and the
//! summary, memory stays bounded, and a light run is never flagged. And when the target is: drops
//! its server caused are said to be its own, not the client's.

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

#[path = "support/cli.rs"]
mod cli;
use cli::{check_schema, command, serial, tmp};

#[path = "support/standalone.rs"]
mod standalone;
use standalone::Standalone;

/// Peak resident memory a run that falls behind may reach: the client alone against a standalone
/// server, and the whole process (client and its embedded emulator, whose queue an overloaded GPU
/// fills) in the run a user makes by default.
const MAX_PEAK_RSS_KB: u64 = 300 * 1024;

/// Batch-8 ResNet-50 (4.8 MB a request) at 5,000/s: far more than this machine can send, or the
/// emulated T4 serve.
const STARVED: &str = "model = \"resnet50\"\nrate = 5000\narrival = \"constant\"\nbatch = 8\n\
                       sla = { latency_ms = 100, percentile = 95 }";

fn session(dir: &Path, tenant: &str) -> String {
    session_on(dir, "emulate = \"t4\"", tenant)
}

fn session_on(dir: &Path, target: &str, tenant: &str) -> String {
    let path = dir.join("session.toml");
    let text = format!(
        "name = \"client-bound\"\nwindow = \"2s\"\n[target]\n{target}\n\
         [cost]\nusd_per_hour = 1.0\n[[tenant]]\n{tenant}\n"
    );
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The peak RSS (VmHWM, kB) the process reported last before it exited.
fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `perseus run` on a session, sampling the child's peak RSS while it runs.
fn run(dir: &Path, session: &str) -> (Value, String, Option<u64>) {
    let json = dir.join("out.json");
    let mut child = command(
        &[
            "run",
            session,
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ],
        dir,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("perseus runs");
    let pid = child.id();
    let mut peak = None;
    let mut stdout = String::new();
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = Some(kb);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stdout.push_str(&reader.join().unwrap_or_default());
    assert!(status.success(), "status {status:?}\n{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_schema(&r);
    (r, stdout, peak)
}

/// The peak RSS is under the bound (where /proc tells it).
fn assert_bounded(peak: Option<u64>) {
    if cfg!(target_os = "linux") {
        let peak = peak.expect("peak RSS read from /proc");
        assert!(
            peak < MAX_PEAK_RSS_KB,
            "peak RSS {} MB over the {} MB bound",
            peak / 1024,
            MAX_PEAK_RSS_KB / 1024
        );
    }
}

/// The run and its tenant are flagged, the summary says so, and the peak RSS is under the bound.
fn assert_flagged_and_bounded(r: &Value, stdout: &str, peak: Option<u64>) {
    let run_flag = &r["client_bound"];
    assert!(run_flag.is_object(), "run flagged: {r}");
    let tenant = &r["tenants"][0]["client_bound"];
    assert!(tenant.is_object(), "tenant flagged: {r}");
    let reasons: Vec<&str> = tenant["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!reasons.is_empty(), "{tenant}");
    assert!(
        stdout.contains("warning: the load generator was the bottleneck"),
        "{stdout}"
    );
    assert!(stdout.contains("resnet50: client"), "{stdout}");
    assert_bounded(peak);
}

#[test]
fn a_starved_client_is_flagged_and_stays_bounded_in_memory() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let server = Standalone::spawn(&["--gpu", "t4", "--models", "resnet50"]);
    let s = session_on(
        dir.path(),
        &format!("triton = \"{}\"", server.grpc),
        STARVED,
    );
    let (r, stdout, peak) = run(dir.path(), &s);
    assert_flagged_and_bounded(&r, &stdout, peak);
}

/// The default: the embedded emulator over shared memory, whose queue is in the same process. A
/// queued request holds a reference to the tenant's region, not a copy of its tensor. Over shared
/// memory the client sends this load with CPU to spare and the emulated T4 cannot serve it: the
/// bound fills with requests the server holds, so the run says the target is saturated and does
/// not blame the client for those drops.
#[test]
fn a_saturated_run_on_the_embedded_emulator_is_the_targets_and_stays_bounded_in_memory() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let s = session(dir.path(), STARVED);
    let (r, stdout, peak) = run(dir.path(), &s);
    let tenant = &r["tenants"][0];
    let saturated = &tenant["saturated"];
    assert!(saturated.is_object(), "tenant saturated: {r}");
    assert!(
        saturated["dropped_share"].as_f64().unwrap() > 0.01,
        "{saturated}"
    );
    let (server, service) = (
        saturated["server_ms"].as_f64().unwrap(),
        saturated["service_ms"].as_f64().unwrap(),
    );
    assert!(server >= 0.8 * service, "{saturated}");
    // A busy machine may still be late on its own account, but the drops are not the client's.
    let client_reasons = tenant["client_bound"]["reasons"].as_array().cloned();
    assert!(
        !client_reasons
            .unwrap_or_default()
            .iter()
            .any(|reason| reason == "dropped"),
        "{tenant}"
    );
    assert!(
        stdout.contains("warning: the target was saturated"),
        "{stdout}"
    );
    assert!(stdout.contains("resnet50: target saturated"), "{stdout}");
    assert_bounded(peak);
}

#[test]
fn a_light_run_is_not_flagged() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let s = session(
        dir.path(),
        "model = \"mobilenet_v2\"\nrate = 20\nsla = { latency_ms = 100, percentile = 95 }",
    );
    let (r, stdout, _) = run(dir.path(), &s);
    assert!(r["client_bound"].is_null(), "{r}");
    assert!(r["tenants"][0]["client_bound"].is_null(), "{r}");
    assert!(r["tenants"][0]["saturated"].is_null(), "{r}");
    assert!(!stdout.contains("warning"), "{stdout}");
}
