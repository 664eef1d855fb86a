//! Triton's HTTP/REST v2 endpoint (KServe v2 plus Triton's repository, statistics and binary-tensor
//! extensions): enough for `curl …/v2/health/ready` and for NVIDIA's `tritonclient.http`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::emulator::config::model_config_json;
use crate::emulator::grpc::{EXTENSIONS, SERVER_NAME, SERVER_VERSION, metadata_shape};
use crate::emulator::http_json::{self, Coding, bytes_to_json, json_to_bytes};
use crate::emulator::sequence::{CorrelationId, SequenceFlags};
use crate::emulator::service::{InferCall, InferReply, MODEL_VERSION, SharedCore};
use crate::emulator::shm::{self, OutputTargets};
use crate::emulator::status::ServeError;
use crate::emulator::tensors::{InputData, InputTensor, OutputTensor};
use crate::proto;

const HEADER_LENGTH: &str = "Inference-Header-Content-Length";
/// Request bodies up to the gRPC endpoint's message limit, so a batch of images that gRPC accepts is
/// accepted over HTTP too (the web framework's default is 2 MiB).
const MAX_BODY_BYTES: usize = 1 << 30;

pub(crate) fn router(core: SharedCore) -> Router {
    Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .route("/v2", get(server_metadata))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(model_metadata_v),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(model_ready_v),
        )
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(model_config_v),
        )
        .route("/v2/models/{model}/stats", get(model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(model_stats_v),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
        .merge(crate::emulator::http_settings::routes())
        .merge(crate::emulator::shm_http::routes())
        .fallback(http_json::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(http_json::json_errors))
        .with_state(core)
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        (
            self.http_status(),
            axum::Json(json!({ "error": self.message })),
        )
            .into_response()
    }
}

type JsonReply = Result<axum::Json<Value>, ServeError>;

async fn server_metadata() -> axum::Json<Value> {
    axum::Json(json!({
        "name": SERVER_NAME,
        "version": SERVER_VERSION,
        "extensions": EXTENSIONS,
    }))
}

async fn model_metadata(State(core): State<SharedCore>, Path(model): Path<String>) -> JsonReply {
    metadata(&core, &model, "")
}

async fn model_metadata_v(
    State(core): State<SharedCore>,
    Path((model, version)): Path<(String, String)>,
) -> JsonReply {
    metadata(&core, &model, &version)
}

fn metadata(core: &SharedCore, model: &str, version: &str) -> JsonReply {
    let (_, entry) = core.ready_entry(model, version)?;
    let batched = entry.settings.max_batch > 0;
    let tensors = |list: &[crate::emulator::tensors::TensorDesc]| -> Vec<Value> {
        list.iter()
            .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": metadata_shape(batched, &t.shape)}))
            .collect()
    };
    Ok(axum::Json(json!({
        "name": entry.signature.name,
        "versions": [MODEL_VERSION],
        "platform": entry.signature.platform,
        "inputs": tensors(&entry.signature.inputs),
        "outputs": tensors(&entry.signature.outputs),
    })))
}

async fn model_ready(State(core): State<SharedCore>, Path(model): Path<String>) -> StatusCode {
    ready_status(&core, &model, "")
}

async fn model_ready_v(
    State(core): State<SharedCore>,
    Path((model, version)): Path<(String, String)>,
) -> StatusCode {
    ready_status(&core, &model, &version)
}

