//! GPU telemetry from whichever source works, each figure tagged with where it came from.
//!
//! Three sources sit behind one [`GpuSource`] interface: NVML on the local machine (10 Hz), Triton's
//! Prometheus `/metrics` (1 Hz, real or emulated) and the emulator's own figures (SM activity), which
//! arrive through its `/metrics`. Samplers run in the background and write the latest sample into a
//! shared slot; [`Telemetry::view`] only merges those slots, so the engine can call it every tick. A
//! source that fails is listed in the view's `unavailable` with its reason and the others carry on:
//! Triton's GPU metrics vanish under MIG or next to another DCGM agent, and a machine without a GPU has
//! no NVML at all.
//!
//! ```text
//!  NVML thread ──┐                      ┌─> view()        -> GpuView (per-figure source and age)
//!                ├─> SourceState slots ─┤
//!  /metrics task ┘                      └─> GpuSummaryAcc -> the JSON result's `gpu` block
//! ```

pub mod http;
pub mod metrics;
pub mod nvml;
pub mod sample;
pub mod summary;
pub mod view;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::vocab::snapshot::{GpuView, Source};

pub use metrics::{parse_metrics, parse_request_summaries};
pub use nvml::NvmlSource;
pub use sample::{Figure, GpuSample, GpuSource, SourceSample};
pub use summary::{GpuSummary, GpuSummaryAcc};

use http::{HttpClient, HttpError, HttpUrl};
use sample::{SharedState, SourceState, lock, run_sampler};
use view::{Candidate, merge, pick_gpu};

/// Largest `/metrics` response accepted; Triton's is a few kB per model.
pub const MAX_METRICS_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0}")]
    Nvml(String),
    #[error("no such GPU: {0}")]
    NoDevice(String),
    #[error("{0}")]
    Http(#[from] HttpError),
    #[error("unreadable metrics text: {0}")]
    Parse(String),
    #[error("no Triton metrics in the response (is this Triton's /metrics endpoint?)")]
    NotMetrics,
    #[error("{0}")]
    Config(String),
}

/// A GPU by NVML index or by UUID; the UUID is the same string as Triton's `gpu_uuid` label, which
/// is what ties the NVML device to the right series of a multi-GPU `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSelector {
    Index(u32),
    Uuid(String),
}

impl FromStr for DeviceSelector {
    type Err = TelemetryError;

    /// A number is an index, anything else a UUID (`GPU-…`, or `MIG-…` for a MIG instance).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TelemetryError::Config("empty GPU selector".into()));
        }
        Ok(match s.parse::<u32>() {
            Ok(i) => DeviceSelector::Index(i),
            Err(_) => DeviceSelector::Uuid(s.to_owned()),
        })
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::Index(i) => write!(f, "index {i}"),
            DeviceSelector::Uuid(u) => write!(f, "UUID {u}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NvmlChoice {
    Off,
    Device(DeviceSelector),
    /// Device 0 if NVML loads; otherwise reported unavailable.
    #[default]
    Auto,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Triton's (or the emulator's) metrics endpoint, `http://host:port/metrics`.
    pub metrics_url: Option<String>,
    pub nvml: NvmlChoice,
    /// The target is the in-process emulator: its `/metrics` describes the emulated GPU, so every
    /// figure from it is `Source::Emulator`, and NVML is only opened (to report whether it works),
    /// never sampled into the view: this machine's GPU is not the one being served.
    pub embedded_emulator: bool,
    pub nvml_hz: f64,
    pub metrics_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            metrics_url: None,
            nvml: NvmlChoice::Auto,
            embedded_emulator: false,
            nvml_hz: 10.0,
            metrics_interval: Duration::from_secs(1),
        }
    }
}

/// Scrapes one `/metrics` endpoint.
pub struct MetricsSource {
    url: String,
    client: HttpClient,
    gpu_source: Source,
}

impl MetricsSource {
    /// `gpu_source` tags the `nv_gpu_*` figures (see [`parse_metrics`]); the timeout bounds one
    /// whole scrape.
    pub fn new(url: &str, gpu_source: Source, timeout: Duration) -> Result<Self, TelemetryError> {
        Ok(MetricsSource {
            url: url.to_owned(),
            client: HttpClient::new(HttpUrl::parse(url)?, timeout, MAX_METRICS_BYTES),
            gpu_source,
        })
    }
}

