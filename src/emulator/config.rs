//! The model configuration as Triton reports it (ModelConfig, `GET /v2/models/{m}/config`): the
//! repository's settings plus what the catalog says of the model's tensors, batcher and policy.

use serde_json::Value;

use crate::catalog::Compute;
use crate::emulator::repository::Entry;
use crate::emulator::tensors::TensorDesc;
use crate::proto;

fn data_type(datatype: &str) -> proto::DataType {
    use proto::DataType as D;
    match datatype {
        "BOOL" => D::TypeBool,
        "UINT8" => D::TypeUint8,
        "UINT16" => D::TypeUint16,
        "UINT32" => D::TypeUint32,
        "UINT64" => D::TypeUint64,
        "INT8" => D::TypeInt8,
        "INT16" => D::TypeInt16,
        "INT32" => D::TypeInt32,
        "INT64" => D::TypeInt64,
        "FP16" => D::TypeFp16,
        "FP32" => D::TypeFp32,
        "FP64" => D::TypeFp64,
        "BYTES" => D::TypeString,
        "BF16" => D::TypeBf16,
        _ => D::TypeInvalid,
    }
}

/// Triton's sequence batcher controls of `simple_sequence`: START and READY as INT32 0/1.
const SEQUENCE_CONTROLS: [(&str, proto::model_sequence_batching::control::Kind); 2] = [
    (
        "START",
        proto::model_sequence_batching::control::Kind::ControlSequenceStart,
    ),
    (
        "READY",
        proto::model_sequence_batching::control::Kind::ControlSequenceReady,
    ),
];

