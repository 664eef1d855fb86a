//! The emulator's GPU: a pure, event-driven performance model with no I/O and no clock of its own.
//!
//! Per (model, GPU) a batch of b images alone takes L(b) = α + β·b and keeps u(b) = β·b / L(b) of the SMs
//! busy. Batches running together share the GPU: with U = Σ uᵢ each progresses at
//! 1 / (max(1, U) · (1 + γ·(U − uᵢ))) of its solo speed, so overlap pays off while the SMs have idle time and
//! interference γ taxes every neighbour. Around that sit Triton's per-model FIFO queue, its instances and its
//! dynamic batcher, the copies in and out (compute_input / compute_output at [`PCIE_BYTES_PER_S`]), memory
//! accounting, and NVML-like utilization, SM activity and power.
//!
//! The server drives [`Sim`] with wall-clock nanoseconds; tests and what-ifs drive it in virtual time
//! through [`simulate`], [`solo_peak`] and [`best_colocation`].

mod batcher;
mod catalog;
mod core;
mod types;
mod whatif;

pub use self::catalog::{gpu_setup, model_setup};
pub use self::core::Sim;
pub use types::{
    BatchCounters, COPY_SETUP_NS, Completion, GpuCounters, GpuSetup, ModelCounters, ModelId,
    ModelSetup, Nanos, PCIE_BYTES_PER_S, SimError,
};
pub use whatif::{
    Arrivals, Colocation, ModelReport, SearchOptions, SimReport, Sla, Workload, best_colocation,
    colocation_point, simulate, solo_peak, solo_peak_with,
};
