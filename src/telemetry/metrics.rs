//! Triton's Prometheus metrics: the GPU gauges, turned into figures tagged with their source.
//!
//! The per-model counters in the same text are not read here: the server's own per-window figures
//! come from ModelStatistics (see `triton::StatsWindow`), one shape for every consumer.

use std::collections::BTreeMap;
use std::time::Instant;

use prometheus_parse::{Scrape, Value};

use crate::vocab::snapshot::Source;

use super::TelemetryError;
use super::sample::{Figure, GpuSample, SourceSample};

/// The emulator's SM activity (0–1), which Triton cannot know.
pub const EMULATOR_SM_ACTIVITY: &str = "perseus_emulator_sm_activity";
/// The emulator's SM clock (MHz), optional.
pub const EMULATOR_SM_CLOCK: &str = "perseus_emulator_sm_clock_mhz";
/// An info gauge (`value 1`) whose `name` label carries the emulated GPU's name, optional.
pub const EMULATOR_GPU_INFO: &str = "perseus_emulator_gpu_info";

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

/// Triton's summary of each request's server-side duration, which it serves with
/// `--metrics-config summary_latencies=true` (the emulator always does).
pub const REQUEST_SUMMARY: &str = "nv_inference_request_summary_us";

/// Each model's server-side request duration at the quantiles Triton's summary reports, in ms
/// (quantile, ms), ascending, from a `/metrics` text. Quantiles that read NaN (nothing in the
/// summary's window) are left out, and so is a model with none left; an endpoint without
/// summaries gives an empty map.
pub fn parse_request_summaries(
    text: &str,
) -> Result<BTreeMap<String, Vec<(f64, f64)>>, TelemetryError> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| TelemetryError::Parse(e.to_string()))?;
    let mut out = BTreeMap::new();
    for sample in &scrape.samples {
        let Value::Summary(counts) = &sample.value else {
            continue;
        };
        if sample.metric != REQUEST_SUMMARY {
            continue;
        }
        let Some(model) = sample.labels.get("model") else {
            continue;
        };
        let mut points: Vec<(f64, f64)> = counts
            .iter()
            .filter(|c| c.quantile.is_finite() && c.count.is_finite())
            .map(|c| (c.quantile, c.count / 1000.0))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !points.is_empty() {
            out.insert(model.to_owned(), points);
        }
    }
    Ok(out)
}
