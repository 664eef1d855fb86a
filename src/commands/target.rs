//! Resolving what a run talks to: the embedded emulator or a real Triton, and what is known about it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use crate::catalog::Catalog;
use crate::cli::TargetArgs;
use crate::commands::{BadInput, Failure, TargetFailed};
use crate::emulator::sim;
use crate::emulator::{EmulateArgs, Emulator, EmulatorConfig, EmulatorError, RunningEmulator};
use crate::engine::hooks::{GpuTelemetry, Persistence, ServerModel, SnapshotSink, TargetKnowledge};
use crate::measure::PeakCache;
use crate::session::{self, Config, ModelLookup, Recorder, RecordingHeader};
use crate::telemetry::{NvmlChoice, Telemetry, TelemetryConfig};
use crate::triton::{ConnectOptions, TlsOptions};
use crate::vocab::snapshot::{GpuView, PeakKind, Snapshot, SoloPeak, TargetInfo, TargetKind};
use crate::vocab::spec::{RunSpec, TargetSpec, TenantSpec, TlsSpec};

/// A resolved target, keeping an embedded emulator alive for as long as it is held.
pub struct Target {
    pub info: TargetInfo,
    pub connect: ConnectOptions,
    pub metrics_url: Option<String>,
    pub knowledge: Arc<dyn TargetKnowledge>,
    pub nvml: NvmlChoice,
    pub embedded: Option<RunningEmulator>,
}

impl Target {
    pub async fn shutdown(self) {
        if let Some(emu) = self.embedded {
            emu.shutdown().await;
        }
    }
}

/// Applies `--triton` and friends over the session's `[target]`.
pub fn apply_target_args(spec: &mut RunSpec, args: &TargetArgs) {
    if let Some(address) = &args.triton {
        let tls = (args.tls_ca.is_some() || args.tls_cert.is_some() || args.tls_domain.is_some())
            .then(|| TlsSpec {
                ca_file: args.tls_ca.clone(),
                cert_file: args.tls_cert.clone(),
                key_file: args.tls_key.clone(),
                domain: args.tls_domain.clone(),
            });
        spec.target = TargetSpec::Triton {
            address: address.clone(),
            metrics: args.metrics.clone(),
            gpu: args.gpu.clone(),
            tls,
        };
    } else if let TargetSpec::Triton { metrics, gpu, .. } = &mut spec.target {
        if args.metrics.is_some() {
            *metrics = args.metrics.clone();
        }
        if args.gpu.is_some() {
            *gpu = args.gpu.clone();
        }
    }
}

