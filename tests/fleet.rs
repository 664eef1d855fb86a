//! One session, three targets: two standalone emulators playing different GPUs and an embedded
//! one, run headless with `--json` and scraped through `--metrics-listen` while it runs. Killing
//! one standalone emulator mid-run leaves the other two measuring; restarted on the same port, its
//! target reconnects and completes requests again before the run ends.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/standalone.rs"]
mod standalone;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use cli::{command, serial, tmp};
use standalone::Standalone;

const TARGETS: [&str; 3] = ["gpu-a", "gpu-b", "local"];

/// The body of one `/metrics` scrape, or `None` while nothing answers.
fn scrape(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// `perseus_requests_ok` per target label.
fn completions(addr: &str) -> Option<BTreeMap<String, f64>> {
    let body = scrape(addr)?;
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).ok()?;
    let mut out = BTreeMap::new();
    for s in parsed.samples {
        if s.metric != "perseus_requests_ok" && s.metric != "perseus_requests_ok_total" {
            continue;
        }
        let value = match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        if let Some(t) = s.labels.get("target") {
            *out.entry(t.to_string()).or_default() += value;
        }
    }
    Some(out)
}

/// Scrapes until `done` holds for the completions (or the run ends, or a generous cap passes, so
/// that a broken build fails instead of hanging); the last completions seen.
fn wait_for(
    addr: &str,
    run: &mut Child,
    mut done: impl FnMut(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let cap = Instant::now() + Duration::from_secs(180);
    let mut last = BTreeMap::new();
    while Instant::now() < cap && run.try_wait().unwrap().is_none() {
        if let Some(c) = completions(addr) {
            last = c;
            if done(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    last
}

fn ok(c: &BTreeMap<String, f64>, target: &str) -> f64 {
    c.get(target).copied().unwrap_or(0.0)
}

fn session(a: &str, b: &str) -> String {
    let mut s = format!(
        r#"
name = "fleet"
[[target]]
name = "gpu-a"
triton = "{a}"
usd_per_hour = 1.0
[[target]]
name = "gpu-b"
triton = "{b}"
usd_per_hour = 2.0
[[target]]
name = "local"
emulate = "t4"
usd_per_hour = 0.5
"#
    );
    for t in TARGETS {
        s.push_str(&format!(
            "[[tenant]]\nmodel = \"simple\"\ntarget = \"{t}\"\nrate = 40\narrival = \"constant\"\n\
             sla = {{ latency_ms = 500, percentile = 95 }}\ndeadline = \"2s\"\n"
        ));
    }
    s
}

#[test]
fn a_killed_target_leaves_the_others_measuring_and_reconnects_when_it_returns() {
    let _serial = serial();
    let dir = tmp();
    let a = Standalone::spawn(&["--gpu", "t4", "--models", "simple"]);
    let mut b = Standalone::spawn(&["--gpu", "l4", "--models", "simple"]);
    let b_addr = b.grpc.clone();
    let file = dir.path().join("fleet.toml");
    std::fs::write(&file, session(&a.grpc, &b_addr)).unwrap();
    let json = dir.path().join("run.json");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--duration",
        "40s",
        "--warmup",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
        "--json",
        json.to_str().unwrap(),
    ];
    let mut run = command(&args, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = run.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let url = rx
        .iter()
        .find_map(|l| l.strip_prefix("metrics  ").map(str::to_string))
        .expect("the run says where it serves metrics");
    let metrics = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .expect("an http://ADDR/metrics URL")
        .to_string();

    // Every target measures.
    let before = wait_for(&metrics, &mut run, |c| {
        TARGETS.iter().all(|t| ok(c, t) > 0.0)
    });
    assert!(
        TARGETS.iter().all(|t| ok(&before, t) > 0.0),
        "every target completes requests: {before:?}"
    );

    // gpu-b dies; the others keep completing requests while it is down.
    b.kill();
    let at_kill = completions(&metrics).expect("the exporter answers");
    let during = wait_for(&metrics, &mut run, |c| {
        ok(c, "gpu-a") > ok(&at_kill, "gpu-a") + 40.0
            && ok(c, "local") > ok(&at_kill, "local") + 40.0
    });
    assert!(
        ok(&during, "gpu-a") > ok(&at_kill, "gpu-a") + 40.0
            && ok(&during, "local") > ok(&at_kill, "local") + 40.0,
        "the other targets keep measuring while gpu-b is down: at the kill {at_kill:?}, then {during:?}"
    );
    let b_down = ok(&during, "gpu-b");

    // gpu-b returns on the same port; its target reconnects on its own and completes again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        if let Some(s) = Standalone::try_spawn(&b_addr, &["--gpu", "l4", "--models", "simple"]) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{b_addr} could not be taken again"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let after = wait_for(&metrics, &mut run, |c| ok(c, "gpu-b") > b_down);
    assert!(
        ok(&after, "gpu-b") > b_down,
        "gpu-b completes requests again after it returns: while down {b_down}, then {after:?}"
    );

    let status = run.wait().unwrap();
    drop(restarted);
    drop(a);
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    check_report(&serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap());
}

/// The v2 JSON: a block per target, named, each a v1 result of its own, and the fleet line.
fn check_report(r: &serde_json::Value) {
    assert_eq!(r["schema"], "perseus.run.v2");
    let targets = r["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, TARGETS);
    let gpus: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["target"]["kind"].as_str())
        .collect();
    assert_eq!(gpus, ["triton", "triton", "emulated"]);
    let mut rate = 0.0;
    for t in targets {
        assert_eq!(t["schema"], "perseus.run.v1", "{t}");
        let tenant = &t["tenants"][0];
        assert!(tenant["ok"].as_u64().unwrap() > 0, "{t}");
        assert!(tenant["ok"].as_u64() <= tenant["sent"].as_u64(), "{t}");
        rate += tenant["achieved_rate"].as_f64().unwrap();
    }
    // gpu-b lost its connection and got it back.
    assert_eq!(targets[1]["connection"]["state"], "connected");
    let fleet = &r["fleet"];
    assert_eq!(fleet["usd_per_hour"].as_f64(), Some(3.5));
    let total = fleet["throughput_per_s"].as_f64().unwrap();
    assert!((total - rate).abs() < 1e-6, "{fleet} vs Σ {rate}");
    let worst = &fleet["worst_sla"];
    assert!(
        TARGETS.contains(&worst["target"].as_str().unwrap()),
        "{fleet}"
    );
    // The worst SLA is the lowest attainment of any tenant.
    let lowest = targets
        .iter()
        .filter_map(|t| t["tenants"][0]["sla"]["attainment"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(worst["attainment"].as_f64(), Some(lowest), "{fleet}");
}