impl GpuSource for MetricsSource {
    fn label(&self) -> String {
        format!("metrics {}", self.url)
    }

    /// Stamps the sample halfway through the request: the best estimate of when the server read its
    /// counters, so rates are not skewed by a slow round trip or by parsing.
    async fn poll(&mut self) -> Result<SourceSample, TelemetryError> {
        let sent = Instant::now();
        let text = self.client.get_text().await?;
        let at = sent + sent.elapsed() / 2;
        parse_metrics(&text, at, self.gpu_source)
    }
}

/// The running samplers and their latest results.
pub struct Telemetry {
    nvml: SharedState,
    metrics: SharedState,
    metrics_label: Option<String>,
    configured_uuid: Option<String>,
    embedded: bool,
    cancel: CancellationToken,
}

impl Telemetry {
    /// Starts the samplers the configuration asks for and returns at once; failures (no NVML, a bad
    /// URL, a refused connection) appear in [`Telemetry::view`]'s `unavailable`.
    ///
    /// # Panics
    /// Outside a Tokio runtime (the samplers are Tokio tasks).
    pub fn start(cfg: TelemetryConfig) -> Telemetry {
        let cancel = CancellationToken::new();
        let nvml = new_state(hz_interval(cfg.nvml_hz));
        let metrics = new_state(cfg.metrics_interval);
        let configured_uuid = match &cfg.nvml {
            NvmlChoice::Device(DeviceSelector::Uuid(u)) => Some(u.clone()),
            _ => None,
        };
        let device = match cfg.nvml {
            NvmlChoice::Off => None,
            NvmlChoice::Auto => Some(DeviceSelector::Index(0)),
            NvmlChoice::Device(d) => Some(d),
        };
        if let Some(device) = device {
            if !(cfg.nvml_hz.is_finite() && cfg.nvml_hz > 0.0 && cfg.nvml_hz <= 1000.0) {
                let reason = format!("sampling rate must be in (0, 1000] Hz, got {}", cfg.nvml_hz);
                lock(&nvml).record(Err(TelemetryError::Config(reason)), nvml::NVML_LABEL);
            } else {
                let sample = !cfg.embedded_emulator;
                tokio::spawn(start_nvml(
                    device,
                    sample,
                    Arc::clone(&nvml),
                    cancel.clone(),
                ));
            }
        }
        let mut metrics_label = None;
        if let Some(url) = cfg.metrics_url {
            let gpu_source = if cfg.embedded_emulator {
                Source::Emulator
            } else {
                Source::TritonMetrics
            };
            let interval = cfg.metrics_interval;
            let timeout = interval.clamp(Duration::from_millis(500), Duration::from_secs(5));
            let label = format!("metrics {url}");
            if interval.is_zero() || interval > Duration::from_secs(3600) {
                let reason = TelemetryError::Config(format!(
                    "scrape interval must be in (0, 1 h], got {interval:?}"
                ));
                lock(&metrics).record(Err(reason), &label);
            } else {
                match MetricsSource::new(&url, gpu_source, timeout) {
                    Ok(source) => {
                        tokio::spawn(run_sampler(
                            source,
                            interval,
                            Arc::clone(&metrics),
                            cancel.clone(),
                        ));
                    }
                    Err(e) => lock(&metrics).record(Err(e), &label),
                }
            }
            metrics_label = Some(label);
        }
        Telemetry {
            nvml,
            metrics,
            metrics_label,
            configured_uuid,
            embedded: cfg.embedded_emulator,
            cancel,
        }
    }

