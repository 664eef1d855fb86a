//! What the engine needs from the rest of the program, injected by the app.
//!
//! The engine is the client side of Perseus: it must not reach into the emulator (DESIGN §1), yet
//! for an emulated target the solo peaks are computed by the emulator's model and the GPU figures may
//! come from its metrics. The app wires those in through these small interfaces.

use std::path::PathBuf;

use crate::engine::error::PersistError;
use crate::vocab::capacity::CapacityEstimate;
use crate::vocab::snapshot::{GpuView, Snapshot, SoloPeak};
use crate::vocab::spec::{DynamicBatching, RunSpec, TenantSpec};

/// A model's server-side configuration as read back from the server.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerModel {
    pub max_batch: u32,
    pub instances: u32,
    pub dynamic_batching: Option<DynamicBatching>,
    /// Read from the server's ModelConfig; false when the server has none (a plain KServe-v2
    /// server) and the figures above are what Perseus assumed to build its requests.
    pub reported: bool,
}

/// What is known about the target beyond its protocol: solo peaks and model footprints.
pub trait TargetKnowledge: Send + Sync {
    /// The highest rate at which this tenant alone meets its SLA on this GPU.
    /// May be slow (a virtual-time search): the engine calls it off the async runtime.
    fn solo_peak(&self, tenant: &TenantSpec, server: &ServerModel) -> SoloPeak;
    /// GPU memory the model occupies when loaded, where known.
    fn model_memory(&self, model: &str) -> Option<u64>;
    /// The capacity of a mix and each tenant's predicted figures, from a model of the GPU.
    /// Slow (many virtual-time runs): the engine calls it on a blocking thread, never on its tick.
    fn capacity(&self, query: &CapacityQuery) -> CapacityEstimate {
        let _ = query;
        CapacityEstimate::Unknown {
            reason: "no model of this target's GPU".to_string(),
        }
    }
}

/// A mix whose capacity is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityQuery {
    /// Each tenant as the server runs it: instances and batching as read back, where known.
    pub tenants: Vec<TenantSpec>,
    /// The GPU's device name as telemetry reports it (NVML or the metrics), where known.
    pub gpu_name: Option<String>,
}

/// Knows nothing: every peak unknown (a real server with no probe cache).
pub struct NoKnowledge;

impl TargetKnowledge for NoKnowledge {
    fn solo_peak(&self, _: &TenantSpec, _: &ServerModel) -> SoloPeak {
        SoloPeak::UNKNOWN
    }
    fn model_memory(&self, _: &str) -> Option<u64> {
        None
    }
}

/// The current GPU figures; called every tick, must not block.
pub trait GpuTelemetry: Send + Sync {
    fn view(&self) -> GpuView;
}

/// No telemetry source at all.
pub struct NoTelemetry;

impl GpuTelemetry for NoTelemetry {
    fn view(&self) -> GpuView {
        GpuView::default()
    }
}

/// Where snapshots are appended while recording. The engine calls it from a task of its own, so a
/// slow disk delays the recording, never the tick.
pub trait SnapshotSink: Send {
    fn write(&mut self, snapshot: &Snapshot) -> Result<(), PersistError>;
    /// Where the recording goes, for the header line of the screen.
    fn path(&self) -> String;
}

/// Persisting sessions and recordings (file formats live in `session`).
pub trait Persistence: Send + Sync {
    /// Writes the setup atomically and returns the path written.
    fn save_session(&self, spec: &RunSpec, path: Option<PathBuf>) -> Result<PathBuf, PersistError>;
    fn start_recording(&self, spec: &RunSpec) -> Result<Box<dyn SnapshotSink>, PersistError>;
}

/// Cannot save or record (tests, or a read-only setup).
pub struct NoPersistence;

impl Persistence for NoPersistence {
    fn save_session(&self, _: &RunSpec, _: Option<PathBuf>) -> Result<PathBuf, PersistError> {
        Err(PersistError::Unavailable { what: "saving" })
    }
    fn start_recording(&self, _: &RunSpec) -> Result<Box<dyn SnapshotSink>, PersistError> {
        Err(PersistError::Unavailable { what: "recording" })
    }
}
