//! Telemetry against Triton's metrics text, a live (in-test) HTTP endpoint, and this machine's NVML.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use perseus::telemetry::http::{HttpClient, HttpError, HttpUrl};
use perseus::telemetry::{
    DeviceSelector, GpuSummaryAcc, MetricsSource, NvmlChoice, NvmlSource, Telemetry,
    TelemetryConfig, TelemetryError, parse_metrics,
};
use perseus::vocab::snapshot::{GpuView, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FIXTURE: &str = include_str!("fixtures/triton_metrics.txt");
const GPU_A: &str = "GPU-3c0f1b2e-5d7a-4e55-9a0b-0d1e2f3a4b5c";
const GPU_B: &str = "GPU-9f8e7d6c-5b4a-4321-8765-abcdef012345";

/// The fixture with the given series (`name{labels}`) set to new values, as a later scrape would be.
fn with_values(text: &str, changes: &[(&str, f64)]) -> String {
    let mut out: Vec<String> = text.lines().map(str::to_owned).collect();
    for (series, value) in changes {
        let prefix = format!("{series} ");
        let line = out
            .iter_mut()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("{series} not in the fixture"));
        *line = format!("{series} {value}");
    }
    out.join("\n") + "\n"
}

/// A later scrape than the fixture, in which GPU A got busier.
fn later_scrape() -> String {
    with_values(
        FIXTURE,
        &[(&format!("nv_gpu_utilization{{gpu_uuid=\"{GPU_A}\"}}"), 0.91)],
    )
}

#[test]
fn the_fixture_parses_into_gpus() {
    let at = Instant::now();
    let s = parse_metrics(FIXTURE, at, Source::TritonMetrics).unwrap();
    assert_eq!(s.gpus.len(), 2);
    let a = s
        .gpus
        .iter()
        .find(|g| g.uuid.as_deref() == Some(GPU_A))
        .unwrap();
    let b = s
        .gpus
        .iter()
        .find(|g| g.uuid.as_deref() == Some(GPU_B))
        .unwrap();
    let value = |f: Option<perseus::telemetry::Figure>| f.map(|f| f.value);
    assert_eq!(value(a.utilization), Some(0.83));
    assert_eq!(value(a.memory_used_bytes), Some(3_221_225_472.0));
    assert_eq!(value(a.memory_total_bytes), Some(16_106_127_360.0));
    assert_eq!(value(a.power_w), Some(61.93));
    assert_eq!(value(a.power_limit_w), Some(70.0));
    assert_eq!(value(a.energy_j), Some(18_342.5));
    assert_eq!(value(b.utilization), Some(0.0));
    assert_eq!(value(b.memory_used_bytes), Some(268_435_456.0));
    // Triton exports neither SM activity, clock nor temperature: those stay unknown, not zero.
    assert_eq!(
        (a.sm_activity, a.sm_clock_mhz, a.temperature_c),
        (None, None, None)
    );
    let tagged = a.utilization.unwrap();
    assert_eq!((tagged.source, tagged.at), (Source::TritonMetrics, at));
}

#[test]
fn emulator_figures_are_tagged_as_the_emulator() {
    let text = format!(
        "# TYPE nv_gpu_utilization gauge\nnv_gpu_utilization{{gpu_uuid=\"{GPU_A}\"}} 0.5\n\
         # TYPE perseus_emulator_sm_activity gauge\nperseus_emulator_sm_activity 0.375\n"
    );
    let triton = parse_metrics(&text, Instant::now(), Source::TritonMetrics).unwrap();
    assert_eq!(
        triton.gpus.len(),
        1,
        "the unlabelled emulator gauge joins the only GPU"
    );
    let g = &triton.gpus[0];
    assert_eq!(g.utilization.unwrap().source, Source::TritonMetrics);
    let sm = g.sm_activity.unwrap();
    assert_eq!((sm.value, sm.source), (0.375, Source::Emulator));
    let embedded = parse_metrics(&text, Instant::now(), Source::Emulator).unwrap();
    assert_eq!(
        embedded.gpus[0].utilization.unwrap().source,
        Source::Emulator
    );
}

