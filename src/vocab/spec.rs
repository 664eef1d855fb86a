//! The validated run configuration: what a session file, CLI flags and the TUI's edits resolve to.
//!
//! Parsing lives elsewhere in `session`; these types are what the engine consumes, so they carry no
//! file positions and every value in them has already been checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A whole scenario: target, tenants, SLAs, price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub name: String,
    /// Measured duration of a headless run.
    pub duration: Duration,
    /// Warm-up before measurement starts (headless runs).
    pub warmup: Duration,
    /// Sliding window for live percentiles and SLA attainment.
    pub window: Duration,
    /// Engine tick: how often a snapshot is published.
    pub tick: Duration,
    pub target: TargetSpec,
    /// How requests carry their tensors (`[target] transport`); `None`: the target's default,
    /// shared memory for the embedded emulator and plain gRPC for a Triton.
    #[serde(default)]
    pub transport: Option<Transport>,
    pub cost: CostSpec,
    pub tenants: Vec<TenantSpec>,
}

impl RunSpec {
    /// Defaults that the session file and flags override.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
    pub const DEFAULT_WARMUP: Duration = Duration::from_secs(5);
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    pub const DEFAULT_TICK: Duration = Duration::from_millis(250);
}

/// What the run drives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TargetSpec {
    /// The embedded emulator with this catalog GPU (and optional calibration profile).
    Emulated {
        gpu: String,
        profile: Option<String>,
    },
    /// A real Triton (or a standalone emulator treated as one).
    Triton {
        /// `host:port` of the gRPC endpoint.
        address: String,
        /// Prometheus endpoint; defaults to port 8002 on the same host.
        metrics: Option<String>,
        /// GPU index or UUID to follow with NVML.
        gpu: Option<String>,
        tls: Option<TlsSpec>,
    },
}

/// How a tenant's requests carry their tensors to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Transport {
    /// Inside each gRPC message.
    #[default]
    Grpc,
    /// In Triton's system shared memory, written once per tenant: only for a server on this machine.
    Shm,
}

impl Transport {
    /// The session file's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Shm => "shm",
        }
    }
}

/// TLS settings for a remote Triton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TlsSpec {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub domain: Option<String>,
}

/// Where the hourly price comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CostSpec {
    /// A catalog instance such as `aws:g4dn.xlarge`.
    Instance(String),
    /// A literal price per GPU-hour.
    UsdPerHour(f64),
}

impl Default for CostSpec {
    fn default() -> Self {
        CostSpec::Instance("aws:g4dn.xlarge".to_string())
    }
}

/// One tenant: a model driven by its own load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSpec {
    pub model: String,
    pub load: Load,
    /// Images per request.
    pub batch: u32,
    pub sla: Sla,
    /// Server-side instance count, applied where the server allows model control.
    pub instances: Option<u32>,
    pub dynamic_batching: Option<DynamicBatching>,
    pub data: InputData,
    /// Requests outstanding at the server at most. An arrival beyond it waits in a client-side
    /// backlog of up to [`TenantSpec::BACKLOG_FACTOR`] × this many (the wait counts in latency from
    /// the intended send time, not in service latency) and is dropped only when that is full too.
    /// The load generator bounds the bytes in flight as well (per tenant and per run), which for
    /// large tensors lowers this count.
    pub max_in_flight: u32,
    /// Per-request deadline; expiry counts as an error.
    pub deadline: Duration,
    /// Input tensors to send instead of those in the model's metadata, for servers whose metadata
    /// is silent about them (non-Triton KServe-v2 servers); empty: the metadata's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<DeclaredInput>,
}

/// One input tensor declared in the session: `{ name = "predict", datatype = "FP32", shape = [4] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredInput {
    pub name: String,
    /// A Triton datatype name (`FP32`, `INT64`, …).
    pub datatype: String,
    /// The dimensions of one item, as Triton's `dims`: each request carries `[batch, …shape]`.
    pub shape: Vec<i64>,
}

impl TenantSpec {
    pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;
    pub const BACKLOG_FACTOR: u32 = 4;
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
}

/// Open loop (a rate and an arrival process) or closed loop (N always in flight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Load {
    Rate { per_s: f64, arrival: Arrival },
    Concurrency(u32),
}

/// Arrival processes for open-loop load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Arrival {
    Constant,
    Poisson,
    /// On/off modulated Poisson: during "on" periods arrivals come at `burst_factor` × the mean
    /// rate, during "off" periods at the rate that keeps the long-run mean equal to the target.
    Bursty {
        burst_factor: f64,
        mean_on: Duration,
        mean_off: Duration,
    },
    /// Inter-arrival gaps in µs, looped (perf_analyzer's `--request-intervals` format).
    Trace {
        path: PathBuf,
        gaps_us: Arc<Vec<u64>>,
    },
}

impl Arrival {
    /// A short label for tables and JSON.
    pub fn label(&self) -> &'static str {
        match self {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
            Arrival::Bursty { .. } => "bursty",
            Arrival::Trace { .. } => "trace",
        }
    }
}

/// A latency SLA: `latency_ms` at `percentile` (0 < percentile < 100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    pub latency_ms: f64,
    pub percentile: f64,
}

/// Triton's dynamic batcher settings for a tenant's model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DynamicBatching {
    pub max_queue_delay_us: u64,
    pub preferred_batch_sizes: Vec<u32>,
}

/// What the input tensors hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum InputData {
    #[default]
    Zero,
    Random,
}

/// A session's targets, each with its own tenants and price: what `[[target]]` tables resolve to.
/// A session with a single `[target]` is a fleet of one unnamed target whose [`RunSpec`] is
/// exactly what [`RunSpec`]-only callers get, so they keep working unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSpec {
    pub targets: Vec<NamedTarget>,
}

/// One target of a session with its tenants; every target's run shares the session's name,
/// duration, warm-up, window and tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTarget {
    /// The `[[target]]`'s `name`; `None` for a single `[target]`, which has none.
    pub name: Option<String>,
    pub spec: RunSpec,
}

impl NamedTarget {
    /// The name Prometheus labels and reports use for a target (see [`DEFAULT_TARGET_NAME`]).
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_TARGET_NAME)
    }
}

/// What an unnamed target is called where a name is needed (labels, reports).
pub const DEFAULT_TARGET_NAME: &str = "default";

impl FleetSpec {
    /// One unnamed target: a single-target run.
    pub fn single(spec: RunSpec) -> Self {
        FleetSpec {
            targets: vec![NamedTarget { name: None, spec }],
        }
    }

    /// Whether the session drives several targets (and so reports per target).
    pub fn is_fleet(&self) -> bool {
        self.targets.len() > 1
    }

    /// Every tenant of every target, in target order.
    pub fn tenants(&self) -> impl Iterator<Item = (&NamedTarget, &TenantSpec)> {
        self.targets
            .iter()
            .flat_map(|t| t.spec.tenants.iter().map(move |x| (t, x)))
    }
}
