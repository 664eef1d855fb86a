//! What every telemetry source produces, and the loop that polls one.
//!
//! Sources differ in rate (NVML 10 Hz, `/metrics` 1 Hz), in what they know (only NVML sees processes,
//! only the emulator knows SM activity) and in how they fail; they share the shape of their output so the
//! view can merge them figure by figure and say where each figure came from.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::vocab::snapshot::{ProcessMemory, Reading, Source};

use super::TelemetryError;

/// One figure as read: its value, who read it and when, so a view built later can state its age.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub source: Source,
    pub at: Instant,
}

impl Figure {
    pub fn new(value: f64, source: Source, at: Instant) -> Figure {
        Figure { value, source, at }
    }

    /// The figure as the snapshot carries it, aged relative to `now`.
    pub fn reading(&self, now: Instant) -> Reading {
        Reading {
            value: self.value,
            source: self.source,
            age_ms: now.saturating_duration_since(self.at).as_millis() as u64,
        }
    }
}

/// One GPU as one source saw it. Units are the snapshot's: fractions 0–1, bytes, watts, MHz, °C.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuSample {
    pub name: Option<String>,
    /// NVML's UUID (`GPU-…`), the same string Triton uses in its `gpu_uuid` label.
    pub uuid: Option<String>,
    pub utilization: Option<Figure>,
    pub sm_activity: Option<Figure>,
    pub memory_used_bytes: Option<Figure>,
    pub memory_total_bytes: Option<Figure>,
    pub power_w: Option<Figure>,
    pub power_limit_w: Option<Figure>,
    pub sm_clock_mhz: Option<Figure>,
    pub temperature_c: Option<Figure>,
    /// Cumulative energy in joules (Triton's `nv_energy_consumption`).
    pub energy_j: Option<Figure>,
    pub processes: Vec<ProcessMemory>,
    pub model_memory: Vec<(String, u64)>,
}

/// Everything one poll of a source returned.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSample {
    pub at: Instant,
    /// Every GPU the source reports (NVML: the chosen device; `/metrics`: one per `gpu_uuid`).
    pub gpus: Vec<GpuSample>,
}

/// A telemetry source that can be polled repeatedly.
///
/// `poll` is async so that one loop ([`run_sampler`]) drives every source; a source whose reads block
/// (NVML's FFI calls) moves them onto a blocking thread itself.
pub trait GpuSource: Send + 'static {
    /// The prefix of this source's line in the view's `unavailable` list, e.g. `"NVML unavailable"`
    /// or `"metrics http://host:8002/metrics"`.
    fn label(&self) -> String;

    fn poll(&mut self) -> impl Future<Output = Result<SourceSample, TelemetryError>> + Send;
}

/// The latest state of one source, shared between its sampler and `Telemetry::view`.
#[derive(Debug, Default)]
pub struct SourceState {
    pub last: Option<SourceSample>,
    /// The current failure (`"<label>: <reason>"`), cleared by the next good poll.
    pub failure: Option<String>,
    /// How often the source is polled, so the view can tell a fresh sample from a stale one.
    pub interval: Duration,
}

impl SourceState {
    pub fn record(&mut self, result: Result<SourceSample, TelemetryError>, label: &str) {
        match result {
            Ok(sample) => {
                self.last = Some(sample);
                self.failure = None;
            }
            Err(reason) => {
                let line = format!("{label}: {reason}");
                if self.failure.as_deref() != Some(line.as_str()) {
                    tracing::warn!("{line}");
                }
                self.failure = Some(line);
            }
        }
    }

    /// Whether the last good sample is recent enough to prefer over another source's.
    pub fn is_fresh(&self, now: Instant) -> bool {
        let limit = (self.interval * 3).max(Duration::from_secs(2));
        self.last
            .as_ref()
            .is_some_and(|s| now.saturating_duration_since(s.at) <= limit)
    }
}

pub type SharedState = Arc<Mutex<SourceState>>;

/// Locks a source's state; a panic in another holder cannot leave it half-written (every update is
/// a whole-field assignment), so a poisoned lock is still safe to read.
pub fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, SourceState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `source` every `interval` until `cancel` fires, recording each result in `state`.
pub async fn run_sampler<S: GpuSource>(
    mut source: S,
    interval: Duration,
    state: SharedState,
    cancel: CancellationToken,
) {
    let label = source.label();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            r = source.poll() => r,
        };
        lock(&state).record(result, &label);
    }
}
