//! The engine's hooks as the wiring fills them: telemetry, what is known about a target, session
//! validation against the catalogs, and saving and recording to the data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::commands::capacity;
use crate::commands::target::Target;
use crate::emulator::sim;
use crate::engine::PersistError;
use crate::engine::hooks::{
    CapacityQuery, GpuTelemetry, Persistence, ServerModel, SnapshotSink, TargetKnowledge,
};
use crate::measure::PeakCache;
use crate::session::{self, ModelLookup, Recorder, RecordingHeader};
use crate::telemetry::{Telemetry, TelemetryConfig};
use crate::vocab::capacity::CapacityEstimate;
use crate::vocab::snapshot::{GpuView, PeakKind, Snapshot, SoloPeak, TargetInfo};
use crate::vocab::spec::{RunSpec, TargetSpec, TenantSpec};

/// Starts the telemetry samplers for a target.
pub fn start_telemetry(target: &Target) -> Arc<TelemetryHook> {
    let t = Telemetry::start(TelemetryConfig {
        metrics_url: target.metrics_url.clone(),
        nvml: target.nvml.clone(),
        embedded_emulator: target.embedded.is_some(),
        ..TelemetryConfig::default()
    });
    Arc::new(TelemetryHook(t))
}

pub struct TelemetryHook(pub Telemetry);

impl GpuTelemetry for TelemetryHook {
    fn view(&self) -> GpuView {
        self.0.view()
    }
}

/// Solo peaks computed by the emulator's model in virtual time.
pub struct EmulatorKnowledge {
    pub catalog: Catalog,
    pub gpu: String,
    pub profile: Option<String>,
}

impl TargetKnowledge for EmulatorKnowledge {
    fn solo_peak(&self, tenant: &TenantSpec, server: &ServerModel) -> SoloPeak {
        let Some(gpu) = self.catalog.gpu(&self.gpu) else {
            return SoloPeak::UNKNOWN;
        };
        let Some(mut ms) = sim::model_setup(
            &self.catalog,
            &tenant.model,
            &self.gpu,
            self.profile.as_deref(),
        ) else {
            return SoloPeak::UNKNOWN;
        };
        let setup = sim::gpu_setup(gpu);
        ms.instances = server.instances.max(1);
        ms.dynamic_batching = server.dynamic_batching.clone();
        super::predict::solo_peak(&setup, &ms, tenant)
    }

    fn model_memory(&self, model: &str) -> Option<u64> {
        self.catalog
            .perf(model, &self.gpu, self.profile.as_deref())
            .map(|p| p.memory_bytes)
    }

    fn capacity(&self, query: &CapacityQuery) -> CapacityEstimate {
        let Some(gpu) = self.catalog.gpu(&self.gpu) else {
            return CapacityEstimate::Unknown {
                reason: format!("GPU '{}' is not in the catalog", self.gpu),
            };
        };
        capacity::mix_capacity(&self.catalog, gpu, self.profile.as_deref(), &query.tenants)
    }
}

/// Peaks measured by `perseus probe` against a real server, from the cache; capacity from the
/// catalog's model of the GPU the server runs on, where its device name matches one.
pub struct ProbedKnowledge {
    pub server: String,
    pub cache: Option<PeakCache>,
    pub catalog: Catalog,
}

impl TargetKnowledge for ProbedKnowledge {
    fn solo_peak(&self, tenant: &TenantSpec, _server: &ServerModel) -> SoloPeak {
        let Some(cache) = &self.cache else {
            return SoloPeak::UNKNOWN;
        };
        let (key, _) = crate::commands::probe::cache_key(&self.server, tenant);
        match cache.get(&key) {
            Some(entry) => SoloPeak {
                kind: PeakKind::Measured,
                per_s: entry.peak_per_s,
            },
            None => SoloPeak::UNKNOWN,
        }
    }

    fn model_memory(&self, _model: &str) -> Option<u64> {
        None
    }

