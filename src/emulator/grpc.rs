//! `inference.GRPCInferenceService`: decodes messages into service calls and encodes their answers.
//! System shared memory is served by [`crate::emulator::shm`]; CUDA shared memory is refused as a
//! Triton without GPUs refuses it; log and trace settings by [`crate::emulator::settings`].

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::emulator::grpc_stream::{StreamHead, stream_one};
use crate::emulator::sequence::{CorrelationId, SequenceFlags};
use crate::emulator::service::{Core, InferCall, InferReply, MODEL_VERSION, SharedCore};
use crate::emulator::shm::{self, OutputTargets};
use crate::emulator::status::ServeError;
use crate::emulator::tensors::{InputData, InputTensor, Signature, TensorDesc};
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::{
    self, infer_parameter::ParameterChoice, model_infer_request::InferInputTensor,
    model_metadata_response::TensorMetadata,
};

/// Name the emulator reports in ServerMetadata: Triton's own, because clients check it (NVIDIA's
/// health examples refuse any other) and the emulator answers as Triton does; the version says
/// that it is the emulator, for a person or a tool that needs to tell them apart.
pub const SERVER_NAME: &str = "triton";
/// ServerMetadata's version: the emulator and its release, in place of Triton's release number.
pub const SERVER_VERSION: &str = concat!("perseus-emulator ", env!("CARGO_PKG_VERSION"));
/// Extensions the emulator actually implements, in Triton's names.
pub(crate) const EXTENSIONS: &[&str] = &[
    "model_repository",
    "model_configuration",
    "statistics",
    "binary_tensor_data",
    "classification",
    "sequence",
    "logging",
    "trace",
    "system_shared_memory",
];

pub(crate) struct GrpcFront {
    pub core: SharedCore,
}

