//! `--metrics-listen` on the real binary: a `perseus run` scraped while it runs, its exposition
//! parsed as Prometheus would, checked against itself, the run's JSON and the Grafana dashboard.

#[path = "support/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use cli::{command, serial, text, tmp};

const SESSION: &str = r#"
name = "exporter"
[target]
emulate = "t4"
[[tenant]]
model = "simple"
rate = 200
arrival = "constant"
sla = { latency_ms = 50, percentile = 95 }
[[tenant]]
model = "simple"
rate = 100
arrival = "constant"
sla = { latency_ms = 50, percentile = 95 }
"#;

/// One plain HTTP/1.1 GET; the body, or `None` while nothing answers.
fn get(addr: &str) -> Option<(String, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| (head.to_string(), body.to_string()))
}

type Samples = BTreeMap<(String, String), f64>;

/// (sample name, sorted labels) → value; histograms under their `_bucket` name by `le`.
fn samples(body: &str) -> Samples {
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF:\n{body}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let mut out = Samples::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let labels = labels.join(",");
        match s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                for b in buckets {
                    let key = format!("{}_bucket", s.metric);
                    out.insert((key, format!("{labels},le={}", b.less_than)), b.count);
                }
            }
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                out.insert((s.metric, labels), v);
            }
            prometheus_parse::Value::Summary(_) => panic!("no summaries are exported"),
        }
    }
    out
}

/// Every family a body declares, from its `# TYPE` lines.
fn declared(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect()
}

struct Scraped {
    bodies: Vec<String>,
    json: serde_json::Value,
}

/// Runs the session with `--metrics-listen 127.0.0.1:0`, scraping until the run ends.
fn scrape_a_run(dir: &Path) -> Scraped {
    let session = dir.join("exporter.toml");
    std::fs::write(&session, SESSION).unwrap();
    let json = dir.join("run.json");
    let args = [
        "run",
        session.to_str().unwrap(),
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
        "--json",
        json.to_str().unwrap(),
    ];
    let mut child = command(&args, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
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
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .expect("an http://ADDR/metrics URL")
        .to_string();
    let mut bodies = Vec::new();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(120) {
        if let Some((head, body)) = get(&addr) {
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/openmetrics-text"),
                "{head}"
            );
            bodies.push(body);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = child.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    let json = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    Scraped { bodies, json }
}

const SIMPLE: &str = "model=simple,target=default,tenant=simple";
const SIMPLE_1: &str = "model=simple,target=default,tenant=simple#1";

#[test]
fn a_scraped_run_is_consistent_with_itself_its_json_and_the_dashboard() {
    let _serial = serial();
    let dir = tmp();
    let run = scrape_a_run(dir.path());
    let scrapes: Vec<Samples> = run.bodies.iter().map(|b| samples(b)).collect();
    assert!(scrapes.len() >= 5, "scraped {} times", scrapes.len());

    // Counters only grow, scrape after scrape.
    for pair in scrapes.windows(2) {
        for ((name, labels), before) in &pair[0] {
            if name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count") {
                let after = pair[1].get(&(name.clone(), labels.clone()));
                assert!(
                    after.is_some_and(|a| a >= before),
                    "{name}{{{labels}}}: {before} then {after:?}"
                );
            }
        }
    }
    // Within each scrape, a histogram's count is the ok count of the same series.
    for s in &scrapes {
        for tenant in [SIMPLE, SIMPLE_1] {
            let ok = s.get(&("perseus_requests_ok_total".into(), tenant.into()));
            for h in [
                "perseus_latency_seconds_count",
                "perseus_service_latency_seconds_count",
            ] {
                assert_eq!(s.get(&(h.into(), tenant.into())), ok, "{h} {tenant}");
            }
        }
    }
    // The last scrape saw most of the run, and never more than its JSON.
    let last = scrapes.last().unwrap();
    let tenants = run.json["tenants"].as_array().unwrap();
    for (labels, t) in [SIMPLE, SIMPLE_1].iter().zip(tenants) {
        let ok = t["ok"].as_f64().unwrap();
        let scraped = last[&("perseus_requests_ok_total".to_string(), labels.to_string())];
        assert!(
            scraped <= ok && scraped >= ok * 0.5,
            "{labels}: scraped {scraped}, JSON {ok}"
        );
    }
    let sla_bucket = format!("{SIMPLE},le=0.05");
    assert!(last[&("perseus_latency_seconds_bucket".to_string(), sla_bucket)] > 0.0);
    assert_eq!(
        last[&(
            "perseus_target_connected".to_string(),
            "target=default".to_string()
        )],
        1.0
    );

    let families = declared(run.bodies.last().unwrap());
    let table: Vec<String> = perseus::exporter::FAMILIES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert_eq!(families, table, "the README's table is what is served");
    dashboard_queries_only_exposed_metrics(&families);
}

/// Every metric the Grafana dashboard queries is one the exporter declares.
fn dashboard_queries_only_exposed_metrics(families: &[String]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/perseus.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_queries(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let mut used = std::collections::BTreeSet::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| families.iter().any(|d| d == f))
                .unwrap_or(&name)
                .to_string();
            assert!(
                families.contains(&family),
                "the dashboard queries {name}, which is not exposed: {expr}"
            );
            used.insert(family);
        }
    }
    for wanted in [
        "perseus_requests_ok",
        "perseus_latency_seconds",
        "perseus_sla_attainment_ratio",
        "perseus_gpu_utilization_ratio",
        "perseus_cost_usd_per_hour",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

/// Every `expr` of a panel and `query` of a variable, anywhere in the dashboard.
fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s))
                        if s.contains("perseus_") =>
                    {
                        out.push(s.clone())
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_queries(i, out)),
        _ => {}
    }
}

/// The `perseus_…` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("perseus_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn an_unusable_metrics_address_is_bad_input() {
    let dir = tmp();
    // Taken: another listener holds the port.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let taken = command(
        &[
            "run",
            "sessions/demo.toml",
            "--metrics-listen",
            &port.to_string(),
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    assert_eq!(taken.status.code(), Some(2), "{}", text(&taken));
    let stderr = String::from_utf8_lossy(&taken.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for metrics on 127.0.0.1:{port}")),
        "{stderr}"
    );
    // Not an address at all: clap names the flag and the value.
    let bad = command(
        &[
            "run",
            "sessions/demo.toml",
            "--metrics-listen",
            "metrics.example",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("--metrics-listen")
            && stderr.contains("'metrics.example' is not a listen address"),
        "{stderr}"
    );
}
