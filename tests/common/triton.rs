//! Requests and addresses that the gRPC tests (and the emulator benchmark) share, so that what "a
//! `simple` request" means is written once.
// Each file that includes this uses its own part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use perseus::proto::{self, model_infer_request::InferInputTensor};

/// Any free port on loopback: tests never listen beyond the machine.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// INT32 values as Triton's raw contents carry them: little-endian, packed.
pub fn le_bytes(values: &[i32]) -> bytes::Bytes {
    values
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<u8>>()
        .into()
}

/// An INT32 input of `shape`, its data sent as raw contents.
pub fn int_tensor(name: &str, shape: Vec<i64>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "INT32".into(),
        shape,
        ..Default::default()
    }
}

/// A request for Triton's example `simple` model (OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 −
/// INPUT1), batch 1; the model serves 16 values per input, other lengths make a wrong shape.
pub fn simple_request(a: &[i32], b: &[i32]) -> proto::ModelInferRequest {
    proto::ModelInferRequest {
        model_name: "simple".into(),
        inputs: vec![
            int_tensor("INPUT0", vec![1, a.len() as i64]),
            int_tensor("INPUT1", vec![1, b.len() as i64]),
        ],
        raw_input_contents: vec![le_bytes(a), le_bytes(b)],
        ..Default::default()
    }
}
