//! Triton's Prometheus metrics: the GPU gauges and the per-model counters, turned into figures and rates.
//!
//! Triton exports cumulative counters; what an operator wants next to the client's figures is what
//! happened *between two scrapes*: requests per second and mean server-side times per request. A counter
//! that goes down means the server (or the model) restarted, and Prometheus's convention applies: the
//! new value is the increase since the restart, never a negative rate.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus_parse::{Scrape, Value};
use serde::{Deserialize, Serialize};

use crate::vocab::snapshot::{ServerWindow, Source};

use super::TelemetryError;
use super::sample::{Figure, GpuSample, SourceSample};

/// The emulator's SM activity (0–1), which Triton cannot know.
pub const EMULATOR_SM_ACTIVITY: &str = "perseus_emulator_sm_activity";
/// The emulator's SM clock (MHz), optional.
pub const EMULATOR_SM_CLOCK: &str = "perseus_emulator_sm_clock_mhz";
/// An info gauge (`value 1`) whose `name` label carries the emulated GPU's name, optional.
pub const EMULATOR_GPU_INFO: &str = "perseus_emulator_gpu_info";

/// One model version, as Triton labels its series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelKey {
    pub model: String,
    pub version: String,
}

/// Triton's cumulative per-model counters (durations in µs), plus the pending-request gauge.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ModelCounters {
    pub success: f64,
    pub failure: f64,
    pub inferences: f64,
    pub executions: f64,
    pub queue_us: f64,
    pub compute_input_us: f64,
    pub compute_infer_us: f64,
    pub compute_output_us: f64,
    /// Requests waiting in the scheduler now (a gauge: not diffed).
    pub pending: f64,
}

/// One model's server-side activity between two scrapes, summed over its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetricRates {
    pub versions: Vec<String>,
    pub source: Source,
    /// Seconds between the two scrapes.
    pub interval_s: f64,
    pub success_per_s: f64,
    pub failure_per_s: f64,
    pub inferences_per_s: f64,
    pub executions_per_s: f64,
    /// Inferences per execution; `None` without executions.
    pub avg_batch: Option<f64>,
    /// Mean µs per successful request (Triton adds these durations only for successes); `None`
    /// without successes.
    pub queue_us: Option<f64>,
    pub compute_input_us: Option<f64>,
    pub compute_infer_us: Option<f64>,
    pub compute_output_us: Option<f64>,
    /// Pending requests at the later scrape.
    pub pending: f64,
}

impl ModelMetricRates {
    /// The same figures in the shape of the client-side server window, for a side-by-side check.
    pub fn as_server_window(&self) -> ServerWindow {
        ServerWindow {
            queue_us: self.queue_us.unwrap_or(0.0),
            compute_input_us: self.compute_input_us.unwrap_or(0.0),
            compute_infer_us: self.compute_infer_us.unwrap_or(0.0),
            compute_output_us: self.compute_output_us.unwrap_or(0.0),
            avg_batch: self.avg_batch.unwrap_or(0.0),
            inferences_per_s: self.inferences_per_s,
            executions_per_s: self.executions_per_s,
        }
    }
}

/// Parses a `/metrics` response taken at `at`.
///
/// `gpu_source` tags the `nv_gpu_*` figures: `TritonMetrics` for a real server, `Emulator` when the
/// endpoint is the embedded emulator. The emulator's own `perseus_emulator_*` figures are always
/// `Emulator`. Text with no Triton or emulator series at all is an error, because it almost always
/// means the URL points at something else.
pub fn parse_metrics(
    text: &str,
    at: Instant,
    gpu_source: Source,
) -> Result<SourceSample, TelemetryError> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| TelemetryError::Parse(e.to_string()))?;
    let mut gpus: BTreeMap<Option<String>, GpuSample> = BTreeMap::new();
    let mut models: BTreeMap<ModelKey, ModelCounters> = BTreeMap::new();
    let mut recognised = 0usize;
    for sample in &scrape.samples {
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        if !value.is_finite() {
            continue;
        }
        let name = sample.metric.as_str();
        if let Some(field) = model_field(name) {
            recognised += 1;
            let Some(model) = sample.labels.get("model") else {
                continue;
            };
            let key = ModelKey {
                model: model.to_owned(),
                version: sample.labels.get("version").unwrap_or_default().to_owned(),
            };
            *field(models.entry(key).or_default()) = value;
            continue;
        }
        if !(name.starts_with("nv_") || name.starts_with("perseus_")) {
            continue;
        }
        recognised += 1;
        let uuid = sample.labels.get("gpu_uuid").map(str::to_owned);
        let gpu = || GpuSample {
            uuid: uuid.clone(),
            ..GpuSample::default()
        };
        if name == EMULATOR_GPU_INFO {
            gpus.entry(uuid.clone()).or_insert_with(gpu).name =
                sample.labels.get("name").map(str::to_owned);
        } else if let Some((field, emulator_own)) = gpu_field(name) {
            let source = if emulator_own {
                Source::Emulator
            } else {
                gpu_source
            };
            *field(gpus.entry(uuid.clone()).or_insert_with(gpu)) =
                Some(Figure::new(value, source, at));
        }
    }
    if recognised == 0 {
        return Err(TelemetryError::NotMetrics);
    }
    Ok(SourceSample {
        at,
        gpus: fold_unlabelled(gpus),
        models,
    })
}

