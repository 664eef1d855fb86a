//! Resolving what a run talks to: the embedded emulator or a real Triton, and what is known about it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use crate::catalog::Catalog;
use crate::cli::TargetArgs;
use crate::commands::hooks::{EmulatorKnowledge, ProbedKnowledge};
use crate::commands::{BadInput, Failure, TargetFailed};
use crate::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use crate::engine::hooks::TargetKnowledge;
use crate::measure::PeakCache;
use crate::session;
use crate::telemetry::NvmlChoice;
use crate::triton::{ConnectOptions, TlsOptions};
use crate::vocab::snapshot::{TargetInfo, TargetKind};
use crate::vocab::spec::{RunSpec, TargetSpec, TlsSpec};

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