/// Triton answers readiness with the status code alone: 200 ready, 400 not.
fn ready_status(core: &SharedCore, model: &str, version: &str) -> StatusCode {
    if core.is_ready(model, version) {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

async fn model_config(State(core): State<SharedCore>, Path(model): Path<String>) -> JsonReply {
    let (_, entry) = core.ready_entry(&model, "")?;
    Ok(axum::Json(model_config_json(&entry)))
}

async fn model_config_v(
    State(core): State<SharedCore>,
    Path((model, version)): Path<(String, String)>,
) -> JsonReply {
    let (_, entry) = core.ready_entry(&model, &version)?;
    Ok(axum::Json(model_config_json(&entry)))
}

async fn all_stats(State(core): State<SharedCore>) -> JsonReply {
    stats(&core, "", "")
}

async fn model_stats(State(core): State<SharedCore>, Path(model): Path<String>) -> JsonReply {
    stats(&core, &model, "")
}

async fn model_stats_v(
    State(core): State<SharedCore>,
    Path((model, version)): Path<(String, String)>,
) -> JsonReply {
    stats(&core, &model, &version)
}

fn stats(core: &SharedCore, model: &str, version: &str) -> JsonReply {
    let list = core.statistics(model, version)?;
    Ok(axum::Json(
        json!({ "model_stats": list.iter().map(statistics_json).collect::<Vec<_>>() }),
    ))
}

fn duration_json(d: Option<&proto::StatisticDuration>) -> Value {
    let d = d.copied().unwrap_or_default();
    json!({ "count": d.count, "ns": d.ns })
}

fn statistics_json(s: &proto::ModelStatistics) -> Value {
    let i = s.inference_stats.unwrap_or_default();
    json!({
        "name": s.name,
        "version": s.version,
        "last_inference": s.last_inference,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration_json(i.success.as_ref()),
            "fail": duration_json(i.fail.as_ref()),
            "queue": duration_json(i.queue.as_ref()),
            "compute_input": duration_json(i.compute_input.as_ref()),
            "compute_infer": duration_json(i.compute_infer.as_ref()),
            "compute_output": duration_json(i.compute_output.as_ref()),
            "cache_hit": duration_json(i.cache_hit.as_ref()),
            "cache_miss": duration_json(i.cache_miss.as_ref()),
        },
        "batch_stats": s.batch_stats.iter().map(|b| json!({
            "batch_size": b.batch_size,
            "compute_input": duration_json(b.compute_input.as_ref()),
            "compute_infer": duration_json(b.compute_infer.as_ref()),
            "compute_output": duration_json(b.compute_output.as_ref()),
        })).collect::<Vec<_>>(),
        "memory_usage": s.memory_usage.iter().map(|m| json!({
            "type": m.r#type, "id": m.id, "byte_size": m.byte_size,
        })).collect::<Vec<_>>(),
    })
}

async fn repository_index(State(core): State<SharedCore>, body: Bytes) -> JsonReply {
    let ready = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ready").and_then(Value::as_bool))
        .unwrap_or(false);
    let list: Vec<Value> = core
        .index(ready)
        .into_iter()
        .map(
            |m| json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}),
        )
        .collect();
    Ok(axum::Json(Value::Array(list)))
}

async fn load(
    State(core): State<SharedCore>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ServeError> {
    let config = if body.is_empty() {
        None
    } else {
        let request: Value = serde_json::from_slice(&body)
            .map_err(|e| ServeError::invalid(format!("failed to parse the load request: {e}")))?;
        let params = request.get("parameters").and_then(Value::as_object);
        crate::emulator::config::check_file_overrides(
            &model,
            params.is_some_and(|p| p.contains_key("config")),
            params
                .into_iter()
                .flat_map(|p| p.keys().map(String::as_str)),
        )?;
        match request.pointer("/parameters/config") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A config given as a JSON object rather than a string holding JSON is accepted too.
            Some(other) => Some(other.to_string()),
        }
    };
    tokio::task::spawn_blocking(move || core.load(&model, config.as_deref()))
        .await
        .map_err(|e| ServeError {
            code: crate::emulator::status::Code::Internal,
            message: format!("load task failed: {e}"),
        })??;
    Ok(StatusCode::OK)
}

async fn unload(
    State(core): State<SharedCore>,
    Path(model): Path<String>,
) -> Result<StatusCode, ServeError> {
    core.unload(&model)?;
    Ok(StatusCode::OK)
}

