//! Perseus: a live instrument for multi-tenant inference serving on Triton.
//!
//! The crate is a library plus a thin binary so that integration tests and benchmarks drive the same
//! code the CLI does.

/// Triton's protocol, generated from `proto/` at build time.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("inference");
}

mod atomic;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod cost;
pub mod emulator;
pub mod engine;
pub mod exporter;
pub mod fleet;
pub mod loadgen;
pub mod measure;
pub mod plan;
pub mod report;
pub mod session;
mod suggest;
pub mod telemetry;
mod timing;
pub mod triton;
pub mod tui;
pub mod vocab;

/// The allocator for every binary built on this crate (the CLI, tests and benchmarks alike, so a
/// benchmark measures what the CLI runs). A request's buffers are often freed on another worker
/// thread than the one that allocated them — often so when the emulator's clock hands a
/// completion to a waiting handler — and glibc's malloc then takes the other arena's lock and often
/// a futex call; mimalloc frees across threads without one. It is built without transparent huge
/// pages (see Cargo.toml), which kept the kernel zeroing pages under the demo's image tensors.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
