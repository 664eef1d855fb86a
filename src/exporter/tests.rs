use std::collections::BTreeMap;

use super::*;
use crate::vocab::snapshot::{
    ConnState, Connection, GpuView, History, LatencyBuckets, Phase, Reading, SoloPeak, Source,
    TargetInfo, TargetKind, TenantView, Totals, WindowStats,
};
use crate::vocab::spec::{Load, Sla};

fn tenant(id: u32, model: &str, ok: u64) -> TenantView {
    // ok completions: half at 4 ms, half at 40 ms (bounds 3–5 ms and 30–40 ms).
    let mut counts = vec![0; crate::vocab::snapshot::LATENCY_BUCKET_BOUNDS_US.len() + 1];
    counts[4] = ok / 2;
    counts[11] = ok - ok / 2;
    TenantView {
        id,
        model: model.into(),
        load: Load::Concurrency(1),
        paused: false,
        batch: 1,
        sla: Sla {
            latency_ms: 25.0,
            percentile: 95.0,
        },
        instances: None,
        dynamic_batching: None,
        max_batch: None,
        window: WindowStats {
            attainment: Some(0.5),
            goodput_per_s: 7.0,
            ..WindowStats::default()
        },
        totals: Totals {
            sent: ok + 1,
            ok,
            errors: 1,
            errors_by_code: BTreeMap::from([("UNAVAILABLE".to_string(), 1)]),
            ok_within_sla: ok / 2,
            latency_buckets: LatencyBuckets {
                counts: counts.clone(),
                sum_ms: (ok / 2) as f64 * 4.0 + (ok - ok / 2) as f64 * 40.0,
            },
            service_latency_buckets: LatencyBuckets {
                counts,
                sum_ms: 1.0,
            },
            ..Totals::default()
        },
        server: None,
        solo_peak: SoloPeak::UNKNOWN,
        setup_error: None,
    }
}

fn snapshot(phase: Phase, tenants: Vec<TenantView>) -> Snapshot {
    Snapshot {
        seq: 1,
        elapsed_s: 1.0,
        measured_s: 1.0,
        phase,
        session: "s".into(),
        target: TargetInfo {
            kind: TargetKind::Emulated,
            address: "127.0.0.1:1".into(),
            gpu: None,
            server_version: None,
            model_control: true,
        },
        connection: Connection {
            state: ConnState::Connected,
            last_error: None,
            retries: 0,
        },
        paused: false,
        window_s: 1.0,
        tick_s: 0.25,
        tenants,
        gpu: GpuView {
            utilization: Some(Reading {
                value: 0.5,
                source: Source::Emulator,
                age_ms: 0,
            }),
            ..GpuView::default()
        },
        cost: None,
        frontier: None,
        capacity: None,
        whatif: None,
        client: Default::default(),
        notices: Vec::new(),
        recording: None,
        recording_error: None,
        replay: None,
        repository: Vec::new(),
        history: Arc::new(History::default()),
    }
}

/// (metric, labels) → value, from the exposition as Prometheus's text parser reads it.
fn parse(text: &str) -> BTreeMap<(String, String), f64> {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(f64::NAN, |b| b.count),
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            ((s.metric, labels.join(",")), value)
        })
        .collect()
}

fn text(figures: Figures) -> String {
    exposition(&encode::registry(Arc::new(Mutex::new(figures)))).unwrap()
}

const RESNET: &str = "model=resnet50,target=default,tenant=resnet50";

