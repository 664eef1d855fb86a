//! Triton's tensor datatypes and their element sizes, the one table every part consults.
//!
//! The catalog checks model files against it, the load generator sizes request payloads with it and
//! the emulator sizes the tensors it accepts and returns, so they can never disagree about a type.

/// Bytes per element of a tensor datatype as Triton names it in model metadata (`"FP32"`, …).
///
/// `None` for `BYTES` (variable-length: each element carries its own 4-byte length prefix) and for
/// names Triton does not define; names are case-sensitive, as they are on the wire.
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "UINT8" | "INT8" => 1,
        "UINT16" | "INT16" | "FP16" | "BF16" => 2,
        "UINT32" | "INT32" | "FP32" => 4,
        "UINT64" | "INT64" | "FP64" => 8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_kserve_v2_table() {
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
            assert_eq!(element_size(datatype), size, "{datatype}");
        }
    }
}