type Reply<T> = Result<Response<T>, Status>;
type StreamReply =
    Pin<Box<dyn Stream<Item = Result<proto::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for GrpcFront {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Reply<proto::ServerLiveResponse> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Reply<proto::ServerReadyResponse> {
        Ok(Response::new(proto::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        req: Request<proto::ModelReadyRequest>,
    ) -> Reply<proto::ModelReadyResponse> {
        let req = req.into_inner();
        Ok(Response::new(proto::ModelReadyResponse {
            ready: self.core.is_ready(&req.name, &req.version),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Reply<proto::ServerMetadataResponse> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: SERVER_VERSION.into(),
            extensions: EXTENSIONS.iter().map(|s| (*s).to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        req: Request<proto::ModelMetadataRequest>,
    ) -> Reply<proto::ModelMetadataResponse> {
        let req = req.into_inner();
        let (_, entry) = self.core.ready_entry(&req.name, &req.version)?;
        let batched = entry.settings.max_batch > 0;
        let meta = |t: &TensorDesc| TensorMetadata {
            name: t.name.clone(),
            datatype: t.datatype.clone(),
            shape: metadata_shape(batched, &t.shape),
        };
        let sig: &Signature = &entry.signature;
        Ok(Response::new(proto::ModelMetadataResponse {
            name: sig.name.clone(),
            versions: vec![MODEL_VERSION.into()],
            platform: sig.platform.clone(),
            inputs: sig.inputs.iter().map(meta).collect(),
            outputs: sig.outputs.iter().map(meta).collect(),
        }))
    }

    async fn model_infer(
        &self,
        req: Request<proto::ModelInferRequest>,
    ) -> Reply<proto::ModelInferResponse> {
        Ok(Response::new(infer(&self.core, req.into_inner()).await?))
    }

    /// Each request on the stream is answered on the stream, in completion order, with failures as
    /// `error_message` (the stream itself stays open), as Triton's streaming endpoint does; a
    /// decoupled model sends each of its responses when it is due.
    async fn model_stream_infer(
        &self,
        req: Request<Streaming<proto::ModelInferRequest>>,
    ) -> Reply<StreamReply> {
        let mut incoming = req.into_inner();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let core = self.core.clone();
        tokio::spawn(async move {
            while let Some(Ok(request)) = incoming.next().await {
                let (core, tx) = (core.clone(), tx.clone());
                let empty_final = matches!(
                    request
                        .parameters
                        .get("triton_enable_empty_final_response")
                        .and_then(|p| p.parameter_choice.as_ref()),
                    Some(ParameterChoice::BoolParam(true))
                );
                let (model, id) = (request.model_name.clone(), request.id.clone());
                // Sequences are admitted here, in the stream's order, as Triton's scheduler sees
                // them. A sequence's requests are then answered one after another, in that order,
                // as Triton's sequence batcher answers them (clients pair responses by order);
                // other requests run concurrently.
                let call = decode_infer(&core, request).and_then(|(mut call, targets)| {
                    core.admit_sequence(&mut call)?;
                    Ok((call, targets))
                });
                let in_sequence = matches!(&call, Ok((c, _)) if c.sequence.id.is_some());
                let head = StreamHead {
                    model,
                    id,
                    empty_final,
                };
                if in_sequence {
                    stream_one(&core, head, call, &tx).await;
                } else {
                    tokio::spawn(async move { stream_one(&core, head, call, &tx).await });
                }
            }
        });
        Ok(Response::new(Box::pin(rx)))
    }

    async fn model_config(
        &self,
        req: Request<proto::ModelConfigRequest>,
    ) -> Reply<proto::ModelConfigResponse> {
        let req = req.into_inner();
        let (_, entry) = self.core.ready_entry(&req.name, &req.version)?;
        Ok(Response::new(proto::ModelConfigResponse {
            config: Some(crate::emulator::config::model_config(&entry)),
        }))
    }

    async fn model_statistics(
        &self,
        req: Request<proto::ModelStatisticsRequest>,
    ) -> Reply<proto::ModelStatisticsResponse> {
        let req = req.into_inner();
        let model_stats = self.core.statistics(&req.name, &req.version)?;
        Ok(Response::new(proto::ModelStatisticsResponse {
            model_stats,
        }))
    }

    async fn repository_index(
        &self,
        req: Request<proto::RepositoryIndexRequest>,
    ) -> Reply<proto::RepositoryIndexResponse> {
        Ok(Response::new(proto::RepositoryIndexResponse {
            models: self.core.index(req.into_inner().ready),
        }))
    }

    async fn repository_model_load(
        &self,
        req: Request<proto::RepositoryModelLoadRequest>,
    ) -> Reply<proto::RepositoryModelLoadResponse> {
        use proto::model_repository_parameter::ParameterChoice;
        let req = req.into_inner();
        let config = match req
            .parameters
            .get("config")
            .and_then(|p| p.parameter_choice.as_ref())
        {
            None => None,
            Some(ParameterChoice::StringParam(s)) => Some(s.clone()),
            Some(ParameterChoice::BytesParam(b)) => {
                Some(String::from_utf8(b.clone()).map_err(|_| {
                    ServeError::invalid(format!(
                        "failed to load '{}': 'config' is not UTF-8",
                        req.model_name
                    ))
                })?)
            }
            Some(_) => {
                return Err(ServeError::invalid(format!(
                    "failed to load '{}': 'config' must be a string parameter holding JSON",
                    req.model_name
                ))
                .into());
            }
        };
        crate::emulator::config::check_file_overrides(
            &req.model_name,
            req.parameters.contains_key("config"),
            req.parameters.keys().map(String::as_str),
        )?;
        let core = self.core.clone();
        let name = req.model_name.clone();
        tokio::task::spawn_blocking(move || core.load(&name, config.as_deref()))
            .await
            .map_err(|e| Status::internal(format!("load task failed: {e}")))??;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn log_settings(
        &self,
        req: Request<proto::LogSettingsRequest>,
    ) -> Reply<proto::LogSettingsResponse> {
        use crate::emulator::settings::LogValue;
        use proto::log_settings_request::setting_value::ParameterChoice as In;
        use proto::log_settings_response::{SettingValue, setting_value::ParameterChoice as Out};
        let changes: Vec<(String, LogValue)> = req
            .into_inner()
            .settings
            .into_iter()
            .filter_map(|(key, v)| {
                let value = match v.parameter_choice? {
                    In::BoolParam(b) => LogValue::Bool(b),
                    In::Uint32Param(n) => LogValue::Uint(n),
                    In::StringParam(s) => LogValue::Text(s),
                };
                Some((key, value))
            })
            .collect();
        let settings = if changes.is_empty() {
            self.core.settings.log()
        } else {
            self.core.settings.update_log(&changes)?
        };
        let settings = settings
            .into_iter()
            .map(|(k, v)| {
                let choice = match v {
                    LogValue::Bool(b) => Out::BoolParam(b),
                    LogValue::Uint(n) => Out::Uint32Param(n),
                    LogValue::Text(s) => Out::StringParam(s),
                };
                (
                    k,
                    SettingValue {
                        parameter_choice: Some(choice),
                    },
                )
            })
            .collect();
        Ok(Response::new(proto::LogSettingsResponse { settings }))
    }

    async fn trace_setting(
        &self,
        req: Request<proto::TraceSettingRequest>,
    ) -> Reply<proto::TraceSettingResponse> {
        let req = req.into_inner();
        if !req.model_name.is_empty() {
            self.core.require_ready(&req.model_name, "")?;
        }
        let changes: Vec<(String, Vec<String>)> = req
            .settings
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect();
        let settings = if changes.is_empty() {
            self.core.settings.trace(&req.model_name)
        } else {
            self.core.settings.update_trace(&req.model_name, &changes)?
        };
        let settings = settings
            .into_iter()
            .map(|(k, value)| (k, proto::trace_setting_response::SettingValue { value }))
            .collect();
        Ok(Response::new(proto::TraceSettingResponse { settings }))
    }

    async fn repository_model_unload(
        &self,
        req: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Reply<proto::RepositoryModelUnloadResponse> {
        self.core.unload(&req.into_inner().model_name)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        req: Request<proto::SystemSharedMemoryStatusRequest>,
    ) -> Reply<proto::SystemSharedMemoryStatusResponse> {
        use proto::system_shared_memory_status_response::RegionStatus;
        let regions = self.core.shm.status(&req.into_inner().name)?;
        Ok(Response::new(proto::SystemSharedMemoryStatusResponse {
            regions: regions
                .into_iter()
                .map(|r| {
                    let status = RegionStatus {
                        name: r.name.clone(),
                        key: r.key,
                        offset: r.offset,
                        byte_size: r.byte_size,
                    };
                    (r.name, status)
                })
                .collect(),
        }))
    }

    async fn system_shared_memory_register(
        &self,
        req: Request<proto::SystemSharedMemoryRegisterRequest>,
    ) -> Reply<proto::SystemSharedMemoryRegisterResponse> {
        let r = req.into_inner();
        self.core
            .shm
            .register(&r.name, &r.key, r.offset, r.byte_size)?;
        Ok(Response::new(proto::SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        req: Request<proto::SystemSharedMemoryUnregisterRequest>,
    ) -> Reply<proto::SystemSharedMemoryUnregisterResponse> {
        self.core.shm.unregister(&req.into_inner().name);
        Ok(Response::new(
            proto::SystemSharedMemoryUnregisterResponse {},
        ))
    }

    async fn cuda_shared_memory_status(
        &self,
        req: Request<proto::CudaSharedMemoryStatusRequest>,
    ) -> Reply<proto::CudaSharedMemoryStatusResponse> {
        let name = req.into_inner().name;
        if !name.is_empty() {
            return Err(shm::cuda_not_found(&name).into());
        }
        Ok(Response::new(
            proto::CudaSharedMemoryStatusResponse::default(),
        ))
    }

    async fn cuda_shared_memory_register(
        &self,
        req: Request<proto::CudaSharedMemoryRegisterRequest>,
    ) -> Reply<proto::CudaSharedMemoryRegisterResponse> {
        Err(shm::cuda_unsupported(&req.into_inner().name).into())
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _: Request<proto::CudaSharedMemoryUnregisterRequest>,
    ) -> Reply<proto::CudaSharedMemoryUnregisterResponse> {
        Ok(Response::new(proto::CudaSharedMemoryUnregisterResponse {}))
    }
}

/// One inference: inputs from the message or shared memory, outputs into the reply or shared memory.
async fn infer(
    core: &Core,
    req: proto::ModelInferRequest,
) -> Result<proto::ModelInferResponse, ServeError> {
    let (call, targets) = decode_infer(core, req)?;
    let mut reply = core.infer(call, "ModelInfer RPC").await?;
    targets.deliver(&mut reply)?;
    Ok(encode_infer(reply, None))
}

/// Triton reports a batching model's shapes with a leading −1.
pub(crate) fn metadata_shape(batched: bool, shape: &[i64]) -> Vec<i64> {
    let mut full = Vec::with_capacity(shape.len() + 1);
    if batched {
        full.push(-1);
    }
    full.extend_from_slice(shape);
    full
}

/// Turns a request into a service call, taking each input from shared memory when its parameters
/// name a region, else from the next `raw_input_contents` entry or, failing that, from its typed
/// `contents`; and the outputs to be written into shared memory, checked now.
fn decode_infer(
    core: &Core,
    req: proto::ModelInferRequest,
) -> Result<(InferCall, OutputTargets), ServeError> {
    let in_shm = req
        .inputs
        .iter()
        .map(|t| shm::grpc_params(&t.name, &t.parameters))
        .collect::<Result<Vec<_>, _>>()?;
    let plain = in_shm.iter().filter(|s| s.is_none()).count();
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != plain {
        return Err(ServeError::invalid(format!(
            "expected {plain} raw input contents but got {} for model '{}'",
            raw.len(),
            req.model_name
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (t, shm) in req.inputs.into_iter().zip(in_shm) {
        let data = match shm {
            Some(_) if t.contents.is_some() => {
                return Err(ServeError::invalid(format!(
                    "unexpected 'content' provided when using shared memory for input tensor \
                     '{}' for model '{}'",
                    t.name, req.model_name
                )));
            }
            Some(shm) => InputData::Shm(core.shm.window(&shm)?),
            None => match raw.next() {
                Some(bytes) => bytes.into(),
                None => InputData::Bytes(typed_bytes(&t).into()),
            },
        };
        inputs.push(InputTensor {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
            data,
        });
    }
    let mut targets = OutputTargets::default();
    for o in &req.outputs {
        if let Some(shm) = shm::grpc_params(&o.name, &o.parameters)? {
            targets.push(o.name.clone(), core.shm.window(&shm)?);
        }
    }
    let classes = req
        .outputs
        .iter()
        .filter_map(|o| {
            let count = match o
                .parameters
                .get("classification")?
                .parameter_choice
                .as_ref()?
            {
                ParameterChoice::Int64Param(n) => u32::try_from(*n).ok()?,
                ParameterChoice::Uint64Param(n) => u32::try_from(*n).ok()?,
                _ => return None,
            };
            Some((o.name.clone(), count))
        })
        .collect();
    let sequence = sequence_flags(&req.parameters);
    let call = InferCall {
        model: req.model_name,
        version: req.model_version,
        id: req.id,
        inputs,
        outputs: req.outputs.into_iter().map(|o| o.name).collect(),
        classes,
        sequence,
    };
    Ok((call, targets))
}

/// The sequence batcher's request parameters, as tritonclient sends them.
fn sequence_flags(
    params: &std::collections::HashMap<String, proto::InferParameter>,
) -> SequenceFlags {
    let choice = |key: &str| params.get(key).and_then(|p| p.parameter_choice.as_ref());
    let flag = |key: &str| matches!(choice(key), Some(ParameterChoice::BoolParam(true)));
    let id = match choice("sequence_id") {
        Some(ParameterChoice::Int64Param(n)) => Some(CorrelationId::Number(*n as u64)),
        Some(ParameterChoice::Uint64Param(n)) => Some(CorrelationId::Number(*n)),
        Some(ParameterChoice::StringParam(s)) => Some(CorrelationId::Text(s.clone())),
        _ => None,
    };
    SequenceFlags {
        id,
        start: flag("sequence_start"),
        end: flag("sequence_end"),
        admitted: None,
    }
}

/// Little-endian bytes of an input's typed contents (the field matching its datatype).
fn typed_bytes(t: &InferInputTensor) -> Vec<u8> {
    let Some(c) = &t.contents else {
        return Vec::new();
    };
    fn le<T: Copy, const N: usize>(values: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| f(v)).collect()
    }
    match t.datatype.as_str() {
        "BOOL" => c.bool_contents.iter().map(|&b| u8::from(b)).collect(),
        "INT8" => c.int_contents.iter().map(|&v| v as i8 as u8).collect(),
        "INT16" => c
            .int_contents
            .iter()
            .flat_map(|&v| (v as i16).to_le_bytes())
            .collect(),
        "INT32" => le(&c.int_contents, i32::to_le_bytes),
        "INT64" => le(&c.int64_contents, i64::to_le_bytes),
        "UINT8" => c.uint_contents.iter().map(|&v| v as u8).collect(),
        "UINT16" => c
            .uint_contents
            .iter()
            .flat_map(|&v| (v as u16).to_le_bytes())
            .collect(),
        "UINT32" => le(&c.uint_contents, u32::to_le_bytes),
        "UINT64" => le(&c.uint64_contents, u64::to_le_bytes),
        "FP32" => le(&c.fp32_contents, f32::to_le_bytes),
        "FP64" => le(&c.fp64_contents, f64::to_le_bytes),
        "BYTES" => {
            crate::emulator::examples::join_bytes(c.bytes_contents.iter().map(|b| b.as_ref()))
        }
        _ => Vec::new(),
    }
}

/// Triton's gRPC endpoint always answers with raw output contents; clients decode them by datatype.
/// `final_flag` is the `triton_final_response` parameter of a stream that asked for it.
pub(crate) fn encode_infer(
    reply: InferReply,
    final_flag: Option<bool>,
) -> proto::ModelInferResponse {
    let mut outputs = Vec::with_capacity(reply.outputs.len());
    let mut raw = Vec::with_capacity(reply.outputs.len());
    for o in reply.outputs {
        outputs.push(proto::model_infer_response::InferOutputTensor {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            ..Default::default()
        });
        raw.push(o.data.into());
    }
    proto::ModelInferResponse {
        model_name: reply.model,
        model_version: reply.version,
        id: reply.id,
        outputs,
        raw_output_contents: raw,
        parameters: final_flag
            .map(|last| {
                let value = proto::InferParameter {
                    parameter_choice: Some(ParameterChoice::BoolParam(last)),
                };
                [("triton_final_response".to_string(), value)].into()
            })
            .unwrap_or_default(),
    }
}
