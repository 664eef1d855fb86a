//! Perseus: a live instrument for multi-tenant inference serving on Triton.
//!
//! The crate is a library plus a thin binary so that integration tests and benchmarks drive the same
//! code the CLI does.

/// Triton's protocol, generated from `proto/` at build time.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("inference");
}

pub mod engine;
pub mod session;
