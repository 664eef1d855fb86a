//! Triton's HTTP logging (`/v2/logging`) and trace (`/v2/trace/setting`, per model too) endpoints.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Map, Value};

use crate::emulator::service::SharedCore;
use crate::emulator::settings::{LogValue, TraceSettings};
use crate::emulator::status::ServeError;

type JsonReply = Result<axum::Json<Value>, ServeError>;

pub(crate) fn routes() -> Router<SharedCore> {
    Router::new()
        .route("/v2/logging", get(get_log).post(post_log))
        .route("/v2/trace/setting", get(get_trace).post(post_trace))
        .route(
            "/v2/models/{model}/trace/setting",
            get(get_model_trace).post(post_model_trace),
        )
}

fn object(body: &Bytes) -> Result<Map<String, Value>, ServeError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ServeError::invalid("the settings must be a JSON object")),
        Err(e) => Err(ServeError::invalid(format!(
            "failed to parse the settings: {e}"
        ))),
    }
}

fn log_json(settings: &std::collections::BTreeMap<String, LogValue>) -> Value {
    let map = settings
        .iter()
        .map(|(k, v)| {
            let v = match v {
                LogValue::Bool(b) => Value::Bool(*b),
                LogValue::Uint(n) => Value::from(*n),
                LogValue::Text(s) => Value::String(s.clone()),
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(map)
}

async fn get_log(State(core): State<SharedCore>) -> JsonReply {
    Ok(axum::Json(log_json(&core.settings.log())))
}

async fn post_log(State(core): State<SharedCore>, body: Bytes) -> JsonReply {
    let mut changes = Vec::new();
    for (key, value) in object(&body)? {
        let value = match value {
            Value::Null => continue,
            Value::Bool(b) => LogValue::Bool(b),
            Value::String(s) => LogValue::Text(s),
            Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => LogValue::Uint(n),
                None => {
                    return Err(ServeError::invalid(format!(
                        "expect unsigned integer for '{key}'"
                    )));
                }
            },
            _ => return Err(ServeError::invalid(format!("unexpected value for '{key}'"))),
        };
        changes.push((key, value));
    }
    Ok(axum::Json(log_json(&core.settings.update_log(&changes)?)))
}

/// Trace settings as Triton's JSON writes them: `trace_level` a list, the others one string.
fn trace_json(settings: &TraceSettings) -> Value {
    let map = settings
        .iter()
        .map(|(k, v)| {
            let v = if k == "trace_level" {
                Value::from(v.clone())
            } else {
                Value::String(v.first().cloned().unwrap_or_default())
            };
            (k.clone(), v)
        })
        .collect();
    Value::Object(map)
}

fn trace_changes(body: &Bytes) -> Result<Vec<(String, Vec<String>)>, ServeError> {
    let mut changes = Vec::new();
    for (key, value) in object(body)? {
        let values = match value {
            Value::Null => Vec::new(),
            Value::String(s) => vec![s],
            Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| ServeError::invalid(format!("expect strings for '{key}'")))?,
            other => vec![other.to_string()],
        };
        changes.push((key, values));
    }
    Ok(changes)
}

async fn get_trace(State(core): State<SharedCore>) -> JsonReply {
    Ok(axum::Json(trace_json(&core.settings.trace(""))))
}

async fn post_trace(State(core): State<SharedCore>, body: Bytes) -> JsonReply {
    let changes = trace_changes(&body)?;
    Ok(axum::Json(trace_json(
        &core.settings.update_trace("", &changes)?,
    )))
}

async fn get_model_trace(State(core): State<SharedCore>, Path(model): Path<String>) -> JsonReply {
    core.require_ready(&model, "")?;
    Ok(axum::Json(trace_json(&core.settings.trace(&model))))
}

async fn post_model_trace(
    State(core): State<SharedCore>,
    Path(model): Path<String>,
    body: Bytes,
) -> JsonReply {
    core.require_ready(&model, "")?;
    let changes = trace_changes(&body)?;
    Ok(axum::Json(trace_json(
        &core.settings.update_trace(&model, &changes)?,
    )))
}
