//! Perseus: a live instrument for multi-tenant inference serving on Triton.
//!
//! The crate is a library plus a thin binary so that integration tests and benchmarks drive the same
//! code the CLI does.

/// Triton's protocol, generated from `proto/` at build time.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("inference");
}

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod cost;
pub mod emulator;
pub mod engine;
pub mod loadgen;
pub mod measure;
pub mod report;
pub mod session;
pub mod telemetry;
mod timing;
pub mod triton;
pub mod tui;
pub mod vocab;

/// The allocator for every binary built on this crate (the CLI, tests and benchmarks alike, so a
/// benchmark measures what the CLI runs). A request's buffers are often freed on another worker
/// thread than the one that allocated them — always so when the emulator's clock hands a
/// completion to a waiting handler — and glibc's malloc then takes the other arena's lock: the
/// emulator benchmark's profile showed two futex calls a request from `free` alone. With mimalloc
/// the emulator (one-instance `simple`, as the benchmark then measured it) served 0.84–0.88 of the
/// echo server's rate against 0.78–0.82 with glibc (six interleaved runs of `cargo bench --bench
/// emulator`); built without transparent huge pages (`no_thp`, see Cargo.toml), as it now is,
/// 0.77–0.88 with a median of 0.82 over six runs, where glibc gave 0.76–0.81. jemalloc, also
/// tried, sped the echo server up more than the emulator (ratio 0.74–0.75, though both ran faster).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
