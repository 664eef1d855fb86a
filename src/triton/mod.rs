//! Client for Triton's gRPC protocol: the only way Perseus talks to a server, real or emulated.
//!
//! The emulator is reached through this same client over loopback, so everything here is exercised
//! by the default demo as well as against a real Triton.
//!
//! - [`TritonClient`]: health, metadata, configuration, inference, statistics and repository calls,
//!   with explicit message size limits and deadlines.
//! - [`Capabilities`]: which of Triton's extensions the server offers beyond the KServe-v2 core.
//! - [`TritonError`]: every failure keyed by its gRPC status name, with Triton's message kept.
//! - [`ModelStats`] / [`StatsWindow`]: cumulative statistics and their per-window difference.
//! - [`shm`]: a tenant's tensors in system shared memory, for a server on the same machine.

mod capabilities;
mod client;
mod connect;
mod direct;
mod encoded;
mod error;
pub mod shm;
mod stats;

pub use capabilities::{Capabilities, Extension};
pub use client::TritonClient;
pub use connect::{ConnectOptions, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_ENCODE_BYTES, TlsOptions};
pub use encoded::PreparedRequest;
pub use error::{Direction, TritonError, code_name};
pub use stats::{BatchStat, DurationStat, ModelStats, StatsWindow};
