//! Prometheus text at `/metrics`, with Triton's metric names and labels so any Triton scraper (ours,
//! Grafana dashboards, PERSEUS's) reads the emulator unchanged.
//!
//! GPU utilization and SM activity are rates, as NVML reports them: the busy fraction over the interval
//! since the previous scrape (a scrape within a millisecond of the last reuses its figures). Power is the
//! energy used over that interval divided by its length, like NVML's averaged power reading.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::emulator::service::{MODEL_VERSION, SharedCore};
use crate::emulator::sim::{GpuCounters, ModelCounters, Nanos};

/// The GPU figures of one scrape, kept to turn cumulative counters into rates at the next.
#[derive(Debug, Clone, Copy, Default)]
struct GpuSample {
    at: Nanos,
    busy_ns: u64,
    sm_active_ns: f64,
    energy_j: f64,
    utilization: f64,
    sm_activity: f64,
    power_w: f64,
}

struct MetricsState {
    core: SharedCore,
    last: Mutex<Option<GpuSample>>,
}

pub(crate) fn router(core: SharedCore) -> Router {
    let state = Arc::new(MetricsState {
        core,
        last: Mutex::new(None),
    });
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<Arc<MetricsState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state),
    )
}

/// A per-model counter: how it reads from the sim's counters.
type Field = fn(&ModelCounters) -> f64;

/// Triton's per-model metrics with their names, kinds and help texts as Triton writes them.
const MODEL_METRICS: [(&str, &str, &str, Field); 10] = [
    (
        "nv_inference_request_success",
        "counter",
        "Number of successful inference requests, all batch sizes",
        |c| c.success_count as f64,
    ),
    (
        "nv_inference_request_failure",
        "counter",
        "Number of failed inference requests, all batch sizes",
        |c| c.fail_count as f64,
    ),
    (
        "nv_inference_count",
        "counter",
        "Number of inferences performed (does not include cached requests)",
        |c| c.inference_count as f64,
    ),
    (
        "nv_inference_exec_count",
        "counter",
        "Number of model executions performed (does not include cached requests)",
        |c| c.execution_count as f64,
    ),
    (
        "nv_inference_request_duration_us",
        "counter",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        |c| (c.success_ns + c.fail_ns) as f64 / 1e3,
    ),
    (
        "nv_inference_queue_duration_us",
        "counter",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        |c| c.queue_ns as f64 / 1e3,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "counter",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        |c| c.compute_input_ns as f64 / 1e3,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "counter",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        |c| c.compute_infer_ns as f64 / 1e3,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "counter",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        |c| c.compute_output_ns as f64 / 1e3,
    ),
    (
        "nv_inference_pending_request_count",
        "gauge",
        "Instantaneous number of pending requests awaiting execution per-model.",
        |c| c.pending as f64,
    ),
];

fn render(state: &MetricsState) -> String {
    let core = &state.core;
    let models = core.all_counters();
    let (gpu, now, instant_power) = core
        .clock
        .with_sim(|sim, now| (sim.gpu_counters(), now, sim.gpu_instant().1));
    let sample = {
        let mut last = state
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sample = next_sample(*last, &gpu, now, instant_power);
        *last = Some(sample);
        sample
    };

    let mut out = String::with_capacity(4096);
    for (name, kind, help, field) in MODEL_METRICS {
        header(&mut out, name, kind, help);
        for (model, counters) in &models {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{MODEL_VERSION}\"}} {}",
                escape(model),
                field(counters)
            );
        }
    }
    let names: Vec<&str> = models.iter().map(|(m, _)| m.as_str()).collect();
    core.summaries.render(&mut out, &names, now, MODEL_VERSION);

    let uuid = escape(&core.gpu.uuid);
    let gpu_metrics: [(&str, &str, &str, f64); 6] = [
        (
            "nv_gpu_utilization",
            "gauge",
            "GPU utilization rate [0.0 - 1.0)",
            sample.utilization,
        ),
        (
            "nv_gpu_memory_total_bytes",
            "gauge",
            "GPU total memory, in bytes",
            gpu.memory_total_bytes as f64,
        ),
        (
            "nv_gpu_memory_used_bytes",
            "gauge",
            "GPU used memory, in bytes",
            gpu.memory_used_bytes as f64,
        ),
        (
            "nv_gpu_power_usage",
            "gauge",
            "GPU power usage in watts",
            sample.power_w,
        ),
        (
            "nv_gpu_power_limit",
            "gauge",
            "GPU power management limit in watts",
            core.gpu.tdp_w,
        ),
        (
            "nv_energy_consumption",
            "counter",
            "GPU energy consumption in joules since the Triton Server started",
            gpu.energy_j,
        ),
    ];
    for (name, kind, help, value) in gpu_metrics {
        header(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{{gpu_uuid=\"{uuid}\"}} {value}");
    }
    header(
        &mut out,
        "perseus_emulator_sm_activity",
        "gauge",
        "Time-average of min(1, summed occupancy of running batches) since the previous scrape [0.0 - 1.0]",
    );
    let _ = writeln!(
        out,
        "perseus_emulator_sm_activity{{gpu_uuid=\"{uuid}\"}} {}",
        sample.sm_activity
    );
    out
}

/// Rates over the interval since `last`; the first scrape averages since the emulator started.
fn next_sample(
    last: Option<GpuSample>,
    gpu: &GpuCounters,
    now: Nanos,
    instant_power: f64,
) -> GpuSample {
    let prev = last.unwrap_or_default();
    let dt = now.saturating_sub(prev.at);
    if last.is_some() && dt < 1_000_000 {
        return prev;
    }
    let dt_f = dt.max(1) as f64;
    let utilization = (gpu.busy_ns.saturating_sub(prev.busy_ns) as f64 / dt_f).clamp(0.0, 1.0);
    let sm_activity = ((gpu.sm_active_ns - prev.sm_active_ns) / dt_f).clamp(0.0, 1.0);
    let power_w = if dt > 0 {
        (gpu.energy_j - prev.energy_j) / (dt_f / 1e9)
    } else {
        instant_power
    };
    GpuSample {
        at: now,
        busy_ns: gpu.busy_ns,
        sm_active_ns: gpu.sm_active_ns,
        energy_j: gpu.energy_j,
        utilization,
        sm_activity,
        power_w: if power_w.is_finite() {
            power_w
        } else {
            instant_power
        },
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values escape backslash, quote and newline in the exposition format.
pub(crate) fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
