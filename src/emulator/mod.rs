//! A Triton-compatible server whose GPU is a calibrated performance model, so that the dashboard, its
//! tests and its demos run anywhere, and NVIDIA's own clients (tritonclient, perf_analyzer) accept it.
//!
//! `sim` is the pure event-driven GPU model; `realtime` drives it with the wall clock (helped by the
//! served connections, `ticking`); `service` is the protocol-independent behaviour that the gRPC,
//! HTTP and metrics front ends share.

pub mod sim;

mod grpc;
mod guard;
mod http;
mod metrics;
mod realtime;
mod repository;
mod server;
mod service;
mod status;
mod tensors;
mod ticking;

pub use grpc::SERVER_NAME;
pub use realtime::SchedulingError;
pub use server::{
    DEFAULT_MODELS, EmulateArgs, Emulator, EmulatorConfig, EmulatorError, RunningEmulator,
    ServeLimits, run_standalone,
};
