//! Input tensors built from a model's metadata, once per tenant and reused for every request.
//!
//! The raw payloads are `Bytes`, so cloning the request template for each send copies only the small
//! header fields, never the image data.

use bytes::Bytes;
use rand::{RngExt, SeedableRng};

use crate::proto::{ModelInferRequest, ModelMetadataResponse, model_infer_request};
use crate::vocab::datatype::element_size;
use crate::vocab::spec::InputData;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error(
        "model '{model}': input '{input}' has datatype {datatype}, which Perseus cannot generate"
    )]
    UnsupportedDatatype {
        model: String,
        input: String,
        datatype: String,
    },
    #[error("model '{model}': batch {batch} is above the model's max batch size {max}")]
    BatchTooLarge { model: String, batch: u32, max: u32 },
    #[error("model '{model}': batch must be at least 1")]
    ZeroBatch { model: String },
    #[error(
        "model '{model}': input '{input}' would need {bytes} bytes per request (limit {limit})"
    )]
    TooLarge {
        model: String,
        input: String,
        bytes: u64,
        limit: u64,
    },
}

/// One request payload may not exceed this: it protects the client from a metadata mistake.
pub const MAX_REQUEST_BYTES: u64 = 256 * 1024 * 1024;

/// Builds the request a tenant sends, from the model's metadata.
///
/// `max_batch` is the model configuration's `max_batch_size`: when it is above zero the first
/// dimension of each input is the batch (Triton reports it as -1) and is set to `batch`. Other
/// variable dimensions (-1) are given size 1.
pub fn build_request(
    meta: &ModelMetadataResponse,
    max_batch: u32,
    batch: u32,
    data: InputData,
    seed: u64,
) -> Result<ModelInferRequest, TensorError> {
    let model = meta.name.clone();
    if batch == 0 {
        return Err(TensorError::ZeroBatch { model });
    }
    if max_batch > 0 && batch > max_batch {
        return Err(TensorError::BatchTooLarge {
            model,
            batch,
            max: max_batch,
        });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut inputs = Vec::with_capacity(meta.inputs.len());
    let mut raw = Vec::with_capacity(meta.inputs.len());
    for input in &meta.inputs {
        let size =
            element_size(&input.datatype).ok_or_else(|| TensorError::UnsupportedDatatype {
                model: model.clone(),
                input: input.name.clone(),
                datatype: input.datatype.clone(),
            })?;
        let mut shape: Vec<i64> = input.shape.iter().map(|&d| d.max(1)).collect();
        if max_batch > 0 {
            match shape.first_mut() {
                Some(first) if input.shape.first() == Some(&-1) => *first = i64::from(batch),
                _ => shape.insert(0, i64::from(batch)),
            }
        }
        let elements: u64 = shape.iter().map(|&d| d as u64).product();
        let bytes = elements.saturating_mul(size as u64);
        if bytes > MAX_REQUEST_BYTES {
            return Err(TensorError::TooLarge {
                model: model.clone(),
                input: input.name.clone(),
                bytes,
                limit: MAX_REQUEST_BYTES,
            });
        }
        let mut buf = vec![0u8; bytes as usize];
        if data == InputData::Random {
            fill_random(&mut buf, &input.datatype, &mut rng);
        }
        raw.push(Bytes::from(buf));
        inputs.push(model_infer_request::InferInputTensor {
            name: input.name.clone(),
            datatype: input.datatype.clone(),
            shape,
            parameters: Default::default(),
            contents: None,
        });
    }
    let outputs = meta
        .outputs
        .iter()
        .map(|o| model_infer_request::InferRequestedOutputTensor {
            name: o.name.clone(),
            parameters: Default::default(),
        })
        .collect();
    Ok(ModelInferRequest {
        model_name: model,
        model_version: String::new(),
        id: String::new(),
        parameters: Default::default(),
        inputs,
        outputs,
        raw_input_contents: raw,
    })
}

/// Random but valid values: floats in [0, 1) (no NaNs or infinities that a model might reject),
/// integers small enough not to overflow a model's arithmetic.
fn fill_random(buf: &mut [u8], datatype: &str, rng: &mut impl RngExt) {
    match datatype {
        "FP32" => {
            for chunk in buf.chunks_exact_mut(4) {
                chunk.copy_from_slice(&rng.random::<f32>().to_le_bytes());
            }
        }
        "FP64" => {
            for chunk in buf.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.random::<f64>().to_le_bytes());
            }
        }
        "INT32" => {
            for chunk in buf.chunks_exact_mut(4) {
                chunk.copy_from_slice(&rng.random_range(0i32..1000).to_le_bytes());
            }
        }
        "INT64" => {
            for chunk in buf.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.random_range(0i64..1000).to_le_bytes());
            }
        }
        "BOOL" => buf.iter_mut().for_each(|b| *b = rng.random_range(0..2)),
        // Half floats and small integers: random low bytes are valid values for all of them.
        _ => {
            for chunk in buf.chunks_exact_mut(2) {
                chunk[0] = rng.random();
                chunk[1] = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::model_metadata_response::TensorMetadata;

    fn meta(shape: Vec<i64>, datatype: &str) -> ModelMetadataResponse {
        ModelMetadataResponse {
            name: "m".into(),
            versions: vec!["1".into()],
            platform: "p".into(),
            inputs: vec![TensorMetadata {
                name: "input".into(),
                datatype: datatype.into(),
                shape,
            }],
            outputs: vec![TensorMetadata {
                name: "output".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 1000],
            }],
        }
    }

    #[test]
    fn batch_dimension_is_filled_and_bytes_match() {
        let req = build_request(
            &meta(vec![-1, 3, 224, 224], "FP32"),
            128,
            4,
            InputData::Zero,
            0,
        )
        .unwrap();
        assert_eq!(req.inputs[0].shape, vec![4, 3, 224, 224]);
        assert_eq!(req.raw_input_contents[0].len(), 4 * 3 * 224 * 224 * 4);
        assert_eq!(req.outputs[0].name, "output");
    }

    #[test]
    fn non_batching_model_keeps_its_shape() {
        let req = build_request(&meta(vec![16], "INT32"), 0, 1, InputData::Random, 1).unwrap();
        assert_eq!(req.inputs[0].shape, vec![16]);
        assert_eq!(req.raw_input_contents[0].len(), 64);
        let vals: Vec<i32> = req.raw_input_contents[0]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(vals.iter().all(|v| (0..1000).contains(v)));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            build_request(&meta(vec![-1, 4], "FP32"), 8, 9, InputData::Zero, 0),
            Err(TensorError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            build_request(&meta(vec![-1, 4], "BYTES"), 8, 1, InputData::Zero, 0),
            Err(TensorError::UnsupportedDatatype { .. })
        ));
        assert!(matches!(
            build_request(&meta(vec![-1, 4], "FP32"), 8, 0, InputData::Zero, 0),
            Err(TensorError::ZeroBatch { .. })
        ));
    }
}
