//! Tensor checking and output generation, independent of the wire format: the gRPC and HTTP front ends
//! both turn their payloads into little-endian bytes first, so one validator gives one set of answers.
//!
//! Outputs: Triton's example models (`simple` and its family) are computed exactly (see `examples`).
//! Every other model returns a *deterministic placeholder* of the right shape and type: floating-point
//! outputs hold a uniform distribution (each element 1/N for N elements per image, so a classifier's
//! scores sum to one), integer and boolean outputs hold zeros, BYTES outputs empty strings. The
//! emulator models time, not numerics.

use bytes::Bytes;

use crate::catalog::{Compute, ModelSpec, TensorSpec};
use crate::emulator::examples;
use crate::emulator::shm::Window;
use crate::emulator::status::ServeError;

/// One tensor of a model's signature, as the catalog describes it (shape without the batch dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorDesc {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    /// Triton's input `format` (e.g. "FORMAT_NCHW"), reported in the model configuration.
    pub format: Option<String>,
}

/// A model's name, platform and tensors, shared by every request to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signature {
    pub name: String,
    pub platform: String,
    pub inputs: Vec<TensorDesc>,
    pub outputs: Vec<TensorDesc>,
    pub compute: Compute,
    /// Class labels for the classification extension, one per index of the first output.
    pub labels: Option<Vec<String>>,
}

impl Signature {
    pub(crate) fn from_spec(spec: &ModelSpec) -> Signature {
        let desc = |t: &TensorSpec| TensorDesc {
            name: t.name.clone(),
            datatype: t.datatype.clone(),
            shape: t.shape.clone(),
            format: t.format.clone(),
        };
        Signature {
            name: spec.name.clone(),
            platform: spec.platform.clone(),
            inputs: spec.inputs.iter().map(desc).collect(),
            outputs: spec.outputs.iter().map(desc).collect(),
            compute: spec.compute,
            labels: spec.labels.clone(),
        }
    }

    /// Bytes of all inputs (or outputs) for one image as the wire carries them; what a queued request
    /// is charged against the emulator's memory bound.
    pub(crate) fn bytes_per_image(tensors: &[TensorDesc]) -> u64 {
        tensors
            .iter()
            .map(|t| element_count(&t.shape) * element_size(&t.datatype).unwrap_or(1) as u64)
            .sum()
    }
}

/// An input with its contents: little-endian bytes (`D = Bytes`, what the outputs are computed
/// from), or as received ([`InputData`], which may still be a shared-memory window).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InputTensor<D = Bytes> {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: D,
}

/// A received input's contents: the bytes that came with the request, or a window of a registered
/// shared-memory region, read only when the outputs need it (after the request's turn on the
/// GPU, as Triton's backend reads a region when the batch executes). A queued request then holds
/// a reference, not a copy of a megabyte tensor.
#[derive(Debug, Clone)]
pub(crate) enum InputData {
    Bytes(Bytes),
    Shm(Window),
}

impl From<Bytes> for InputData {
    fn from(bytes: Bytes) -> InputData {
        InputData::Bytes(bytes)
    }
}

impl InputData {
    /// Bytes the request itself holds while it waits: a window holds none of its own.
    pub(crate) fn held(&self) -> u64 {
        match self {
            InputData::Bytes(b) => b.len() as u64,
            InputData::Shm(_) => 0,
        }
    }
}

/// What validation needs of an input's contents: its size, and its bytes for the few checks that
/// read them (BYTES elements).
pub(crate) trait Contents {
    fn byte_len(&self) -> u64;
    fn bytes(&self) -> Result<Bytes, ServeError>;
}

impl Contents for Bytes {
    fn byte_len(&self) -> u64 {
        self.len() as u64
    }
    fn bytes(&self) -> Result<Bytes, ServeError> {
        Ok(self.clone())
    }
}

impl Contents for InputData {
    fn byte_len(&self) -> u64 {
        match self {
            InputData::Bytes(b) => b.len() as u64,
            InputData::Shm(w) => w.len(),
        }
    }
    fn bytes(&self) -> Result<Bytes, ServeError> {
        match self {
            InputData::Bytes(b) => Ok(b.clone()),
            InputData::Shm(w) => w.read(),
        }
    }
}