/// Starts the embedded emulator or prepares the connection to a real Triton.
pub async fn resolve(
    spec: &RunSpec,
    catalog: &Catalog,
    catalog_dir: Option<&Path>,
) -> Result<Target, Failure> {
    match &spec.target {
        TargetSpec::Emulated { gpu, profile } => {
            let gpu_spec = catalog
                .gpu(gpu)
                .ok_or_else(|| anyhow!("unknown GPU '{gpu}' in the catalog"))
                .bad_input()?
                .clone();
            let mut models: Vec<String> = Vec::new();
            for t in &spec.tenants {
                if !models.contains(&t.model) {
                    models.push(t.model.clone());
                }
            }
            let emu = Emulator::start(EmulatorConfig {
                gpu: gpu.clone(),
                profile: profile.clone(),
                models,
                grpc: loopback(),
                http: loopback(),
                metrics: loopback(),
                catalog_dir: catalog_dir.map(Path::to_path_buf),
            })
            .await
            .context("starting the embedded emulator")
            .target_failed()?;
            let address = emu.grpc_addr.to_string();
            Ok(Target {
                info: TargetInfo {
                    kind: TargetKind::Emulated,
                    address: address.clone(),
                    gpu: Some(gpu_spec.display.clone()),
                    server_version: None,
                    model_control: true,
                },
                connect: ConnectOptions::new(&address),
                metrics_url: Some(format!("http://{}/metrics", emu.metrics_addr)),
                knowledge: Arc::new(EmulatorKnowledge {
                    catalog: catalog.clone(),
                    gpu: gpu.clone(),
                    profile: profile.clone(),
                }),
                // Tried anyway so that the view says why a local GPU is not shown.
                nvml: NvmlChoice::Auto,
                embedded: Some(emu),
            })
        }
        TargetSpec::Triton {
            address,
            metrics,
            gpu,
            tls,
        } => {
            let mut connect = ConnectOptions::new(address);
            connect.tls = tls.as_ref().map(TlsOptions::from);
            let metrics_url = metrics.clone().or_else(|| default_metrics_url(address));
            Ok(Target {
                info: TargetInfo {
                    kind: TargetKind::Triton,
                    address: address.clone(),
                    gpu: None,
                    server_version: None,
                    model_control: true,
                },
                connect,
                metrics_url,
                knowledge: Arc::new(ProbedKnowledge {
                    server: address.clone(),
                    cache: session::data_dir()
                        .ok()
                        .and_then(|d| PeakCache::open(&d.join("peaks")).ok()),
                }),
                nvml: match gpu {
                    Some(g) => NvmlChoice::Device(
                        g.parse()
                            .map_err(|e| anyhow!("--gpu {g}: {e}"))
                            .bad_input()?,
                    ),
                    None => NvmlChoice::Auto,
                },
                embedded: None,
            })
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Triton serves metrics on port 8002 of the same host by default.
fn default_metrics_url(grpc: &str) -> Option<String> {
    let host = grpc
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(grpc);
    (!host.is_empty()).then(|| format!("http://{host}:8002/metrics"))
}

/// Starts the telemetry samplers for a target.
pub fn start_telemetry(target: &Target, config: &Config) -> Arc<TelemetryHook> {
    let _ = config;
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
struct EmulatorKnowledge {
    catalog: Catalog,
    gpu: String,
    profile: Option<String>,
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
        match sim::solo_peak(
            &setup,
            &ms,
            tenant.batch,
            tenant.sla.latency_ms,
            tenant.sla.percentile,
        ) {
            Ok(per_s) if per_s > 0.0 => SoloPeak {
                kind: PeakKind::Computed,
                per_s: Some(per_s),
            },
            _ => SoloPeak::UNKNOWN,
        }
    }

    fn model_memory(&self, model: &str) -> Option<u64> {
        self.catalog
            .perf(model, &self.gpu, self.profile.as_deref())
            .map(|p| p.memory_bytes)
    }
}

/// Peaks measured by `perseus probe` against a real server, from the cache.
struct ProbedKnowledge {
    server: String,
    cache: Option<PeakCache>,
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
}

/// What session validation may check against: the catalog's models, GPUs and profiles for an
/// emulated target (a real Triton's models are only known once connected), and the price catalog.
pub struct CatalogLookup<'a> {
    pub catalog: &'a Catalog,
    pub prices: &'a crate::cost::Prices,
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
    fn save_session(&self, spec: &RunSpec, path: Option<PathBuf>) -> Result<PathBuf, String> {
        let path = match path {
            Some(p) => p,
            None => {
                let dir = session::sessions_dir().map_err(|e| e.to_string())?;
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                session::fresh_session_path(&dir, &spec.name)
            }
        };
        session::save_atomic(spec, &path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    fn start_recording(&self, spec: &RunSpec) -> Result<Box<dyn SnapshotSink>, String> {
        let dir = session::runs_dir().map_err(|e| e.to_string())?;
        let rec = Recorder::create(&dir, &spec.name, self.header.clone())
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Box::new(RecorderSink(rec)))
    }
}

struct RecorderSink(Recorder);

impl SnapshotSink for RecorderSink {
    fn write(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        self.0.record(snapshot).map_err(|e| e.to_string())
    }
    fn path(&self) -> String {
        self.0.path().display().to_string()
    }
}

/// `perseus emulate`: the standalone server.
pub async fn emulate(args: EmulateArgs, config: &Config) -> Result<(), Failure> {
    let mut emu: EmulatorConfig = args.into();
    if emu.catalog_dir.is_none() {
        emu.catalog_dir = config.catalog_dir.clone();
    }
    crate::emulator::run_standalone(emu)
        .await
        .map_err(|e| match e {
            EmulatorError::UnknownGpu { .. }
            | EmulatorError::UnknownProfile { .. }
            | EmulatorError::Catalog(_) => Failure::BadInput(e.into()),
            other => Failure::Target(other.into()),
        })
}

/// The header line of a recording: what was run, where, with which catalogs.
pub fn recording_header(spec: &RunSpec, target: &TargetInfo) -> RecordingHeader {
    let catalogs = BTreeMap::from([("perseus".to_string(), env!("CARGO_PKG_VERSION").to_string())]);
    RecordingHeader::new(&spec.name, target.clone(), catalogs)
}
