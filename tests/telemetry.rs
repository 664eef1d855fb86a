//! Telemetry against Triton's metrics text, a live (in-test) HTTP endpoint, and this machine's NVML.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use perseus::telemetry::http::{HttpError, HttpUrl, get_text};
use perseus::telemetry::{
    DeviceSelector, GpuSummaryAcc, ModelKey, NvmlChoice, NvmlSource, Telemetry, TelemetryConfig,
    TelemetryError, model_rates, parse_metrics,
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

fn series(metric: &str, model: &str, version: &str) -> String {
    format!("{metric}{{model=\"{model}\",version=\"{version}\"}}")
}

/// Two seconds after the fixture: resnet50 served 400 requests (3200 images in 200 batches of 16),
/// 2 failed; `simple` served 10 on version 1 and 30 on version 2; GPU A got busier.
fn later_scrape() -> String {
    let r = |m| series(m, "resnet50", "1");
    let changes = [
        (r("nv_inference_request_success"), 1400.0),
        (r("nv_inference_request_failure"), 5.0),
        (r("nv_inference_count"), 11200.0),
        (r("nv_inference_exec_count"), 700.0),
        (r("nv_inference_queue_duration_us"), 2_080_000.0),
        (r("nv_inference_compute_input_duration_us"), 520_000.0),
        (r("nv_inference_compute_infer_duration_us"), 7_072_000.0),
        (r("nv_inference_compute_output_duration_us"), 208_000.0),
        (r("nv_inference_pending_request_count"), 5.0),
        (series("nv_inference_request_success", "simple", "1"), 50.0),
        (series("nv_inference_request_success", "simple", "2"), 90.0),
        (format!("nv_gpu_utilization{{gpu_uuid=\"{GPU_A}\"}}"), 0.91),
    ];
    let changes: Vec<(&str, f64)> = changes.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    with_values(FIXTURE, &changes)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn the_fixture_parses_into_gpus_and_model_counters() {
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

    assert_eq!(s.models.len(), 4, "{:?}", s.models.keys());
    let key = |m: &str, v: &str| ModelKey {
        model: m.into(),
        version: v.into(),
    };
    let r = s.models[&key("resnet50", "1")];
    assert_eq!(
        (r.success, r.failure, r.inferences, r.executions, r.pending),
        (1000.0, 3.0, 8000.0, 500.0, 12.0)
    );
    assert_eq!(
        (
            r.queue_us,
            r.compute_input_us,
            r.compute_infer_us,
            r.compute_output_us
        ),
        (2_000_000.0, 500_000.0, 6_800_000.0, 200_000.0)
    );
    assert_eq!(s.models[&key("simple", "2")].failure, 1.0);
}

#[test]
fn rates_between_two_scrapes_are_per_second_and_durations_per_request() {
    let t0 = Instant::now();
    let earlier = parse_metrics(FIXTURE, t0, Source::TritonMetrics).unwrap();
    let later = parse_metrics(
        &later_scrape(),
        t0 + Duration::from_secs(2),
        Source::TritonMetrics,
    )
    .unwrap();
    let rates = model_rates(&earlier, &later, Source::TritonMetrics);
    let r = &rates["resnet50"];
    assert_eq!(r.interval_s, 2.0);
    assert!(close(r.success_per_s, 400.0 / 2.0));
    assert!(close(r.failure_per_s, 2.0 / 2.0));
    assert!(close(r.inferences_per_s, 3200.0 / 2.0));
    assert!(close(r.executions_per_s, 200.0 / 2.0));
    assert!(close(r.avg_batch.unwrap(), 3200.0 / 200.0));
    assert!(close(r.queue_us.unwrap(), 80_000.0 / 400.0));
    assert!(close(r.compute_input_us.unwrap(), 20_000.0 / 400.0));
    assert!(close(r.compute_infer_us.unwrap(), 272_000.0 / 400.0));
    assert!(close(r.compute_output_us.unwrap(), 8_000.0 / 400.0));
    assert_eq!(r.pending, 5.0);
    assert_eq!(r.source, Source::TritonMetrics);
    // Versions are summed: 10 + 30 requests in 2 s.
    let simple = &rates["simple"];
    assert_eq!(simple.versions, ["1", "2"]);
    assert!(close(simple.success_per_s, 40.0 / 2.0));
    // A model that did nothing has zero rates and no mean durations.
    let idle = &rates["densenet_onnx"];
    assert_eq!(
        (idle.success_per_s, idle.queue_us, idle.avg_batch),
        (0.0, None, None)
    );
    let window = r.as_server_window();
    assert!(close(window.compute_infer_us, 680.0) && close(window.avg_batch, 16.0));
}

#[test]
fn a_counter_that_goes_down_is_a_restart_not_a_negative_rate() {
    let t0 = Instant::now();
    let before = parse_metrics(FIXTURE, t0, Source::TritonMetrics).unwrap();
    let r = |m| series(m, "resnet50", "1");
    let restarted = [
        (r("nv_inference_request_success"), 50.0),
        (r("nv_inference_count"), 400.0),
        (r("nv_inference_exec_count"), 25.0),
        (r("nv_inference_queue_duration_us"), 5_000.0),
    ];
    let restarted: Vec<(&str, f64)> = restarted.iter().map(|(s, v)| (s.as_str(), *v)).collect();
    let after = parse_metrics(
        &with_values(FIXTURE, &restarted),
        t0 + Duration::from_secs(2),
        Source::TritonMetrics,
    )
    .unwrap();
    let rates = model_rates(&before, &after, Source::TritonMetrics);
    let x = &rates["resnet50"];
    // Everything counted since the restart happened within the interval.
    assert!(close(x.success_per_s, 50.0 / 2.0));
    assert!(close(x.inferences_per_s, 400.0 / 2.0));
    assert!(close(x.queue_us.unwrap(), 5_000.0 / 50.0));
    for m in rates.values() {
        for v in [
            m.success_per_s,
            m.failure_per_s,
            m.inferences_per_s,
            m.executions_per_s,
        ] {
            assert!(v >= 0.0, "{m:?}");
        }
    }
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
async fn scraping_a_live_endpoint_gives_rates_and_reports_it_going_away() {
    let addr = serve_once_each(vec![with_length(FIXTURE), chunked(&later_scrape())]).await;
    let url = format!("http://{addr}/metrics");
    let telemetry = Telemetry::start(TelemetryConfig {
        metrics_url: Some(url.clone()),
        nvml: NvmlChoice::Off,
        metrics_interval: Duration::from_millis(100),
        ..TelemetryConfig::default()
    });
    // Two good scrapes, then the port is closed: rates stay those between the two good ones.
    let view = wait_for(&telemetry, |t, v| {
        !v.unavailable.is_empty() && !t.model_rates().is_empty()
    })
    .await;
    let rates = telemetry.model_rates();
    let r = &rates["resnet50"];
    assert!(r.interval_s > 0.0);
    assert!(close(r.success_per_s * r.interval_s, 400.0), "{r:?}");
    assert!(close(r.avg_batch.unwrap(), 16.0));
    assert!(close(r.queue_us.unwrap(), 200.0));

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
    let addr = serve_once_each(vec![not_found, big]).await;
    let url = HttpUrl::parse(&format!("http://{addr}/metrics")).unwrap();
    let err = get_text(&url, Duration::from_secs(30), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Status { code: 404, .. }), "{err}");
    let err = get_text(&url, Duration::from_secs(30), 4096)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::TooLarge(4096)), "{err}");

    // Accepts but never answers: the timeout ends the scrape.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = HttpUrl::parse(&format!(
        "http://{}/metrics",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let err = get_text(&silent, Duration::from_millis(200), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Timeout(_)), "{err}");
    drop(listener);
}