impl InputTensor<InputData> {
    /// The input with its contents read (a shared-memory window is read now).
    pub(crate) fn load(&self) -> Result<InputTensor, ServeError> {
        Ok(InputTensor {
            name: self.name.clone(),
            datatype: self.datatype.clone(),
            shape: self.shape.clone(),
            data: self.data.bytes()?,
        })
    }
}

/// An output ready for encoding in either protocol.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Vec<u8>,
}

/// The shared table, re-exported for the emulator's HTTP front end.
pub(crate) use crate::vocab::datatype::element_size;

/// Elements in a shape, counting a variable (−1) dimension as one.
fn element_count(shape: &[i64]) -> u64 {
    shape.iter().map(|&d| d.max(1) as u64).product()
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// Checks the request's inputs against the signature and returns the batch size (1 for a model without
/// batching). Wording follows Triton's so clients and users see familiar messages.
pub(crate) fn validate_inputs<D: Contents>(
    sig: &Signature,
    max_batch: u32,
    inputs: &[InputTensor<D>],
) -> Result<u32, ServeError> {
    let model = &sig.name;
    for input in inputs {
        if !sig.inputs.iter().any(|t| t.name == input.name) {
            let allowed: Vec<&str> = sig.inputs.iter().map(|t| t.name.as_str()).collect();
            return Err(ServeError::invalid(format!(
                "unexpected inference input '{}' for model '{model}', allowed inputs are: {}",
                input.name,
                allowed.join(", ")
            )));
        }
    }
    let missing: Vec<&str> = sig
        .inputs
        .iter()
        .filter(|t| !inputs.iter().any(|i| i.name == t.name))
        .map(|t| t.name.as_str())
        .collect();
    if !missing.is_empty() || inputs.len() != sig.inputs.len() {
        return Err(ServeError::invalid(format!(
            "expected {} inputs but got {} inputs for model '{model}'; missing required input(s) [{}]",
            sig.inputs.len(),
            inputs.len(),
            missing.join(", ")
        )));
    }

    let mut batch: Option<i64> = None;
    for input in inputs {
        let Some(desc) = sig.inputs.iter().find(|t| t.name == input.name) else {
            continue;
        };
        if input.datatype != desc.datatype {
            return Err(ServeError::invalid(format!(
                "inference input '{}' data-type is '{}', but model '{model}' expects '{}'",
                input.name, input.datatype, desc.datatype
            )));
        }
        // A negative dimension matches the model's variable (−1) ones, so the generic shape message
        // would print two identical shapes: name the real fault instead.
        if let Some((index, &dim)) = input.shape.iter().enumerate().find(|(_, d)| **d < 0) {
            return Err(ServeError::invalid(format!(
                "unexpected shape for input '{}' for model '{model}': dimension {index} is {dim} in \
                 {}; a request's dimensions must not be negative",
                input.name,
                shape_text(&input.shape)
            )));
        }
        let (expected_full, dims) = if max_batch > 0 {
            let mut full = vec![-1];
            full.extend_from_slice(&desc.shape);
            (full, input.shape.get(1..).unwrap_or(&[]))
        } else {
            (desc.shape.clone(), input.shape.as_slice())
        };
        let dims_match = dims.len() == desc.shape.len()
            && dims
                .iter()
                .zip(&desc.shape)
                .all(|(&got, &want)| want < 0 || got == want)
            && input.shape.len() == expected_full.len();
        if !dims_match || (max_batch > 0 && input.shape.first().is_none_or(|&b| b < 1)) {
            return Err(ServeError::invalid(format!(
                "unexpected shape for input '{}' for model '{model}'. Expected {}, got {}",
                input.name,
                shape_text(&expected_full),
                shape_text(&input.shape)
            )));
        }
        if max_batch > 0 {
            let b = input.shape[0];
            if b > i64::from(max_batch) {
                return Err(ServeError::invalid(format!(
                    "inference request batch-size must be <= {max_batch} for '{model}'"
                )));
            }
            if batch.is_some_and(|other| other != b) {
                return Err(ServeError::invalid(format!(
                    "input '{}' batch size does not match other inputs for '{model}'",
                    input.name
                )));
            }
            batch = Some(b);
        }
        if input.datatype == "BYTES" {
            check_bytes(model, input)?;
        }
        if let Some(size) = element_size(&input.datatype) {
            // Checked: variable dimensions let a request claim a shape whose size overflows.
            let expected = input
                .shape
                .iter()
                .try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64));
            if expected != Some(input.data.byte_len()) {
                let expected = expected.map_or_else(|| "more than 2^64".into(), |e| e.to_string());
                return Err(ServeError::invalid(format!(
                    "input byte size mismatch for input '{}' for model '{model}'. Expected {expected}, got {}",
                    input.name,
                    input.data.byte_len()
                )));
            }
        }
    }
    Ok(batch.map_or(1, |b| b as u32))
}