    fn capacity(&self, query: &CapacityQuery) -> CapacityEstimate {
        let Some(name) = &query.gpu_name else {
            return CapacityEstimate::Unknown {
                reason:
                    "the server's GPU is not known (no NVML device, no gpu name in its metrics)"
                        .to_string(),
            };
        };
        match capacity::match_gpu(&self.catalog, name) {
            Ok(gpu) => capacity::mix_capacity(&self.catalog, gpu, None, &query.tenants),
            Err(reason) => CapacityEstimate::Unknown { reason },
        }
    }
}

/// What session validation may check against: the catalog's models, GPUs and profiles for an
/// emulated target (a real Triton's models are only known once connected), and the price catalog.
pub struct CatalogLookup<'a> {
    pub catalog: &'a Catalog,
    pub prices: &'a crate::cost::Prices,
    /// The config file's tick, where it sets one other than the built-in default.
    pub tick: Option<std::time::Duration>,
}

impl ModelLookup for CatalogLookup<'_> {
    fn models(&self, target: &TargetSpec) -> Option<BTreeMap<String, u32>> {
        match target {
            TargetSpec::Emulated { gpu, profile } => Some(
                self.catalog
                    .models
                    .iter()
                    .filter_map(|m| {
                        self.catalog
                            .perf(&m.name, gpu, profile.as_deref())
                            .map(|p| (m.name.clone(), p.max_batch))
                    })
                    .collect(),
            ),
            TargetSpec::Triton { .. } => None,
        }
    }
    fn default_tick(&self) -> Option<std::time::Duration> {
        self.tick
    }
    fn gpus(&self) -> Option<Vec<String>> {
        Some(self.catalog.gpus.iter().map(|g| g.name.clone()).collect())
    }
    fn profiles(&self, _gpu: &str) -> Option<Vec<String>> {
        Some(self.catalog.profile_names())
    }
    fn instances(&self) -> Option<Vec<String>> {
        Some(
            self.prices
                .instances()
                .iter()
                .map(|i| i.id.clone())
                .collect(),
        )
    }
}

/// Saving and recording to the data directory.
pub struct Files {
    pub header: RecordingHeader,
}

impl Persistence for Files {
    fn save_session(&self, spec: &RunSpec, path: Option<PathBuf>) -> Result<PathBuf, PersistError> {
        let path = match path {
            Some(p) => p,
            None => {
                let dir = session::sessions_dir()
                    .map_err(|e| PersistError::NoDataDir { cause: e.into() })?;
                std::fs::create_dir_all(&dir).map_err(|e| PersistError::Write {
                    path: dir.clone(),
                    cause: e.into(),
                })?;
                session::fresh_session_path(&dir, &spec.name)
            }
        };
        session::save_atomic(spec, &path).map_err(|e| PersistError::Write {
            path: path.clone(),
            cause: e.into(),
        })?;
        Ok(path)
    }

    fn start_recording(&self, spec: &RunSpec) -> Result<Box<dyn SnapshotSink>, PersistError> {
        let dir = session::runs_dir().map_err(|e| PersistError::NoDataDir { cause: e.into() })?;
        let rec = Recorder::create(&dir, &spec.name, self.header.clone())
            .map_err(|e| PersistError::Recording(e.into()))?;
        Ok(Box::new(RecorderSink(rec)))
    }
}

struct RecorderSink(Recorder);

impl SnapshotSink for RecorderSink {
    fn write(&mut self, snapshot: &Snapshot) -> Result<(), PersistError> {
        self.0
            .record(snapshot)
            .map_err(|e| PersistError::Recording(e.into()))
    }
    fn path(&self) -> String {
        self.0.path().display().to_string()
    }
}

/// The header line of a recording: what was run, where, with which catalogs.
pub fn recording_header(spec: &RunSpec, target: &TargetInfo) -> RecordingHeader {
    let catalogs = BTreeMap::from([("perseus".to_string(), env!("CARGO_PKG_VERSION").to_string())]);
    RecordingHeader::new(&spec.name, target.clone(), catalogs)
}
