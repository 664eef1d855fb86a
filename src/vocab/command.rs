//! What the TUI and replay ask of a running engine.

use std::path::PathBuf;
use std::time::Duration;

use crate::vocab::snapshot::TenantId;
use crate::vocab::spec::{DynamicBatching, TenantSpec};

/// A request to change the run. The engine applies it within one tick and reports failures as
/// notices in the next snapshot (it never blocks the sender waiting for the server).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// New open-loop rate (req/s); takes effect from now, with no catch-up burst.
    SetRate { tenant: TenantId, per_s: f64 },
    /// New closed-loop concurrency.
    SetConcurrency { tenant: TenantId, n: u32 },
    /// Pause one tenant, or all with `None`.
    Pause { tenant: Option<TenantId> },
    /// Resume one tenant, or all with `None`.
    Resume { tenant: Option<TenantId> },
    /// Add a tenant, loading its model first when the server allows explicit model control.
    AddTenant(Box<TenantSpec>),
    /// Remove a tenant, unloading its model when no other tenant uses it and the server allows.
    RemoveTenant { tenant: TenantId },
    /// Change the model's server-side configuration (reloads it where allowed).
    Reconfigure {
        tenant: TenantId,
        instances: Option<u32>,
        dynamic_batching: BatchingChange,
    },
    /// New sliding window for percentiles and attainment.
    SetWindow(Duration),
    /// Write the current setup (tenants, rates, SLAs, target, price) as a session file, atomically;
    /// `None` picks a fresh name in the data directory. The path written is reported as a notice.
    SaveSession { path: Option<PathBuf> },
    /// Start or stop appending snapshots to a recording in the data directory.
    SetRecording(bool),
    /// Predict this staged setup (capacity, p95, attainment) without applying it; `None` drops the
    /// staging. The answer comes in the snapshot's `whatif`, tagged with `stage`.
    WhatIf(Option<StagedSetup>),
    /// Apply the staged setup of this stage at once (rates, instances, batching, tenants added and
    /// removed) and drop the staging; a stale stage is refused with a notice.
    ApplyStaged { stage: u64 },
    /// End the run: in-flight requests are abandoned and a final snapshot is published.
    Stop,
}

/// A setup the dashboard has staged: every tenant as it would run, live ones with their id.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedSetup {
    pub stage: u64,
    pub tenants: Vec<(Option<TenantId>, TenantSpec)>,
}

/// What a reconfiguration does to a model's dynamic batcher.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchingChange {
    /// Leave the batcher as the server has it now.
    Keep,
    /// Turn dynamic batching off (each request runs as its own batch).
    Off,
    /// Batch dynamically with these settings.
    Set(DynamicBatching),
}

/// What the TUI asks of a replay (in place of an engine).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayCommand {
    TogglePause,
    /// Jump by this many seconds of recorded time (negative: back).
    Seek(f64),
    /// 1× → 2× → 4× → 1×.
    CycleSpeed,
}