/// A BYTES input must hold exactly one well-formed element per position of its shape.
fn check_bytes<D: Contents>(model: &str, input: &InputTensor<D>) -> Result<(), ServeError> {
    let expected = input
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let data = input.data.bytes()?;
    let got = examples::split_bytes(&data).map(|e| e.len() as u64);
    if got.is_none() || got != expected {
        let got = got.map_or_else(
            || "malformed length-prefixed elements".into(),
            |n| format!("{n} elements"),
        );
        return Err(ServeError::invalid(format!(
            "unexpected number of string elements for inference input '{}' for model '{model}': \
             expected {}, got {got}",
            input.name,
            expected.map_or_else(|| "more than 2^64".into(), |e| e.to_string()),
        )));
    }
    Ok(())
}

/// Checks requested output names; an empty list means all outputs.
pub(crate) fn validate_outputs(sig: &Signature, requested: &[String]) -> Result<(), ServeError> {
    for name in requested {
        if !sig.outputs.iter().any(|t| &t.name == name) {
            return Err(ServeError::invalid(format!(
                "unexpected inference output '{name}' for model '{}'",
                sig.name
            )));
        }
    }
    Ok(())
}

/// Computes the requested outputs (all when `requested` is empty), in the order requested. `start`
/// is the sequence batcher's START control for this request.
pub(crate) fn compute_outputs(
    sig: &Signature,
    max_batch: u32,
    batch: u32,
    inputs: &[InputTensor],
    requested: &[String],
    start: bool,
) -> Result<Vec<OutputTensor>, ServeError> {
    let selected: Vec<(usize, &TensorDesc)> = if requested.is_empty() {
        sig.outputs.iter().enumerate().collect()
    } else {
        requested
            .iter()
            .filter_map(|name| {
                sig.outputs
                    .iter()
                    .enumerate()
                    .find(|(_, t)| &t.name == name)
            })
            .collect()
    };
    let mut outputs = Vec::with_capacity(selected.len());
    for (position, desc) in selected {
        let data = examples::compute(sig.compute, desc, position, inputs, start)?;
        // An output computed from an input takes that input's shape (variable dimensions included).
        let shape = match (&data, sig.compute) {
            (Some(_), Compute::Identity) => inputs.get(position).map(|t| t.shape.clone()),
            _ => None,
        }
        .unwrap_or_else(|| {
            let mut shape: Vec<i64> = Vec::with_capacity(desc.shape.len() + 1);
            if max_batch > 0 {
                shape.push(i64::from(batch));
            }
            shape.extend(desc.shape.iter().map(|&d| d.max(1)));
            shape
        });
        let data = data.unwrap_or_else(|| placeholder(desc, &shape));
        outputs.push(OutputTensor {
            name: desc.name.clone(),
            datatype: desc.datatype.clone(),
            shape,
            data,
        });
    }
    Ok(outputs)
}

