//! The immutable picture of a run that the engine publishes every tick.
//!
//! Every consumer (TUI, headless report, recorder, replay) reads only these types, so they are plain
//! data: serde for recordings, `PartialEq` for replay tests. `history` is the one part that is not
//! recorded: replay rebuilds it by pushing each recorded snapshot through the same [`History::push`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::vocab::capacity::{CapacityView, WhatIfView};
pub use crate::vocab::client_bound::{ClientBound, ClientBoundReason, ClientView, Saturated};
use crate::vocab::quantiles::Quantiles;
use crate::vocab::spec::{DynamicBatching, Load, Sla};

/// Identifies a tenant for the whole run (indices shift when tenants are removed; ids do not).
pub type TenantId = u32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Tick number, from 0.
    pub seq: u64,
    /// Seconds since the run started (warm-up included).
    pub elapsed_s: f64,
    /// Seconds of the measured period so far (0 during warm-up).
    pub measured_s: f64,
    pub phase: Phase,
    pub session: String,
    pub target: TargetInfo,
    pub connection: Connection,
    /// Every tenant paused.
    pub paused: bool,
    pub window_s: f64,
    pub tick_s: f64,
    pub tenants: Vec<TenantView>,
    pub gpu: GpuView,
    pub cost: Option<CostView>,
    pub frontier: Option<FrontierView>,
    /// How far the live mix could grow (absent in recordings made before it existed).
    #[serde(default)]
    pub capacity: Option<CapacityView>,
    /// The dashboard's staged what-if, when one is staged.
    #[serde(default)]
    pub whatif: Option<WhatIfView>,
    /// Recent notices (newest last, bounded), e.g. a refused model load.
    pub notices: Vec<Notice>,
    /// Path of the recording being written, if any.
    pub recording: Option<String>,
    /// Why the recording stopped, when a write failed (a full disk): the recording is incomplete,
    /// and a headless run says so in its exit status.
    #[serde(default)]
    pub recording_error: Option<String>,
    /// Replay position, when these snapshots come from a recording rather than an engine.
    pub replay: Option<ReplayInfo>,
    /// Whether the load generator itself is the bottleneck, over the window and the measured period.
    #[serde(default)]
    pub client: ClientView,
    /// The target's model repository (for the model picker), refreshed every few seconds.
    pub repository: Vec<RepoModel>,
    /// Time series for charts; not recorded (see the module doc).
    #[serde(skip)]
    pub history: Arc<History>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReplayInfo {
    pub position_s: f64,
    pub length_s: f64,
    pub speed: f64,
    pub paused: bool,
}