    /// The latest merged figures. No I/O: it reads what the samplers last stored.
    pub fn view(&self) -> GpuView {
        let now = Instant::now();
        let nvml = lock(&self.nvml);
        let metrics = lock(&self.metrics);
        let mut unavailable: Vec<String> = nvml
            .failure
            .iter()
            .chain(&metrics.failure)
            .cloned()
            .collect();
        let nvml_gpu = nvml.last.as_ref().and_then(|s| s.gpus.first());
        let mut candidates = Vec::with_capacity(2);
        // An embedded emulator's GPU is not the machine's: a local GPU's NVML figures would mislabel it.
        if !self.embedded
            && let Some(gpu) = nvml_gpu
        {
            candidates.push(Candidate {
                gpu,
                fresh: nvml.is_fresh(now),
            });
        }
        if let Some(sample) = &metrics.last {
            let want = self.configured_uuid.as_deref().or_else(|| {
                if self.embedded {
                    None
                } else {
                    nvml_gpu.and_then(|g| g.uuid.as_deref())
                }
            });
            let label = self.metrics_label.as_deref().unwrap_or("metrics");
            match pick_gpu(&sample.gpus, want) {
                Ok(Some(gpu)) => candidates.push(Candidate {
                    gpu,
                    fresh: metrics.is_fresh(now),
                }),
                Ok(None) => unavailable.push(format!(
                    "{label}: no GPU metrics (nv_gpu_*) in the response"
                )),
                Err(reason) => unavailable.push(format!("{label}: {reason}")),
            }
        }
        merge(now, &candidates, unavailable)
    }

    /// Stops the samplers; the last figures stay readable.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn new_state(interval: Duration) -> SharedState {
    Arc::new(Mutex::new(SourceState {
        interval,
        ..SourceState::default()
    }))
}

fn hz_interval(hz: f64) -> Duration {
    if hz.is_finite() && hz > 0.0 {
        Duration::from_secs_f64((1.0 / hz).min(3600.0))
    } else {
        Duration::from_millis(100)
    }
}

/// Opens NVML off the async threads (loading the library and `nvmlInit` can take a while on a big
/// machine), then samples it; a failure to open is recorded once and the task ends. With `sample`
/// false (an embedded emulator, whose GPU is not this machine's) it only reports whether NVML works.
async fn start_nvml(
    device: DeviceSelector,
    sample: bool,
    state: SharedState,
    cancel: CancellationToken,
) {
    let interval = lock(&state).interval;
    let opened = tokio::task::spawn_blocking(move || NvmlSource::open(device)).await;
    let opened =
        opened.unwrap_or_else(|e| Err(TelemetryError::Nvml(format!("loading thread failed: {e}"))));
    match opened {
        Ok(source) if sample => run_sampler(source, interval, state, cancel).await,
        Ok(_) => {}
        Err(e) => lock(&state).record(Err(e), nvml::NVML_LABEL),
    }
}

/// One read of each model's server-side request-duration quantiles from a `/metrics` endpoint
/// (see [`parse_request_summaries`]), as a run ends.
pub async fn fetch_request_summaries(
    url: &str,
    timeout: Duration,
) -> Result<std::collections::BTreeMap<String, Vec<(f64, f64)>>, TelemetryError> {
    let mut client = HttpClient::new(HttpUrl::parse(url)?, timeout, MAX_METRICS_BYTES);
    let text = client.get_text().await?;
    parse_request_summaries(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_is_chosen_by_index_or_uuid() {
        assert_eq!(
            "1".parse::<DeviceSelector>().unwrap(),
            DeviceSelector::Index(1)
        );
        let uuid = "GPU-9f8e7d6c-5b4a-4321-8765-abcdef012345";
        assert_eq!(
            uuid.parse::<DeviceSelector>().unwrap(),
            DeviceSelector::Uuid(uuid.into())
        );
        assert!(" ".parse::<DeviceSelector>().is_err());
    }

    #[tokio::test]
    async fn bad_settings_are_reported_as_unavailable_sources() {
        let t = Telemetry::start(TelemetryConfig {
            metrics_url: Some("https://triton:8002/metrics".into()),
            nvml: NvmlChoice::Device(DeviceSelector::Index(0)),
            nvml_hz: 0.0,
            ..TelemetryConfig::default()
        });
        let v = t.view();
        assert_eq!(v.unavailable.len(), 2, "{:?}", v.unavailable);
        assert!(v.unavailable[0].starts_with("NVML unavailable: sampling rate"));
        assert!(v.unavailable[1].starts_with("metrics https://triton:8002/metrics: bad URL"));
        assert!(v.utilization.is_none());
    }

    #[tokio::test]
    async fn nothing_asked_for_reports_nothing() {
        let t = Telemetry::start(TelemetryConfig {
            nvml: NvmlChoice::Off,
            ..TelemetryConfig::default()
        });
        assert_eq!(t.view(), GpuView::default());
    }
}
