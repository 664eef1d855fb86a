//! Perseus: a live instrument for multi-tenant inference serving on Triton.
//!
//! The crate is a library plus a thin binary so that integration tests and benchmarks drive the same
//! code the CLI does.

/// Triton's protocol, generated from `proto/` at build time.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("inference");
}

pub mod app;
pub mod catalog;
pub mod cli;
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
