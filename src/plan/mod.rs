//! `perseus plan`: the cheapest placement of a session's tenants onto priced GPUs that still meets
//! every SLA with headroom, checked in virtual time on the emulator's GPU model.
//!
//! It sits on neither side of the client/emulator wall: it reads sessions, catalogs and prices and
//! asks the emulator's virtual-time core ([`crate::emulator::sim`]) what each mix would do, so that
//! a plan is verified by the same model `perseus predict` and the solo peaks use. The pieces:
//! [`input`] turns a session and the flags into what is planned, [`oracle`] answers "does this mix fit
//! on this GPU?" (memoised), [`search`] places tenants with those answers, [`outcome`] describes the
//! plan and its baselines, and [`sessions`] writes one session file per planned GPU.

mod input;
mod oracle;
mod outcome;
mod parallel;
mod search;
mod sessions;

use crate::emulator::sim::{GapSource, SimError};
use crate::session::SessionError;
use crate::vocab::spec::Arrival;

pub use input::{
    DEFAULT_HEADROOM, DEFAULT_SEED, GpuOption, PlanInput, PlanOptions, gpu_options,
    tenants_without_sla,
};
pub use oracle::{Choice, Dominated, MAX_SHARDS, Mix, Sharing, VirtualTime};
pub use outcome::{
    Baselines, GpuPlan, PlacedTenant, Placement, PlanReport, Ranked, SCHEMA, TimeSliced, plan,
    render_table,
};
pub use search::{Bin, Item, Oracle, cost, dedicated, search, search_from};
pub use sessions::{gpu_session, write_sessions};

/// Where the arrivals of a tenant come from: the load generator's own processes, so that a plan is
/// checked against the arrivals `perseus run` would send. The wiring supplies it because the load
/// generator belongs to the client side, which this module does not import. Shared (`Arc`) because
/// the capacity code keeps each tenant's process for the runs it makes.
pub trait ArrivalSource: Send + Sync {
    /// Gaps in seconds between arrivals of `arrival` at `per_s`, seeded with `seed`.
    fn gaps(&self, arrival: &Arrival, per_s: f64, seed: u64) -> GapSource<'static>;
}

/// Reports how far planning has come (the command draws it as a progress bar).
pub trait Progress: Sync {
    /// A new stage of `total` steps begins.
    fn stage(&self, name: &str, total: u64);
    /// `n` more steps of the current stage are done.
    fn advance(&self, n: u64);
}

/// Progress that goes nowhere, for tests and benchmarks.
pub struct Quiet;

impl Progress for Quiet {
    fn stage(&self, _name: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
}

/// Why a session cannot be planned. Every variant names the tenant (1-based, as in the file, with
/// its model) or the flag that was wrong, and why.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Session(#[from] SessionError),
    #[error("the session has no tenants: there is nothing to place")]
    NoTenants,
    #[error(
        "tenant {index} ({model}) is closed-loop (concurrency = {concurrency}): a plan places \
         request rates, so give it `rate = …` instead"
    )]
    ClosedLoop {
        index: usize,
        model: String,
        concurrency: u32,
    },
    #[error("unknown GPU '{name}' in --gpus{}; the catalog has {known}", hint(.suggestion))]
    UnknownGpu {
        name: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("unknown price provider '{name}' in --prices{}; the price catalog has {known}", hint(.suggestion))]
    UnknownProvider {
        name: String,
        suggestion: Option<String>,
        known: String,
    },
    #[error("no GPU to plan on: {0}")]
    NoGpus(String),
    #[error(
        "tenant {index} ({model}) has no performance entry for any GPU considered ({gpus}){}",
        profile.as_ref().map(|p| format!(" under profile '{p}'")).unwrap_or_default()
    )]
    NoProfile {
        index: usize,
        model: String,
        gpus: String,
        profile: Option<String>,
    },
    #[error(
        "tenant {index} ({model}): no GPU meets its SLA p{percentile} ≤ {latency_ms} ms; the best \
         p{percentile} any GPU reaches is {best_ms:.2} ms (on {best_gpu})"
    )]
    Unmeetable {
        index: usize,
        model: String,
        latency_ms: f64,
        percentile: f64,
        best_ms: f64,
        best_gpu: String,
    },
    #[error(
        "tenant {index} ({model}): {rate_per_s} req/s with {headroom_pct}% headroom needs more \
         than {max_shards} GPUs of every type considered"
    )]
    TooLarge {
        index: usize,
        model: String,
        rate_per_s: f64,
        headroom_pct: f64,
        max_shards: u32,
    },
    #[error("the GPU model refused a setup: {0}")]
    Sim(#[from] SimError),
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}