/// The documented placeholder: a uniform distribution for floats, empty strings for BYTES (each a
/// zero length prefix), zeros otherwise.
fn placeholder(desc: &TensorDesc, shape: &[i64]) -> Vec<u8> {
    let total = element_count(shape) as usize;
    let per_image = element_count(&desc.shape).max(1) as f64;
    match desc.datatype.as_str() {
        "FP32" => (1.0 / per_image as f32).to_le_bytes().repeat(total),
        "FP64" => (1.0 / per_image).to_le_bytes().repeat(total),
        "BYTES" => vec![0; total * 4],
        other => vec![0; total * element_size(other).unwrap_or(1)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple() -> Signature {
        let t = |name: &str| TensorDesc {
            name: name.into(),
            datatype: "INT32".into(),
            shape: vec![16],
            format: None,
        };
        Signature {
            name: "simple".into(),
            platform: "tensorflow_graphdef".into(),
            inputs: vec![t("INPUT0"), t("INPUT1")],
            outputs: vec![t("OUTPUT0"), t("OUTPUT1")],
            compute: Compute::AddSub,
            labels: None,
        }
    }

    fn int_input(name: &str, values: &[i32], shape: Vec<i64>) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: "INT32".into(),
            shape,
            data: values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        }
    }

    #[test]
    fn simple_sums_and_differences_every_element() {
        let a: Vec<i32> = (0..16).collect();
        let b: Vec<i32> = (0..16).map(|i| 100 - 3 * i).collect();
        let inputs = [
            int_input("INPUT0", &a, vec![1, 16]),
            int_input("INPUT1", &b, vec![1, 16]),
        ];
        let sig = simple();
        assert_eq!(validate_inputs(&sig, 8, &inputs), Ok(1));
        let out = compute_outputs(&sig, 8, 1, &inputs, &[], false).unwrap();
        let ints = |o: &OutputTensor| -> Vec<i32> {
            o.data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        assert_eq!(
            ints(&out[0]),
            a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
        );
        assert_eq!(
            ints(&out[1]),
            a.iter().zip(&b).map(|(x, y)| x - y).collect::<Vec<_>>()
        );
        assert_eq!(out[1].shape, vec![1, 16]);
    }

    #[test]
    fn requested_outputs_are_honoured_in_order() {
        let inputs = [
            int_input("INPUT0", &[1; 16], vec![1, 16]),
            int_input("INPUT1", &[2; 16], vec![1, 16]),
        ];
        let out =
            compute_outputs(&simple(), 8, 1, &inputs, &["OUTPUT1".to_string()], false).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "OUTPUT1");
        assert!(validate_outputs(&simple(), &["OUTPUT9".into()]).is_err());
    }

    #[test]
    fn each_mistake_is_named_in_the_message() {
        let sig = simple();
        let good = int_input("INPUT1", &[0; 16], vec![1, 16]);
        let cases = [
            (
                int_input("INPUT7", &[0; 16], vec![1, 16]),
                "unexpected inference input 'INPUT7'",
            ),
            (
                int_input("INPUT0", &[0; 8], vec![1, 8]),
                "unexpected shape for input 'INPUT0'",
            ),
            (
                int_input("INPUT0", &[0; 8], vec![1, 16]),
                "input byte size mismatch for input 'INPUT0'",
            ),
            (
                InputTensor {
                    datatype: "FP32".into(),
                    ..int_input("INPUT0", &[0; 16], vec![1, 16])
                },
                "data-type is 'FP32', but model 'simple' expects 'INT32'",
            ),
            (
                int_input("INPUT0", &[0; 16 * 9], vec![9, 16]),
                "batch-size must be <= 8",
            ),
            (
                int_input("INPUT0", &[0; 16], vec![-1, 16]),
                "dimension 0 is -1 in [-1,16]; a request's dimensions must not be negative",
            ),
            (
                int_input("INPUT0", &[0; 16], vec![1, -16]),
                "dimension 1 is -16",
            ),
        ];
        for (bad, expected) in cases {
            let err = validate_inputs(&sig, 8, &[bad, good.clone()]).unwrap_err();
            assert!(
                err.message.contains(expected),
                "{} lacks {expected}",
                err.message
            );
        }
        let err = validate_inputs(&sig, 8, &[good]).unwrap_err();
        assert!(
            err.message.contains("missing required input(s) [INPUT0]"),
            "{}",
            err.message
        );
    }

    #[test]
    fn placeholders_have_the_right_size_and_sum_to_one_per_image() {
        let sig = Signature {
            name: "resnet50".into(),
            platform: "onnxruntime_onnx".into(),
            inputs: vec![],
            outputs: vec![
                TensorDesc {
                    name: "probs".into(),
                    datatype: "FP32".into(),
                    shape: vec![1000],
                    format: None,
                },
                TensorDesc {
                    name: "names".into(),
                    datatype: "BYTES".into(),
                    shape: vec![16],
                    format: None,
                },
            ],
            compute: Compute::Placeholder,
            labels: None,
        };
        let out = compute_outputs(&sig, 32, 3, &[], &[], false).unwrap();
        let names = examples::split_bytes(&out[1].data).unwrap();
        assert_eq!(
            names.len(),
            3 * 16,
            "one well-formed (empty) string per element"
        );
        assert!(names.iter().all(|n| n.is_empty()));
        assert_eq!(out[0].shape, vec![3, 1000]);
        let floats: Vec<f32> = out[0]
            .data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats.len(), 3000);
        let first: f32 = floats[..1000].iter().sum();
        assert!((first - 1.0).abs() < 1e-3);
    }
}