mod embedded_emulator {
    use super::*;
    use crate::common::triton::simple_request;
    use perseus::emulator::{Emulator, EmulatorConfig, RunningEmulator};
    use perseus::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use perseus::telemetry::{GpuSource, MetricsSource, SourceSample};

    async fn start_simple() -> RunningEmulator {
        let mut config = EmulatorConfig::embedded("t4");
        config.models = vec!["simple".into()];
        Emulator::start(config).await.expect("emulator starts")
    }

    const OPERAND: [i32; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    async fn scrape(source: &mut MetricsSource) -> SourceSample {
        source.poll().await.unwrap()
    }

    #[tokio::test]
    async fn per_model_rates_from_its_metrics_match_the_load_sent() {
        const SENT: u32 = 400;
        const PER_S: f64 = 100.0;
        let emulator = start_simple().await;
        let client = GrpcInferenceServiceClient::connect(emulator.grpc_url())
            .await
            .unwrap();
        let mut metrics = MetricsSource::new(
            &emulator.metrics_url(),
            Source::Emulator,
            Duration::from_secs(10),
        )
        .unwrap();

        let before = scrape(&mut metrics).await;
        // Open loop at a fixed rate: each request leaves at its intended time, whatever the replies do.
        let first = Instant::now();
        let mut replies = Vec::new();
        for i in 0..SENT {
            tokio::time::sleep_until(
                (first + Duration::from_secs_f64(f64::from(i) / PER_S)).into(),
            )
            .await;
            let mut client = client.clone();
            replies.push(tokio::spawn(async move {
                client
                    .model_infer(simple_request(&OPERAND, &OPERAND))
                    .await
                    .is_ok()
            }));
        }
        let mut ok = 0u32;
        for reply in replies {
            ok += u32::from(reply.await.unwrap());
        }
        let client_window_s = first.elapsed().as_secs_f64();
        let after = scrape(&mut metrics).await;
        assert_eq!(ok, SENT);

        let rates = model_rates(&before, &after, Source::Emulator);
        let r = &rates["simple"];
        // Every request counted once, as one inference of batch 1, none failed.
        assert!(
            close(r.success_per_s * r.interval_s, f64::from(SENT)),
            "{r:?}"
        );
        assert!(
            close(r.inferences_per_s * r.interval_s, f64::from(SENT)),
            "{r:?}"
        );
        assert_eq!(r.failure_per_s, 0.0);
        assert_eq!(r.source, Source::Emulator);
        // Scrapes are stamped mid-request, right before the first send and after the last reply, so
        // the two windows differ by about one loopback round trip on a 4 s load.
        let client_rate = f64::from(ok) / client_window_s;
        let diff = (r.success_per_s - client_rate).abs() / client_rate;
        println!(
            "metrics {:.3}/s over {:.3} s, client {client_rate:.3}/s over {client_window_s:.3} s: {:.2}%",
            r.success_per_s,
            r.interval_s,
            diff * 100.0
        );
        assert!(
            diff < 0.02,
            "metrics {:.2}/s vs client {client_rate:.2}/s",
            r.success_per_s
        );
        assert!(r.compute_infer_us.is_some_and(|us| us > 0.0), "{r:?}");
        emulator.shutdown().await;
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
