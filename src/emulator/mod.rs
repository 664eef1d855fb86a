//! A Triton-compatible server whose GPU is a calibrated performance model, so that the dashboard, its
//! tests and its demos run anywhere, and NVIDIA's own clients (tritonclient, perf_analyzer) accept it.
//!
//! `sim` is the pure event-driven GPU model; `realtime` drives it with the wall clock (helped by the
//! served connections, `ticking`); `service` is the protocol-independent behaviour that the gRPC,
//! HTTP and metrics front ends share.

pub mod sim;

mod admission;
mod config;
mod examples;
mod grpc;
mod grpc_framed;
mod grpc_stream;
mod guard;
mod http;
mod http_json;
mod http_settings;
mod metrics;
mod realtime;
mod repository;
mod sequence;
mod server;
mod service;
mod settings;
mod shm;
mod shm_http;
mod statistics;
mod status;
mod summaries;
mod tensors;
mod ticking;

pub use grpc::{SERVER_NAME, SERVER_VERSION};
pub use realtime::SchedulingError;
pub use server::{
    DEFAULT_MODELS, EmulateArgs, Emulator, EmulatorConfig, EmulatorError, RunningEmulator,
    ServeLimits, run_standalone,
};

/// The sim's view of `model` as this emulator serves it on `gpu` under `profile`: the repository's default
/// configuration, with a tenant's instance count and dynamic batcher applied as a load request would.
/// What-ifs over a session (`perseus predict`) use it so that they model the very setup a run is served.
pub fn served_setup(
    catalog: &crate::catalog::Catalog,
    gpu: &crate::catalog::GpuSpec,
    profile: Option<&str>,
    model: &str,
    instances: Option<u32>,
    dynamic_batching: Option<&crate::vocab::spec::DynamicBatching>,
) -> Option<sim::ModelSetup> {
    let mut entry = repository::Repository::new(catalog, gpu, profile)
        .get(model)?
        .clone();
    if let Some(n) = instances {
        entry.settings.instances = n.max(1);
    }
    if let Some(db) = dynamic_batching {
        entry.settings.dynamic_batching = Some(db.clone());
    }
    Some(entry.setup())
}