async fn infer(
    State(core): State<SharedCore>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServeError> {
    infer_inner(&core, model, String::new(), &headers, body).await
}

async fn infer_v(
    State(core): State<SharedCore>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ServeError> {
    infer_inner(&core, model, version, &headers, body).await
}

/// JSON inference, with the binary-tensor extension: the body may be a JSON header of
/// `Inference-Header-Content-Length` bytes followed by the inputs' raw bytes, in input order.
async fn infer_inner(
    core: &SharedCore,
    model: String,
    version: String,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ServeError> {
    // The model first, so a request for an unknown model says so rather than what its body lacks.
    core.require_ready(&model, &version)?;
    let body = match Coding::of_request(headers)? {
        Some(coding) => Bytes::from(coding.decode(&body, MAX_BODY_BYTES)?),
        None => body,
    };
    let header_len = match headers.get(HEADER_LENGTH) {
        None => body.len(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| ServeError::invalid(format!("invalid {HEADER_LENGTH} header")))?,
    };
    let request: Value = serde_json::from_slice(&body[..header_len])
        .map_err(|e| ServeError::invalid(format!("failed to parse the request JSON: {e}")))?;

    let inputs = decode_inputs(core, &request, body.slice(header_len..))?;

    let all_binary = request
        .pointer("/parameters/binary_data_output")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut outputs = Vec::new();
    let mut binary_out = Vec::new();
    let mut classes = Vec::new();
    let mut targets = OutputTargets::default();
    for output in request
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = output
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let wants_binary = output
            .pointer("/parameters/binary_data")
            .and_then(Value::as_bool)
            .unwrap_or(all_binary);
        if let Some(shm) = shm::json_params(output.get("parameters"))? {
            targets.push(name.clone(), core.shm.window(&shm)?);
        }
        if let Some(count) = output
            .pointer("/parameters/classification")
            .and_then(Value::as_u64)
        {
            classes.push((name.clone(), u32::try_from(count).unwrap_or(u32::MAX)));
        }
        binary_out.push((name.clone(), wants_binary));
        outputs.push(name);
    }
    let id = request
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut reply = core
        .infer(
            InferCall {
                model,
                version,
                id,
                inputs,
                outputs,
                classes,
                sequence: sequence_flags(&request),
            },
            "HTTP end point",
        )
        .await?;
    targets.deliver(&mut reply)?;

    Ok(encode_reply(
        reply,
        &binary_out,
        all_binary,
        &targets,
        Coding::accepted(headers),
    ))
}

/// The sequence batcher's request parameters (`sequence_id` a number or a string).
fn sequence_flags(request: &Value) -> SequenceFlags {
    let param = |key: &str| request.pointer(&format!("/parameters/{key}"));
    let id = match param("sequence_id") {
        Some(Value::String(s)) => Some(CorrelationId::Text(s.clone())),
        Some(v) => v.as_u64().map(CorrelationId::Number),
        None => None,
    };
    let flag = |key: &str| param(key).and_then(Value::as_bool).unwrap_or(false);
    SequenceFlags {
        id,
        start: flag("sequence_start"),
        end: flag("sequence_end"),
        admitted: None,
    }
}

/// The request's inputs: each from its JSON `data` or, with the binary-tensor extension, the next
/// `binary_data_size` bytes after the JSON header, in input order.
fn decode_inputs(
    core: &SharedCore,
    request: &Value,
    mut binary: Bytes,
) -> Result<Vec<InputTensor<InputData>>, ServeError> {
    let mut inputs = Vec::new();
    for input in request
        .get("inputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = |k: &str| {
            input
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (name, datatype) = (field("name"), field("datatype"));
        let shape: Vec<i64> = input
            .get("shape")
            .and_then(Value::as_array)
            .map(|dims| dims.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        let in_shm = shm::json_params(input.get("parameters"))?;
        let binary_size = input
            .pointer("/parameters/binary_data_size")
            .and_then(Value::as_u64);
        let data = match (in_shm, binary_size) {
            (Some(shm), _) => InputData::Shm(core.shm.window(&shm)?),
            (None, Some(size)) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(ServeError::invalid(format!(
                        "unexpected size {size} for input '{name}', only {} binary bytes remain",
                        binary.len()
                    )));
                }
                InputData::Bytes(binary.split_to(size))
            }
            (None, None) => {
                InputData::Bytes(json_to_bytes(&name, &datatype, input.get("data"))?.into())
            }
        };
        inputs.push(InputTensor {
            name,
            datatype,
            shape,
            data,
        });
    }
    Ok(inputs)
}

/// The reply as JSON, or as a JSON header followed by the outputs asked for in binary; compressed
/// with `coding` where the client accepts one.
fn encode_reply(
    reply: InferReply,
    binary_out: &[(String, bool)],
    all_binary: bool,
    in_shm: &OutputTargets,
    coding: Option<Coding>,
) -> Response {
    let mut blobs: Vec<u8> = Vec::new();
    let mut encoded = Vec::new();
    for o in &reply.outputs {
        let binary = binary_out
            .iter()
            .find(|(n, _)| n == &o.name)
            .map_or(all_binary, |&(_, wants)| wants);
        encoded.push(if in_shm.contains(&o.name) {
            // Written into the client's region: the reply carries only what it is.
            json!({"name": o.name, "datatype": o.datatype, "shape": o.shape})
        } else {
            output_json(o, binary, &mut blobs)
        });
    }
    let mut header_json = json!({
        "model_name": reply.model,
        "model_version": reply.version,
        "outputs": encoded,
    });
    if !reply.id.is_empty()
        && let Some(obj) = header_json.as_object_mut()
    {
        obj.insert("id".into(), Value::String(reply.id));
    }
    let mut body = header_json.to_string().into_bytes();
    let header_len = body.len();
    let binary = !blobs.is_empty();
    body.extend_from_slice(&blobs);
    if let Some(c) = coding {
        body = c.encode(&body);
    }
    let content_type = if binary {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if binary {
        headers.insert(
            header::HeaderName::from_static("inference-header-content-length"),
            HeaderValue::from(header_len),
        );
    }
    if let Some(c) = coding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.name()));
    }
    response
}

fn output_json(o: &OutputTensor, binary: bool, blobs: &mut Vec<u8>) -> Value {
    if binary {
        blobs.extend_from_slice(&o.data);
        json!({"name": o.name, "datatype": o.datatype, "shape": o.shape,
               "parameters": {"binary_data_size": o.data.len()}})
    } else {
        json!({"name": o.name, "datatype": o.datatype, "shape": o.shape, "data": bytes_to_json(o)})
    }
}
