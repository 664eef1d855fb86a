//! The emulator's GPU: a pure, event-driven performance model with no I/O and no clock of its own.
//!
//! Per (model, GPU) a batch of b images alone takes L(b) = α + β·b and keeps u(b) = β·b / L(b) of the SMs
//! busy. Batches running together share the GPU: with U = Σ uᵢ each progresses at
//! 1 / (max(1, U) · (1 + Σ γᵢⱼ·uⱼ)) of its solo speed, the sum over batches of *other* models, so overlap
//! pays off while the SMs have idle time, a model's instances only share the SMs, and interference γ taxes
//! neighbours of a different model. Around that sit Triton's per-model FIFO queue, its instances and its
//! dynamic batcher, the copies in and out on one copy engine per direction over the GPU's host link
//! (overlapping with compute), a cap on batches computing at once, memory accounting, and NVML-like
//! utilization, SM activity and power.
//!
//! The server drives [`Sim`] with wall-clock nanoseconds; tests and what-ifs drive it in virtual time
//! through [`simulate`], [`solo_peak`] and [`best_colocation`].

mod batcher;
mod capacity;
mod catalog;
mod core;
mod early;
#[cfg(test)]
mod fixtures;
mod peak;
mod threshold;
mod traffic;
mod types;
mod whatif;

pub use self::capacity::{
    CapacityError, CapacityOptions, MixArrivals, MixCapacity, MixTenant, TenantOutcome, capacity,
    evaluate, evaluate_watched,
};
pub use self::catalog::{engine_bytes_per_image, gpu_setup, model_setup};
pub use self::core::Sim;
pub use self::early::Missed;
pub use self::traffic::{ClosedLoop, Demand, Lateness};
pub use peak::{GridRun, PeakGrid, solo_peak, solo_peak_with};
pub use types::{
    BatchCounters, COPY_SETUP_NS, Completion, GpuCounters, GpuSetup, ModelCounters, ModelId,
    ModelSetup, Mps, Nanos, PairGamma, SimError,
};
pub use whatif::{
    Arrivals, Colocation, GapSource, ModelReport, Offered, SearchOptions, SimReport, Sla, Workload,
    best_colocation, colocation_point, simulate, simulate_demands, simulate_offered,
    simulate_watched,
};