/// Figures without a `gpu_uuid` label belong to the one labelled GPU when there is exactly one (an
/// emulator may omit the label on its own gauges); otherwise they stay a GPU of their own.
fn fold_unlabelled(mut gpus: BTreeMap<Option<String>, GpuSample>) -> Vec<GpuSample> {
    let labelled = gpus.keys().filter(|k| k.is_some()).count();
    if labelled == 1
        && let Some(loose) = gpus.remove(&None)
        && let Some(gpu) = gpus.values_mut().next()
    {
        let GpuSample {
            name,
            utilization,
            sm_activity,
            memory_used_bytes,
            memory_total_bytes,
            power_w,
            power_limit_w,
            sm_clock_mhz,
            temperature_c,
            energy_j,
            ..
        } = loose;
        gpu.name = gpu.name.take().or(name);
        gpu.utilization = gpu.utilization.or(utilization);
        gpu.sm_activity = gpu.sm_activity.or(sm_activity);
        gpu.memory_used_bytes = gpu.memory_used_bytes.or(memory_used_bytes);
        gpu.memory_total_bytes = gpu.memory_total_bytes.or(memory_total_bytes);
        gpu.power_w = gpu.power_w.or(power_w);
        gpu.power_limit_w = gpu.power_limit_w.or(power_limit_w);
        gpu.sm_clock_mhz = gpu.sm_clock_mhz.or(sm_clock_mhz);
        gpu.temperature_c = gpu.temperature_c.or(temperature_c);
        gpu.energy_j = gpu.energy_j.or(energy_j);
    }
    gpus.into_values().collect()
}

type GpuField = fn(&mut GpuSample) -> &mut Option<Figure>;

/// The GPU figure a series fills, and whether it is the emulator's own (always `Source::Emulator`).
fn gpu_field(name: &str) -> Option<(GpuField, bool)> {
    Some(match name {
        "nv_gpu_utilization" => (|g| &mut g.utilization, false),
        "nv_gpu_memory_used_bytes" => (|g| &mut g.memory_used_bytes, false),
        "nv_gpu_memory_total_bytes" => (|g| &mut g.memory_total_bytes, false),
        "nv_gpu_power_usage" => (|g| &mut g.power_w, false),
        "nv_gpu_power_limit" => (|g| &mut g.power_limit_w, false),
        "nv_energy_consumption" => (|g| &mut g.energy_j, false),
        EMULATOR_SM_ACTIVITY => (|g| &mut g.sm_activity, true),
        EMULATOR_SM_CLOCK => (|g| &mut g.sm_clock_mhz, true),
        _ => return None,
    })
}

type CounterField = fn(&mut ModelCounters) -> &mut f64;

fn model_field(name: &str) -> Option<CounterField> {
    Some(match name {
        "nv_inference_request_success" => |c| &mut c.success,
        "nv_inference_request_failure" => |c| &mut c.failure,
        "nv_inference_count" => |c| &mut c.inferences,
        "nv_inference_exec_count" => |c| &mut c.executions,
        "nv_inference_queue_duration_us" => |c| &mut c.queue_us,
        "nv_inference_compute_input_duration_us" => |c| &mut c.compute_input_us,
        "nv_inference_compute_infer_duration_us" => |c| &mut c.compute_infer_us,
        "nv_inference_compute_output_duration_us" => |c| &mut c.compute_output_us,
        "nv_inference_pending_request_count" => |c| &mut c.pending,
        _ => return None,
    })
}

/// The increase of a cumulative counter; a decrease means it restarted from zero.
fn increase(previous: f64, current: f64) -> f64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

/// Per-model rates between two scrapes of the same endpoint.
///
/// A model version absent from the earlier scrape was loaded in between, so its whole count happened
/// within the interval; one absent from the later scrape was unloaded and contributes nothing.
pub fn model_rates(
    previous: &SourceSample,
    current: &SourceSample,
    source: Source,
) -> BTreeMap<String, ModelMetricRates> {
    let interval_s = current
        .at
        .saturating_duration_since(previous.at)
        .as_secs_f64();
    let mut out = BTreeMap::new();
    if interval_s <= 0.0 {
        return out;
    }
    let mut sums: BTreeMap<&str, (Vec<String>, ModelCounters)> = BTreeMap::new();
    for (key, now) in &current.models {
        let before = previous.models.get(key).copied().unwrap_or_default();
        let (versions, d) = sums.entry(key.model.as_str()).or_default();
        versions.push(key.version.clone());
        d.success += increase(before.success, now.success);
        d.failure += increase(before.failure, now.failure);
        d.inferences += increase(before.inferences, now.inferences);
        d.executions += increase(before.executions, now.executions);
        d.queue_us += increase(before.queue_us, now.queue_us);
        d.compute_input_us += increase(before.compute_input_us, now.compute_input_us);
        d.compute_infer_us += increase(before.compute_infer_us, now.compute_infer_us);
        d.compute_output_us += increase(before.compute_output_us, now.compute_output_us);
        d.pending += now.pending;
    }
    for (model, (versions, d)) in sums {
        let per_success = |total: f64| (d.success > 0.0).then(|| total / d.success);
        out.insert(
            model.to_owned(),
            ModelMetricRates {
                versions,
                source,
                interval_s,
                success_per_s: d.success / interval_s,
                failure_per_s: d.failure / interval_s,
                inferences_per_s: d.inferences / interval_s,
                executions_per_s: d.executions / interval_s,
                avg_batch: (d.executions > 0.0).then(|| d.inferences / d.executions),
                queue_us: per_success(d.queue_us),
                compute_input_us: per_success(d.compute_input_us),
                compute_infer_us: per_success(d.compute_infer_us),
                compute_output_us: per_success(d.compute_output_us),
                pending: d.pending,
            },
        );
    }
    out
}