/// The model configuration as ModelConfig reports it.
pub(crate) fn model_config(entry: &Entry) -> proto::ModelConfig {
    let s = &entry.settings;
    let sig = &entry.signature;
    let input = |t: &TensorDesc| proto::ModelInput {
        name: t.name.clone(),
        data_type: data_type(&t.datatype) as i32,
        dims: t.shape.clone(),
        format: t
            .format
            .as_deref()
            .and_then(proto::model_input::Format::from_str_name)
            .map_or(0, |f| f as i32),
        ..Default::default()
    };
    let output = |(i, t): (usize, &TensorDesc)| proto::ModelOutput {
        name: t.name.clone(),
        data_type: data_type(&t.datatype) as i32,
        dims: t.shape.clone(),
        label_filename: label_file(entry, i).unwrap_or_default(),
        ..Default::default()
    };
    let batching = s.dynamic_batching.as_ref().map(|b| {
        proto::model_config::SchedulingChoice::DynamicBatching(proto::ModelDynamicBatching {
            preferred_batch_size: b
                .preferred_batch_sizes
                .iter()
                .map(|&p| i32::try_from(p).unwrap_or(i32::MAX))
                .collect(),
            max_queue_delay_microseconds: b.max_queue_delay_us,
            default_queue_policy: (s.max_queue_size > 0).then(|| proto::ModelQueuePolicy {
                max_queue_size: s.max_queue_size,
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let sequence = (sig.compute == Compute::Sequence).then(|| {
        use proto::model_sequence_batching::{Control, ControlInput};
        proto::model_config::SchedulingChoice::SequenceBatching(proto::ModelSequenceBatching {
            control_input: SEQUENCE_CONTROLS
                .iter()
                .map(|&(name, kind)| ControlInput {
                    name: name.into(),
                    control: vec![Control {
                        kind: kind as i32,
                        int32_false_true: vec![0, 1],
                        ..Default::default()
                    }],
                })
                .collect(),
            ..Default::default()
        })
    });
    proto::ModelConfig {
        name: sig.name.clone(),
        platform: sig.platform.clone(),
        max_batch_size: i32::try_from(s.max_batch).unwrap_or(i32::MAX),
        input: sig.inputs.iter().map(input).collect(),
        output: sig.outputs.iter().enumerate().map(output).collect(),
        instance_group: vec![proto::ModelInstanceGroup {
            name: sig.name.clone(),
            kind: proto::model_instance_group::Kind::Gpu as i32,
            count: i32::try_from(s.instances).unwrap_or(i32::MAX),
            gpus: vec![0],
            ..Default::default()
        }],
        scheduling_choice: sequence.or(batching),
        model_transaction_policy: (sig.compute == Compute::Repeat)
            .then_some(proto::ModelTransactionPolicy { decoupled: true }),
        ..Default::default()
    }
}

/// The label file Triton's configuration names for output `index`, where the model has labels.
fn label_file(entry: &Entry, index: usize) -> Option<String> {
    (index == 0 && entry.signature.labels.is_some())
        .then(|| format!("{}_labels.txt", entry.signature.name))
}

/// The same configuration in Triton's JSON form (`GET /v2/models/{m}/config`): the protobuf message
/// written with protobuf's JSON names (enums by name, 64-bit integers as strings where Triton does).
pub(crate) fn model_config_json(entry: &Entry) -> Value {
    let s = &entry.settings;
    let sig = &entry.signature;
    let tensor = |t: &TensorDesc| {
        serde_json::json!({
            "name": t.name,
            "data_type": format!("TYPE_{}", if t.datatype == "BYTES" { "STRING" } else { &t.datatype }),
            "dims": t.shape,
        })
    };
    let inputs: Vec<Value> = sig
        .inputs
        .iter()
        .map(|t| {
            let mut v = tensor(t);
            if let (Some(f), Some(obj)) = (&t.format, v.as_object_mut()) {
                obj.insert("format".into(), Value::String(f.clone()));
            }
            v
        })
        .collect();
    let outputs: Vec<Value> = sig
        .outputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut v = tensor(t);
            if let (Some(file), Some(obj)) = (label_file(entry, i), v.as_object_mut()) {
                obj.insert("label_filename".into(), Value::String(file));
            }
            v
        })
        .collect();
    let mut config = serde_json::json!({
        "name": sig.name,
        "platform": sig.platform,
        "max_batch_size": s.max_batch,
        "input": inputs,
        "output": outputs,
        "instance_group": [{ "name": sig.name, "kind": "KIND_GPU", "count": s.instances, "gpus": [0] }],
    });
    let Some(obj) = config.as_object_mut() else {
        return config;
    };
    if let Some(b) = &s.dynamic_batching {
        let mut batching = serde_json::json!({
            "preferred_batch_size": b.preferred_batch_sizes,
            "max_queue_delay_microseconds": b.max_queue_delay_us,
        });
        if let (true, Some(batching)) = (s.max_queue_size > 0, batching.as_object_mut()) {
            batching.insert(
                "default_queue_policy".into(),
                serde_json::json!({ "max_queue_size": s.max_queue_size }),
            );
        }
        obj.insert("dynamic_batching".into(), batching);
    }
    if sig.compute == Compute::Sequence {
        let controls: Vec<Value> = SEQUENCE_CONTROLS
            .iter()
            .map(|(name, kind)| {
                serde_json::json!({"name": name, "control": [{"kind": kind.as_str_name(), "int32_false_true": [0, 1]}]})
            })
            .collect();
        obj.insert(
            "sequence_batching".into(),
            serde_json::json!({ "control_input": controls }),
        );
    }
    if sig.compute == Compute::Repeat {
        obj.insert(
            "model_transaction_policy".into(),
            serde_json::json!({ "decoupled": true }),
        );
    }
    config
}

/// Longest path component a file system takes (NAME_MAX on Linux).
const NAME_MAX: usize = 255;

/// Checks a load request's `file:<path>` parameters (model files sent with the request) as Triton
/// does: they need a `config` to go with them, and each path must stay inside the model's directory
/// with components a file system accepts. The emulator has no model files, so files that pass are
/// accepted and change nothing.
pub(crate) fn check_file_overrides<'a>(
    model: &str,
    has_config: bool,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), crate::emulator::status::ServeError> {
    use crate::emulator::status::{Code, ServeError};
    let poll = |code, why: String| ServeError {
        code,
        message: format!("failed to load '{model}', failed to poll from model repository: {why}"),
    };
    for key in paths {
        let Some(path) = key.strip_prefix("file:") else {
            continue;
        };
        if !has_config {
            return Err(poll(
                Code::InvalidArgument,
                format!("'{key}' is given without the 'config' parameter that file overrides need"),
            ));
        }
        let parts: Vec<&str> = path.split('/').collect();
        if path.is_empty() || path.starts_with('/') || parts.contains(&"..") {
            return Err(poll(
                Code::InvalidArgument,
                format!(
                    "file override '{path}' must be a relative path inside the model directory"
                ),
            ));
        }
        if let Some(long) = parts.iter().find(|p| p.len() > NAME_MAX) {
            return Err(poll(
                Code::Internal,
                format!(
                    "file name too long: a path component of {} bytes (at most {NAME_MAX})",
                    long.len()
                ),
            ));
        }
    }
    Ok(())
}