/// One model in the target's repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoModel {
    pub name: String,
    /// Triton's state string (`READY`, `UNAVAILABLE`, …), empty when never loaded.
    pub state: String,
    pub loaded: bool,
    /// Resident GPU memory when loaded (or the catalog footprint for the emulator), when known.
    pub memory_bytes: Option<u64>,
    /// Whether it fits the GPU's free memory now, when known.
    pub fits: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Connecting,
    WarmingUp,
    Measuring,
    Finished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    Emulated,
    Triton,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub kind: TargetKind,
    /// gRPC `host:port`.
    pub address: String,
    /// Catalog GPU (emulated) or the device name reported by telemetry.
    pub gpu: Option<String>,
    pub server_version: Option<String>,
    /// Whether the server accepts repository load/unload (explicit model control).
    pub model_control: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnState {
    Connecting,
    Connected,
    Disconnected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub state: ConnState,
    pub last_error: Option<String>,
    /// Reconnect attempts since the connection was lost.
    pub retries: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub at_s: f64,
    pub level: NoticeLevel,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeLevel {
    Info,
    Warn,
    Error,
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantView {
    pub id: TenantId,
    pub model: String,
    pub load: Load,
    pub paused: bool,
    pub batch: u32,
    pub sla: Sla,
    /// As configured on the server (from ModelConfig), when known.
    pub instances: Option<u32>,
    pub dynamic_batching: Option<DynamicBatching>,
    pub max_batch: Option<u32>,
    /// Figures over the sliding window.
    pub window: WindowStats,
    /// Figures since the measured period began (the headless report's totals).
    pub totals: Totals,
    /// Server-side figures from diffed ModelStatistics over the window.
    pub server: Option<ServerWindow>,
    pub solo_peak: SoloPeak,
    /// Why the tenant could not be set up on the server (its latest attempt), while it cannot.
    #[serde(default)]
    pub setup_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WindowStats {
    /// Arrivals per second (scheduled sends).
    pub offered_per_s: f64,
    /// Successful completions per second.
    pub achieved_per_s: f64,
    /// Latency from the intended send time (no coordinated omission).
    pub latency_ms: Percentiles,
    /// Latency from the actual send time.
    pub service_latency_ms: Percentiles,
    /// Fraction of requests in the window that completed within the SLA (errors, drops count as
    /// misses); `None` when the window saw no requests.
    pub attainment: Option<f64>,
    /// The window's percentile ≤ the SLA latency and no errors; `None` with no requests.
    pub sla_met: Option<bool>,
    /// Completions within SLA per second.
    pub goodput_per_s: f64,
    pub errors: u64,
    pub dropped: u64,
    pub late: u64,
    pub in_flight: u32,
    /// Set when the generator could not keep this tenant's schedule over the window: its latencies
    /// then measure the client machine, not the target.
    #[serde(default)]
    pub client_bound: Option<ClientBound>,
    /// Set when the tenant's drops at the in-flight bound were the target's doing (its server held
    /// the requests): its latencies then measure the target's backlog, not this machine.
    #[serde(default)]
    pub saturated: Option<Saturated>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Totals {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub late: u64,
    /// Errors by gRPC status name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, …).
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first message of each code in `errors_by_code` (the server's own words where it sent
    /// some), so a failing run says why.
    #[serde(default)]
    pub first_error_by_code: BTreeMap<String, String>,
    /// Over the measured period.
    pub latency_ms: Percentiles,
    pub service_latency_ms: Percentiles,
    /// How late the client sent requests of the measured period, from their intended send times
    /// (a closed loop's from its predecessor's response); `None` before any send.
    #[serde(default)]
    pub send_lateness_ms: Option<Quantiles>,
    pub attainment: Option<f64>,
    pub sla_met: Option<bool>,
    pub achieved_per_s: f64,
    pub goodput_per_s: f64,
    /// Server-side figures over the measured period (diffed statistics).
    #[serde(default)]
    pub server: Option<ServerWindow>,
    /// Successful completions within the SLA latency (the count behind `goodput_per_s`).
    #[serde(default)]
    pub ok_within_sla: u64,
    /// The latencies behind `latency_ms`, counted at [`LATENCY_BUCKET_BOUNDS_US`].
    #[serde(default)]
    pub latency_buckets: LatencyBuckets,
    /// The latencies behind `service_latency_ms`, counted the same way.
    #[serde(default)]
    pub service_latency_buckets: LatencyBuckets,
    /// As [`WindowStats::client_bound`], over the measured period.
    #[serde(default)]
    pub client_bound: Option<ClientBound>,
    /// As [`WindowStats::saturated`], over the measured period.
    #[serde(default)]
    pub saturated: Option<Saturated>,
}

/// Upper bounds (µs) of the latency buckets a run counts for Prometheus histograms: dense from
/// 1 ms to a few hundred, where CNN serving SLAs sit, with the usual SLA figures (10, 25, 50,
/// 100, 200, 500 ms…) on a bound so that a bucket reads as "within the SLA".
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 26] = [
    500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000,
    75_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 750_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000,
];

/// Latencies counted per bucket of [`LATENCY_BUCKET_BOUNDS_US`], cumulative over a run: what a
/// Prometheus histogram needs, which percentiles alone cannot give (they do not add up across
/// tenants or processes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencyBuckets {
    /// `counts[i]`: latencies above bound `i − 1` and at or below bound `i`; the last entry
    /// counts those above every bound. Empty while nothing was counted.
    pub counts: Vec<u64>,
    /// Sum of the counted latencies, in milliseconds.
    pub sum_ms: f64,
}

/// Per-inference server-side times (µs) and batching over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ServerWindow {
    pub queue_us: f64,
    pub compute_input_us: f64,
    pub compute_infer_us: f64,
    pub compute_output_us: f64,
    /// Mean time per successful request inside the server, arrival to response (Triton's
    /// `success` duration), µs: what the client's latency holds beyond its transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_us: Option<f64>,
    pub avg_batch: f64,
    pub inferences_per_s: f64,
    pub executions_per_s: f64,
}

impl ServerWindow {
    /// The server's time per request in ms: its `success` duration, else (a server that reports
    /// only the parts) queue plus compute; `None` when it reported neither.
    pub fn per_request_ms(&self) -> Option<f64> {
        let parts =
            self.queue_us + self.compute_input_us + self.compute_infer_us + self.compute_output_us;
        self.request_us
            .or((parts > 0.0).then_some(parts))
            .map(|us| us / 1000.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeakKind {
    /// Computed by the emulator in virtual time.
    Computed,
    /// Measured by `perseus probe` against a real server (cached).
    Measured,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SoloPeak {
    pub kind: PeakKind,
    /// Requests per second at which the tenant alone still meets its SLA.
    pub per_s: Option<f64>,
}

impl SoloPeak {
    pub const UNKNOWN: SoloPeak = SoloPeak {
        kind: PeakKind::Unknown,
        per_s: None,
    };
}

/// Where a GPU figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, PartialOrd, Ord)]
pub enum Source {
    Nvml,
    TritonMetrics,
    Emulator,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Nvml => "nvml",
            Source::TritonMetrics => "metrics",
            Source::Emulator => "emulator",
        }
    }
}

/// One GPU figure with its provenance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub value: f64,
    pub source: Source,
    /// How old the sample was when the snapshot was built.
    pub age_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuView {
    pub name: Option<String>,
    pub uuid: Option<String>,
    /// Fraction 0–1 of time anything ran (NVML's definition).
    pub utilization: Option<Reading>,
    /// Fraction 0–1 of SM capacity in use, time-averaged (where known).
    pub sm_activity: Option<Reading>,
    pub memory_used_bytes: Option<Reading>,
    pub memory_total_bytes: Option<Reading>,
    pub power_w: Option<Reading>,
    pub power_limit_w: Option<Reading>,
    pub sm_clock_mhz: Option<Reading>,
    pub temperature_c: Option<Reading>,
    /// Per-process GPU memory (NVML), bytes.
    pub processes: Vec<ProcessMemory>,
    /// Per-model resident memory, bytes, where the source knows it.
    pub model_memory: Vec<(String, u64)>,
    /// Sources that could not be used, with the reason ("NVML unavailable: …").
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub name: Option<String>,
    pub used_bytes: u64,
}

/// What the shared GPU costs, live. Savings are not here: at the operating point they compare a
/// partly idle GPU with baselines sized to the same load, which says nothing (see [`CapacityView`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostView {
    /// Catalog instance name, or `None` for a literal price.
    pub instance: Option<String>,
    pub usd_per_hour: f64,
    pub throughput_per_s: f64,
    pub goodput_per_s: f64,
    pub usd_per_million: Option<f64>,
    pub goodput_usd_per_million: Option<f64>,
    pub monthly_usd: f64,
    /// Σ achievedᵢ / peakᵢ over tenants with a known peak; `None` when any peak is unknown.
    pub dedicated_equivalents: Option<f64>,
    /// Σ ⌈achievedᵢ / peakᵢ⌉.
    pub dedicated_instances: Option<u32>,
    pub dedicated_usd_per_hour: Option<f64>,
}

/// The PERSEUS frontier for two tenants: dedicated peaks on the axes, the straight time-slicing
/// line between them, and the operating point with its trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierView {
    /// (tenant, model, solo peak per second) for the x and y axes.
    pub x: (TenantId, String, f64),
    pub y: (TenantId, String, f64),
    /// Current achieved rates (x, y).
    pub point: (f64, f64),
    /// The capacity point on the same ray (k × the offered rates), when known for this setup.
    #[serde(default)]
    pub capacity_point: Option<(f64, f64)>,
}

/// Points per shared block of a [`Series`].
const SERIES_BLOCK: usize = 64;

/// Bounded ring of `(t_s, value)` points.
///
/// The engine publishes its history with every snapshot, so a clone must be cheap: points live in
/// shared blocks of [`SERIES_BLOCK`], every block but the newest full and immutable. A clone copies
/// the block pointers, and a push after a clone copies at most the newest block.
#[derive(Debug, Clone, Default)]
pub struct Series {
    blocks: std::collections::VecDeque<Arc<Vec<(f64, f64)>>>,
    /// Points of the oldest block already dropped from the ring.
    skip: usize,
    len: usize,
    capacity: usize,
}

impl Series {
    pub fn with_capacity(capacity: usize) -> Self {
        Series {
            capacity: capacity.max(1),
            ..Series::default()
        }
    }

    pub fn push(&mut self, t_s: f64, value: f64) {
        if self.len == self.capacity.max(1) {
            self.skip += 1;
            self.len -= 1;
            if self.blocks.front().is_some_and(|b| self.skip >= b.len()) {
                self.blocks.pop_front();
                self.skip = 0;
            }
        }
        if self.blocks.back().is_none_or(|b| b.len() == SERIES_BLOCK) {
            self.blocks
                .push_back(Arc::new(Vec::with_capacity(SERIES_BLOCK)));
        }
        if let Some(block) = self.blocks.back_mut() {
            Arc::make_mut(block).push((t_s, value));
            self.len += 1;
        }
    }

    /// The `i`-th point, oldest first. Every block before the newest is full, so the index maps
    /// straight onto a block and an offset.
    fn get(&self, i: usize) -> (f64, f64) {
        let j = self.skip + i;
        self.blocks
            .get(j / SERIES_BLOCK)
            .and_then(|b| b.get(j % SERIES_BLOCK))
            .copied()
            .unwrap_or((f64::NAN, f64::NAN))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (f64, f64)> + ExactSizeIterator + '_ {
        (0..self.len).map(|i| self.get(i))
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.len.checked_sub(1).map(|i| self.get(i))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl PartialEq for Series {
    fn eq(&self, other: &Self) -> bool {
        self.capacity == other.capacity && self.len == other.len && self.iter().eq(other.iter())
    }
}

/// Chart data, one bounded series per figure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// Points kept per series (the longest chart window divided by the tick).
    pub capacity: usize,
    pub tenants: BTreeMap<TenantId, TenantHistory>,
    pub gpu_util: Series,
    pub gpu_sm: Series,
    pub dedicated_equivalents: Series,
    /// Frontier operating points (x, y) in achieved req/s.
    pub frontier_trail: Series,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantHistory {
    pub p99_ms: Series,
    pub achieved_per_s: Series,
    pub attainment: Series,
}

impl History {
    /// Ten minutes of points at the given tick.
    pub fn for_tick(tick_s: f64) -> Self {
        let capacity = (600.0 / tick_s.max(0.01)).ceil() as usize;
        History {
            capacity,
            gpu_util: Series::with_capacity(capacity),
            gpu_sm: Series::with_capacity(capacity),
            dedicated_equivalents: Series::with_capacity(capacity),
            frontier_trail: Series::with_capacity(capacity),
            tenants: BTreeMap::new(),
        }
    }

    /// Appends the figures of one snapshot; the engine and replay both build history this way.
    pub fn push(&mut self, snap: &Snapshot) {
        let t = snap.elapsed_s;
        let capacity = self.capacity;
        self.tenants
            .retain(|id, _| snap.tenants.iter().any(|tv| tv.id == *id));
        for tv in &snap.tenants {
            let h = self.tenants.entry(tv.id).or_insert_with(|| TenantHistory {
                p99_ms: Series::with_capacity(capacity),
                achieved_per_s: Series::with_capacity(capacity),
                attainment: Series::with_capacity(capacity),
            });
            h.p99_ms.push(t, tv.window.latency_ms.p99);
            h.achieved_per_s.push(t, tv.window.achieved_per_s);
            if let Some(a) = tv.window.attainment {
                h.attainment.push(t, a);
            }
        }
        if let Some(u) = snap.gpu.utilization {
            self.gpu_util.push(t, u.value);
        }
        if let Some(s) = snap.gpu.sm_activity {
            self.gpu_sm.push(t, s.value);
        }
        if let Some(e) = snap.cost.as_ref().and_then(|c| c.dedicated_equivalents) {
            self.dedicated_equivalents.push(t, e);
        }
        if let Some(f) = &snap.frontier {
            self.frontier_trail.push(f.point.0, f.point.1);
        }
    }
}
