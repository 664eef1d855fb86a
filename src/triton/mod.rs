//! Client for Triton's gRPC protocol: the only way Perseus talks to a server, real or emulated.
//!
//! The emulator is reached through this same client over loopback, so everything here is exercised
//! by the default demo as well as against a real Triton.
//!
//! - [`TritonClient`]: health, metadata, configuration, inference, statistics and repository calls,
//!   with explicit message size limits and deadlines.
//! - [`TritonError`]: every failure keyed by its gRPC status name, with Triton's message kept.
//! - [`ModelStats`] / [`StatsWindow`]: cumulative statistics and their per-window difference.

mod client;
mod error;
mod stats;

pub use client::{
    ConnectOptions, DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_ENCODE_BYTES, TlsOptions, TritonClient,
};
pub use error::{Direction, TritonError, code_name};
pub use stats::{BatchStat, DurationStat, ModelStats, StatsWindow};

/// Bytes per element of a tensor datatype as Triton names it in model metadata (`"FP32"`, …).
///
/// `None` for `BYTES` (variable-length, each element carries its own 4-byte length prefix) and for
/// names Triton does not define.
pub fn datatype_size(datatype: &str) -> Option<usize> {
    match datatype {
        "BOOL" | "UINT8" | "INT8" => Some(1),
        "UINT16" | "INT16" | "FP16" | "BF16" => Some(2),
        "UINT32" | "INT32" | "FP32" => Some(4),
        "UINT64" | "INT64" | "FP64" => Some(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_sizes_follow_the_kserve_v2_table() {
        for (datatype, size) in [
            ("BOOL", Some(1)),
            ("UINT8", Some(1)),
            ("INT8", Some(1)),
            ("UINT16", Some(2)),
            ("INT16", Some(2)),
            ("FP16", Some(2)),
            ("BF16", Some(2)),
            ("UINT32", Some(4)),
            ("INT32", Some(4)),
            ("FP32", Some(4)),
            ("UINT64", Some(8)),
            ("INT64", Some(8)),
            ("FP64", Some(8)),
            ("BYTES", None),
            ("fp32", None),
            ("TYPE_FP32", None),
            ("", None),
        ] {
            assert_eq!(datatype_size(datatype), size, "{datatype}");
        }
    }
}
