//! Triton's HTTP/REST v2 endpoint (KServe v2 plus Triton's repository, statistics and binary-tensor
//! extensions): enough for `curl …/v2/health/ready` and for NVIDIA's `tritonclient.http`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::emulator::grpc::{EXTENSIONS, SERVER_NAME, metadata_shape};
use crate::emulator::repository::model_config_json;
use crate::emulator::service::{InferCall, InferReply, MODEL_VERSION, SharedCore};
use crate::emulator::shm::{self, OutputTargets};
use crate::emulator::status::ServeError;
use crate::emulator::tensors::{InputTensor, OutputTensor, element_size};
use crate::proto;

const HEADER_LENGTH: &str = "Inference-Header-Content-Length";

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
        .merge(crate::emulator::shm_http::routes())
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
        "version": env!("CARGO_PKG_VERSION"),
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
        binary_out.push((name.clone(), wants_binary));
        outputs.push(name);
    }
    let id = request
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut reply = core
        .infer(InferCall {
            model,
            version,
            id,
            inputs,
            outputs,
        })
        .await?;
    targets.deliver(&mut reply)?;

    Ok(encode_reply(reply, &binary_out, all_binary, &targets))
}

/// The request's inputs: each from its JSON `data` or, with the binary-tensor extension, the next
/// `binary_data_size` bytes after the JSON header, in input order.
fn decode_inputs(
    core: &SharedCore,
    request: &Value,
    mut binary: Bytes,
) -> Result<Vec<InputTensor>, ServeError> {
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
            (Some(shm), _) => core.shm.window(&shm)?.read()?,
            (None, Some(size)) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if size > binary.len() {
                    return Err(ServeError::invalid(format!(
                        "unexpected size {size} for input '{name}', only {} binary bytes remain",
                        binary.len()
                    )));
                }
                binary.split_to(size)
            }
            (None, None) => json_to_bytes(&name, &datatype, input.get("data"))?.into(),
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

/// The reply as JSON, or as a JSON header followed by the outputs asked for in binary.
fn encode_reply(
    reply: InferReply,
    binary_out: &[(String, bool)],
    all_binary: bool,
    in_shm: &OutputTargets,
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
    let header_bytes = header_json.to_string().into_bytes();
    if blobs.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], header_bytes).into_response();
    }
    let header_len = header_bytes.len();
    let mut full = header_bytes;
    full.extend_from_slice(&blobs);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("inference-header-content-length"),
                header_len.to_string(),
            ),
        ],
        Body::from(full),
    )
        .into_response()
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

/// Flattens JSON tensor data (nested or flat, row-major) into little-endian bytes of `datatype`.
fn json_to_bytes(name: &str, datatype: &str, data: Option<&Value>) -> Result<Vec<u8>, ServeError> {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let mut flat = Vec::new();
    if let Some(data) = data {
        flatten(data, &mut flat);
    }
    let bad = |v: &Value| {
        ServeError::invalid(format!(
            "unable to parse '{v}' as {datatype} for input '{name}'"
        ))
    };
    let mut out = Vec::with_capacity(flat.len() * element_size(datatype).unwrap_or(1));
    for v in flat {
        let int = || v.as_i64().ok_or_else(|| bad(v));
        let uint = || v.as_u64().ok_or_else(|| bad(v));
        let float = || v.as_f64().ok_or_else(|| bad(v));
        match datatype {
            "BOOL" => out.push(u8::from(v.as_bool().ok_or_else(|| bad(v))?)),
            "INT8" => out.extend((int()? as i8).to_le_bytes()),
            "INT16" => out.extend((int()? as i16).to_le_bytes()),
            "INT32" => out.extend((int()? as i32).to_le_bytes()),
            "INT64" => out.extend(int()?.to_le_bytes()),
            "UINT8" => out.extend((uint()? as u8).to_le_bytes()),
            "UINT16" => out.extend((uint()? as u16).to_le_bytes()),
            "UINT32" => out.extend((uint()? as u32).to_le_bytes()),
            "UINT64" => out.extend(uint()?.to_le_bytes()),
            "FP32" => out.extend((float()? as f32).to_le_bytes()),
            "FP64" => out.extend(float()?.to_le_bytes()),
            other => {
                return Err(ServeError::invalid(format!(
                    "datatype '{other}' of input '{name}' is not supported in JSON form by the emulator"
                )));
            }
        }
    }
    Ok(out)
}

/// An output's bytes as a flat JSON list of numbers.
fn bytes_to_json(o: &OutputTensor) -> Value {
    fn words<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        data.chunks_exact(N).map(|c| {
            let mut w = [0; N];
            w.copy_from_slice(c);
            w
        })
    }
    let d = &o.data;
    let values: Vec<Value> = match o.datatype.as_str() {
        "BOOL" => d.iter().map(|&b| json!(b != 0)).collect(),
        "INT8" => d.iter().map(|&b| json!(b as i8)).collect(),
        "UINT8" => d.iter().map(|&b| json!(b)).collect(),
        "INT16" => words::<2>(d)
            .map(|w| json!(i16::from_le_bytes(w)))
            .collect(),
        "UINT16" => words::<2>(d)
            .map(|w| json!(u16::from_le_bytes(w)))
            .collect(),
        "INT32" => words::<4>(d)
            .map(|w| json!(i32::from_le_bytes(w)))
            .collect(),
        "UINT32" => words::<4>(d)
            .map(|w| json!(u32::from_le_bytes(w)))
            .collect(),
        "FP32" => words::<4>(d)
            .map(|w| json!(f32::from_le_bytes(w)))
            .collect(),
        "INT64" => words::<8>(d)
            .map(|w| json!(i64::from_le_bytes(w)))
            .collect(),
        "UINT64" => words::<8>(d)
            .map(|w| json!(u64::from_le_bytes(w)))
            .collect(),
        "FP64" => words::<8>(d)
            .map(|w| json!(f64::from_le_bytes(w)))
            .collect(),
        _ => Vec::new(),
    };
    Value::Array(values)
}