#[test]
fn counters_start_with_the_measured_period_and_only_grow() {
    let mut f = Figures::default();
    // Warm-up totals are not the run's: nothing counted, gauges already shown.
    f.update(&snapshot(
        Phase::WarmingUp,
        vec![tenant(0, "resnet50", 500)],
    ));
    let warm = parse(&text(std::mem::take(&mut f)));
    assert_eq!(
        warm.get(&("perseus_requests_ok_total".into(), RESNET.into())),
        None
    );
    assert_eq!(
        warm.get(&("perseus_sla_attainment_ratio".into(), RESNET.into())),
        Some(&0.5)
    );

    let mut f = Figures::default();
    f.update(&snapshot(
        Phase::WarmingUp,
        vec![tenant(0, "resnet50", 500)],
    ));
    let mut last = 0.0;
    // The measured period restarts the totals from zero; the counter carries on.
    for ok in [10, 30, 30, 60] {
        f.update(&snapshot(Phase::Measuring, vec![tenant(0, "resnet50", ok)]));
        let c = f.counters.values().next().unwrap().ok as f64;
        assert!(c >= last, "{c} after {last}");
        last = c;
    }
    assert_eq!(last, 60.0);
    let figures = parse(&text(f));
    let get = |m: &str| {
        *figures
            .get(&(m.to_string(), RESNET.to_string()))
            .unwrap_or_else(|| panic!("{m} in {:?}", figures.keys()))
    };
    assert_eq!(get("perseus_requests_ok_total"), 60.0);
    assert_eq!(get("perseus_requests_sent_total"), 61.0);
    assert_eq!(get("perseus_requests_within_sla_total"), 30.0);
    assert_eq!(get("perseus_latency_seconds_count"), 60.0);
    assert!((get("perseus_latency_seconds_sum") - (30.0 * 0.004 + 30.0 * 0.04)).abs() < 1e-9);
    // The parser reads the buckets as one histogram: its +Inf bucket is the count too.
    assert_eq!(get("perseus_latency_seconds"), 60.0);
}