#[test]
fn text_that_is_not_metrics_is_refused() {
    let err = parse_metrics(
        "<html><body>Not here</body></html>\n",
        Instant::now(),
        Source::TritonMetrics,
    )
    .unwrap_err();
    assert!(matches!(err, TelemetryError::NotMetrics), "{err}");
}

/// Serves each response to one connection, in order, then closes the port.
async fn serve_once_each(responses: Vec<Vec<u8>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for response in responses {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            assert!(request.starts_with(b"GET /metrics HTTP/1.1\r\n"));
            socket.write_all(&response).await.unwrap();
            let _ = socket.shutdown().await;
        }
    });
    addr
}

fn with_length(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.as_bytes().chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Polls `view` until `done` holds; the bound only stops a broken test from hanging.
async fn wait_for(telemetry: &Telemetry, done: impl Fn(&Telemetry, &GpuView) -> bool) -> GpuView {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = telemetry.view();
        if done(telemetry, &view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting; last view: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn scraping_a_live_endpoint_follows_it_and_reports_it_going_away() {
    let addr = serve_once_each(vec![with_length(FIXTURE), chunked(&later_scrape())]).await;
    let url = format!("http://{addr}/metrics");
    let telemetry = Telemetry::start(TelemetryConfig {
        metrics_url: Some(url.clone()),
        nvml: NvmlChoice::Off,
        metrics_interval: Duration::from_millis(100),
        ..TelemetryConfig::default()
    });
    // Two good scrapes (the second chunked), then the port is closed: the figures stay the last
    // good ones and the view says why they no longer move.
    let view = wait_for(&telemetry, |_, v| {
        !v.unavailable.is_empty() && v.utilization.is_some_and(|u| u.value == 0.91)
    })
    .await;
    assert_eq!(view.unavailable.len(), 1, "{:?}", view.unavailable);
    let line = &view.unavailable[0];
    assert!(line.starts_with(&format!("metrics {url}: ")), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
    // The last good figures remain, from the first GPU (no device was chosen), with their source.
    assert_eq!(view.uuid.as_deref(), Some(GPU_A));
    let util = view.utilization.unwrap();
    assert_eq!((util.value, util.source), (0.91, Source::TritonMetrics));
    assert_eq!(view.power_w.unwrap().value, 61.93);
    telemetry.shutdown();
}

#[tokio::test]
async fn nvml_reports_why_it_is_unavailable_and_metrics_follow_the_chosen_uuid() {
    let addr = serve_once_each(vec![with_length(FIXTURE)]).await;
    let telemetry = Telemetry::start(TelemetryConfig {
        metrics_url: Some(format!("http://{addr}/metrics")),
        nvml: NvmlChoice::Device(GPU_B.parse().unwrap()),
        ..TelemetryConfig::default()
    });
    let view = wait_for(&telemetry, |_, v| {
        v.utilization.is_some() && !v.unavailable.is_empty()
    })
    .await;
    // The same open the sampler does; this machine may or may not have a GPU with this UUID (it has
    // none at all where these tests were written), and either way the view must say why.
    let reason = NvmlSource::open(DeviceSelector::Uuid(GPU_B.into()))
        .err()
        .expect("no real GPU carries the fixture's UUID");
    let expected = format!("NVML unavailable: {reason}");
    assert_eq!(
        view.unavailable
            .iter()
            .filter(|l| l.starts_with("NVML"))
            .count(),
        1
    );
    assert!(
        view.unavailable.contains(&expected),
        "{:?} lacks {expected}",
        view.unavailable
    );
    assert!(reason.to_string().len() > 3);
    // Metrics carry on, for the GPU whose gpu_uuid was chosen.
    assert_eq!(view.uuid.as_deref(), Some(GPU_B));
    assert_eq!(view.utilization.unwrap().value, 0.0);
    assert_eq!(view.memory_used_bytes.unwrap().value, 268_435_456.0);

    let mut acc = GpuSummaryAcc::new();
    acc.push(&view);
    let summary = acc.finish();
    assert_eq!(summary.source, Some(Source::TritonMetrics));
    assert_eq!(summary.sources["memory_used"], Source::TritonMetrics);
    assert_eq!(summary.memory_used_mb, Some(256.0));
    assert!(summary.unavailable.contains(&expected));
}

#[tokio::test]
async fn nvml_on_this_machine_either_samples_or_says_why_not() {
    let telemetry = Telemetry::start(TelemetryConfig::default());
    match NvmlSource::open(DeviceSelector::Index(0)) {
        Err(reason) => {
            let view = wait_for(&telemetry, |_, v| !v.unavailable.is_empty()).await;
            assert_eq!(view.unavailable, [format!("NVML unavailable: {reason}")]);
            assert_eq!(view.utilization, None);
        }
        Ok(_) => {
            let view = wait_for(&telemetry, |_, v| v.utilization.is_some()).await;
            assert_eq!(view.utilization.unwrap().source, Source::Nvml);
            assert!(view.unavailable.is_empty(), "{:?}", view.unavailable);
        }
    }
}

#[tokio::test]
async fn http_get_refuses_errors_oversized_bodies_and_silence() {
    let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
    let big = with_length(&"x".repeat(10_000));
    let big_chunked = chunked(&"y".repeat(10_000));
    let addr = serve_once_each(vec![not_found, big, big_chunked]).await;
    let url = HttpUrl::parse(&format!("http://{addr}/metrics")).unwrap();
    let mut client = HttpClient::new(url.clone(), Duration::from_secs(30), 4096);
    let err = client.get_text().await.unwrap_err();
    assert!(matches!(err, HttpError::Status { code: 404, .. }), "{err}");
    // Refused from its declared length, and (chunked, no length) once the cap is crossed.
    let err = client.get_text().await.unwrap_err();
    assert!(matches!(err, HttpError::TooLarge(4096)), "{err}");
    let err = client.get_text().await.unwrap_err();
    assert!(matches!(err, HttpError::TooLarge(4096)), "{err}");

    // Accepts but never answers: the timeout ends the scrape.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = HttpUrl::parse(&format!(
        "http://{}/metrics",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let mut client = HttpClient::new(silent, Duration::from_millis(200), 1 << 20);
    let err = client.get_text().await.unwrap_err();
    assert!(matches!(err, HttpError::Timeout(_)), "{err}");
    drop(listener);
}

#[tokio::test]
async fn urls_that_could_inject_headers_are_refused_with_the_reason() {
    for url in [
        "http://127.0.0.1:8002/metrics\r\nX-Injected: 1",
        "http://127.0.0.1:8002/metrics\nHost: elsewhere",
        "http://127.0.0.1:8002/met rics",
        "http://127.0.0.1:8002/metrics HTTP/1.0",
        "http://127.0.0.1:8002/m\u{0}",
    ] {
        let err = HttpUrl::parse(url).unwrap_err();
        assert!(matches!(err, HttpError::BadUrl { .. }), "{url:?}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("spaces and control characters"),
            "{url:?}: {text}"
        );
        let source = MetricsSource::new(url, Source::TritonMetrics, Duration::from_secs(1));
        assert!(source.is_err(), "{url:?} accepted by the metrics source");
    }
    // And a configured one shows up in the view, naming the URL.
    let telemetry = Telemetry::start(TelemetryConfig {
        metrics_url: Some("http://h:8002/metrics\r\nX: y".into()),
        nvml: NvmlChoice::Off,
        ..TelemetryConfig::default()
    });
    let view = telemetry.view();
    assert_eq!(view.unavailable.len(), 1, "{:?}", view.unavailable);
    assert!(
        view.unavailable[0].contains("bad URL"),
        "{:?}",
        view.unavailable
    );
}

/// A keep-alive HTTP/1.1 server that answers every request on a connection with `body`, counting
/// the connections it accepts; each connection ends after `per_connection` requests.
async fn keep_alive_server(
    body: &'static str,
    per_connection: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepts);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 1024];
                for _ in 0..per_connection {
                    while !pending.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                    let end = pending.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    assert!(pending.starts_with(b"GET /metrics HTTP/1.1\r\n"));
                    pending.drain(..end);
                    if socket.write_all(&with_length(body)).await.is_err() {
                        return;
                    }
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn scrapes_reuse_one_connection_and_reconnect_when_it_closes() {
    let (addr, accepts) = keep_alive_server(FIXTURE, 3).await;
    let url = HttpUrl::parse(&format!("http://{addr}/metrics")).unwrap();
    let mut client = HttpClient::new(url, Duration::from_secs(30), 1 << 20);
    for _ in 0..3 {
        assert_eq!(client.get_text().await.unwrap(), FIXTURE);
    }
    assert_eq!(
        accepts.load(Ordering::SeqCst),
        1,
        "three scrapes, one connection"
    );
    // The server closed that connection after its third answer: the next scrape opens another.
    assert_eq!(client.get_text().await.unwrap(), FIXTURE);
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
}

mod embedded_emulator {
    use super::*;
    use perseus::emulator::{Emulator, EmulatorConfig, RunningEmulator};

    async fn start_simple() -> RunningEmulator {
        let mut config = EmulatorConfig::embedded("t4");
        config.models = vec!["simple".into()];
        Emulator::start(config).await.expect("emulator starts")
    }

    #[tokio::test]
    async fn every_gpu_figure_of_an_embedded_run_comes_from_the_emulator() {
        let emulator = start_simple().await;
        let telemetry = Telemetry::start(TelemetryConfig {
            metrics_url: Some(emulator.metrics_url()),
            embedded_emulator: true,
            metrics_interval: Duration::from_millis(100),
            ..TelemetryConfig::default()
        });
        let view = wait_for(&telemetry, |_, v| {
            v.utilization.is_some() && v.unavailable.iter().any(|l| l.starts_with("NVML"))
        })
        .await;
        let figures = [
            view.utilization,
            view.sm_activity,
            view.memory_used_bytes,
            view.memory_total_bytes,
            view.power_w,
            view.power_limit_w,
        ];
        for (i, f) in figures.iter().enumerate() {
            assert_eq!(
                f.map(|r| r.source),
                Some(Source::Emulator),
                "figure {i} in {view:?}"
            );
        }
        assert!(view.uuid.is_some());
        let mut acc = GpuSummaryAcc::new();
        acc.push(&view);
        let summary = acc.finish();
        assert_eq!(summary.source, Some(Source::Emulator));
        assert!(
            summary.sources.values().all(|s| *s == Source::Emulator),
            "{summary:?}"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["sources"]["sm_activity"], "Emulator");
        telemetry.shutdown();
        emulator.shutdown().await;
    }
}

/// Triton's request summary (with `summary_latencies=true`) gives each model's server-side
/// quantiles in ms; NaN quantiles (an empty window) and other families are left out.
#[test]
fn request_summaries_give_each_models_server_quantiles() {
    let got = perseus::telemetry::parse_request_summaries(FIXTURE).expect("parses");
    assert_eq!(
        got.get("resnet50"),
        Some(&vec![(0.5, 8.9), (0.99, 14.1)]),
        "{got:?}"
    );
    assert_eq!(got.len(), 1, "{got:?}");
    let idle = "# TYPE nv_inference_request_summary_us summary\n\
        nv_inference_request_summary_us_count{model=\"m\",version=\"1\"} 0\n\
        nv_inference_request_summary_us_sum{model=\"m\",version=\"1\"} 0\n\
        nv_inference_request_summary_us{model=\"m\",version=\"1\",quantile=\"0.5\"} NaN\n";
    assert!(
        perseus::telemetry::parse_request_summaries(idle)
            .expect("parses")
            .is_empty()
    );
    let latency = perseus::report::ServerLatency::from_points(&got["resnet50"]).expect("two known");
    assert_eq!(
        (latency.p50, latency.p90, latency.p99),
        (Some(8.9), None, Some(14.1))
    );
    assert_eq!(
        perseus::report::ServerLatency::from_points(&[(0.42, 1.0)]),
        None
    );
}
