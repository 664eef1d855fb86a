//! Triton's HTTP shared-memory endpoints (`/v2/systemsharedmemory/…`, `/v2/cudasharedmemory/…`)
//! over [`crate::emulator::shm`], for tritonclient.http's shared-memory calls.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::emulator::service::SharedCore;
use crate::emulator::shm::{cuda_not_found, cuda_unsupported};
use crate::emulator::status::ServeError;

/// The routes, to merge into the HTTP front end's router before its state is set.
pub(crate) fn routes() -> Router<SharedCore> {
    Router::new()
        .route("/v2/systemsharedmemory/status", get(status_all))
        .route("/v2/systemsharedmemory/region/{name}/status", get(status))
        .route("/v2/systemsharedmemory/register", post(register_unnamed))
        .route(
            "/v2/systemsharedmemory/region/{name}/register",
            post(register),
        )
        .route("/v2/systemsharedmemory/unregister", post(unregister_all))
        .route(
            "/v2/systemsharedmemory/region/{name}/unregister",
            post(unregister),
        )
        .route("/v2/cudasharedmemory/status", get(cuda_status))
        .route(
            "/v2/cudasharedmemory/region/{name}/status",
            get(cuda_status_named),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/register",
            post(cuda_register),
        )
        .route("/v2/cudasharedmemory/unregister", post(cuda_unregister))
        .route(
            "/v2/cudasharedmemory/region/{name}/unregister",
            post(cuda_unregister),
        )
}

type JsonReply = Result<axum::Json<Value>, ServeError>;

async fn status_all(State(core): State<SharedCore>) -> JsonReply {
    status_of(&core, "")
}

async fn status(State(core): State<SharedCore>, Path(name): Path<String>) -> JsonReply {
    status_of(&core, &name)
}

fn status_of(core: &SharedCore, name: &str) -> JsonReply {
    let regions: Vec<Value> = core
        .shm
        .status(name)?
        .into_iter()
        .map(
            |r| json!({"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}),
        )
        .collect();
    Ok(axum::Json(Value::Array(regions)))
}

async fn register_unnamed() -> ServeError {
    ServeError::invalid("'region name' is necessary to register system shared memory region")
}

/// The body is `{"key": …, "offset": …, "byte_size": …}`; `offset` may be left out.
async fn register(
    State(core): State<SharedCore>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ServeError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ServeError::invalid(format!("failed to parse the register request: {e}"))
        })?
    };
    let key = request
        .get("key")
        .ok_or_else(|| ServeError::invalid("Shared memory register request has no 'key' field"))?
        .as_str()
        .ok_or_else(|| ServeError::invalid("'key' must be a string"))?;
    let number = |field: &str| {
        request
            .get(field)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    ServeError::invalid(format!("'{field}' must be an unsigned integer"))
                })
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let byte_size = number("byte_size")?.ok_or_else(|| {
        ServeError::invalid("Shared memory register request has no 'byte_size' field")
    })?;
    core.shm.register(&name, key, offset, byte_size)?;
    Ok(StatusCode::OK)
}

async fn unregister_all(State(core): State<SharedCore>) -> StatusCode {
    core.shm.unregister("");
    StatusCode::OK
}

async fn unregister(State(core): State<SharedCore>, Path(name): Path<String>) -> StatusCode {
    core.shm.unregister(&name);
    StatusCode::OK
}

async fn cuda_status() -> axum::Json<Value> {
    axum::Json(json!([]))
}

async fn cuda_status_named(Path(name): Path<String>) -> ServeError {
    cuda_not_found(&name)
}

async fn cuda_register(Path(name): Path<String>) -> ServeError {
    cuda_unsupported(&name)
}

async fn cuda_unregister() -> StatusCode {
    StatusCode::OK
}