#[test]
fn histogram_buckets_are_cumulative_and_end_at_the_count() {
    let mut f = Figures::default();
    f.update(&snapshot(
        Phase::Measuring,
        vec![tenant(0, "resnet50", 100)],
    ));
    let h = &f.counters.values().next().unwrap().latency;
    let cumulative = h.cumulative();
    assert!(
        cumulative
            .windows(2)
            .all(|w| w[0].1 <= w[1].1 && w[0].0 < w[1].0)
    );
    assert_eq!(cumulative.last(), Some(&(f64::INFINITY, 100)));
    // ≤ 25 ms (the SLA, a bound): the 4 ms half
    assert_eq!(
        cumulative.iter().find(|(le, _)| *le == 0.025).map(|b| b.1),
        Some(50)
    );
    let body = text(f);
    assert!(body.contains(r#"perseus_latency_seconds_bucket{le="0.025",target="default",tenant="resnet50",model="resnet50"} 50"#), "{body}");
    assert!(body.contains("# TYPE perseus_latency_seconds histogram"));
    assert!(body.contains("# UNIT perseus_latency_seconds seconds"));
}

#[test]
fn a_model_twice_gets_two_series_and_a_removed_tenant_keeps_its_counts() {
    let mut f = Figures::default();
    f.update(&snapshot(
        Phase::Measuring,
        vec![tenant(0, "resnet50", 10), tenant(3, "resnet50", 20)],
    ));
    let names: Vec<&str> = f.counters.keys().map(|k| k.tenant.as_str()).collect();
    assert_eq!(names, ["resnet50", "resnet50#3"]);
    // Tenant 0 removed: its counts stay; its gauges go. Tenant 3 keeps its label.
    f.update(&snapshot(Phase::Measuring, vec![tenant(3, "resnet50", 25)]));
    assert_eq!(f.counters.len(), 2);
    let tenants: Vec<&str> = f.tenants.keys().map(|k| k.tenant.as_str()).collect();
    assert_eq!(tenants, ["resnet50#3"]);
    // A new resnet50 takes the free name and carries its counter on.
    f.update(&snapshot(
        Phase::Measuring,
        vec![tenant(3, "resnet50", 25), tenant(4, "resnet50", 5)],
    ));
    let first = f
        .counters
        .iter()
        .find(|(k, _)| k.tenant == "resnet50")
        .unwrap()
        .1;
    assert_eq!(first.ok, 15);
    assert_eq!(first.errors_by_code.get("UNAVAILABLE"), Some(&2));
}

#[test]
fn errors_carry_their_code_and_targets_their_figures() {
    let mut f = Figures::default();
    f.update(&snapshot(
        Phase::Measuring,
        vec![tenant(0, "mobilenet_v2", 4)],
    ));
    let figures = parse(&text(f));
    let labels = "code=UNAVAILABLE,model=mobilenet_v2,target=default,tenant=mobilenet_v2";
    assert_eq!(
        figures[&(
            "perseus_requests_errors_total".to_string(),
            labels.to_string()
        )],
        1.0
    );
    let target = (
        "perseus_target_connected".to_string(),
        "target=default".to_string(),
    );
    assert_eq!(figures[&target], 1.0);
    let util = (
        "perseus_gpu_utilization_ratio".to_string(),
        "target=default".to_string(),
    );
    assert_eq!(figures[&util], 0.5);
}

#[test]
fn every_declared_family_is_in_the_table() {
    let mut f = Figures::default();
    f.update(&snapshot(Phase::Measuring, vec![tenant(0, "resnet50", 4)]));
    let body = text(f);
    let declared: Vec<(String, String)> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect();
    let table: Vec<(String, String)> = FAMILIES
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(declared, table);
}

#[test]
fn each_target_keeps_its_own_series_and_client_bound_tenants_say_so() {
    let mut f = Figures::default();
    let mut bound = tenant(1 << 20, "resnet50", 10);
    bound.window.client_bound = Some(crate::vocab::snapshot::ClientBound {
        reasons: vec![crate::vocab::snapshot::ClientBoundReason::LateSends],
        behind_ms: 5.0,
        late_share: 0.5,
        dropped_share: 0.0,
        cpu_share: None,
        cores: 2,
    });
    f.update_target(
        "gpu-a",
        &snapshot(Phase::Measuring, vec![tenant(0, "resnet50", 4)]),
    );
    f.update_target("gpu-b", &snapshot(Phase::Measuring, vec![bound]));
    // gpu-a's next snapshot leaves gpu-b's series alone.
    f.update_target(
        "gpu-a",
        &snapshot(Phase::Measuring, vec![tenant(0, "resnet50", 6)]),
    );
    let m = parse(&text(f));
    let a = "model=resnet50,target=gpu-a,tenant=resnet50";
    let b = "model=resnet50,target=gpu-b,tenant=resnet50";
    assert_eq!(m[&("perseus_requests_ok_total".into(), a.into())], 6.0);
    assert_eq!(m[&("perseus_requests_ok_total".into(), b.into())], 10.0);
    assert_eq!(m[&("perseus_client_bound".into(), a.into())], 0.0);
    assert_eq!(m[&("perseus_client_bound".into(), b.into())], 1.0);
    assert_eq!(m[&("perseus_target_saturated".into(), b.into())], 0.0);
    for t in ["gpu-a", "gpu-b"] {
        let key = (
            "perseus_target_connected".to_string(),
            format!("target={t}"),
        );
        assert!(m.contains_key(&key), "{key:?}");
    }
}

#[test]
fn listen_addresses() {
    let local = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    assert_eq!(parse_listen("9464"), Ok(local(9464)));
    assert_eq!(parse_listen("localhost:9464"), Ok(local(9464)));
    assert_eq!(
        parse_listen("0.0.0.0:9464").unwrap().to_string(),
        "0.0.0.0:9464"
    );
    assert_eq!(parse_listen("[::1]:0").unwrap().to_string(), "[::1]:0");
    for bad in [
        "",
        "port",
        "99999",
        "1.2.3.4",
        "host.example:80",
        "1.2.3.4:x",
    ] {
        let e = parse_listen(bad).unwrap_err();
        assert!(e.to_string().contains(&format!("'{bad}'")), "{e}");
    }
}
