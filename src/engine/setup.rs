//! Preparing a tenant on the server: load (with configuration) where allowed, then read back the
//! model's metadata and configuration and build the request the tenant will send.

use crate::engine::error::SetupError;
use crate::engine::hooks::ServerModel;
use crate::engine::server::ServerControl;
use crate::loadgen::tensors::build_request;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::{ModelConfig, ModelInferRequest, ModelMetadataResponse, model_config};
use crate::triton::{Extension, TritonError};
use crate::vocab::spec::{DeclaredInput, DynamicBatching, TenantSpec};

/// Reads a model's server-side configuration as Perseus uses it.
pub fn server_model(cfg: &ModelConfig) -> ServerModel {
    let instances: i32 = cfg.instance_group.iter().map(|g| g.count.max(1)).sum();
    let dynamic_batching = match &cfg.scheduling_choice {
        Some(model_config::SchedulingChoice::DynamicBatching(d)) => Some(DynamicBatching {
            max_queue_delay_us: d.max_queue_delay_microseconds,
            preferred_batch_sizes: d
                .preferred_batch_size
                .iter()
                .map(|&b| b.max(0) as u32)
                .collect(),
        }),
        _ => None,
    };
    ServerModel {
        max_batch: cfg.max_batch_size.max(0) as u32,
        instances: instances.max(1) as u32,
        dynamic_batching,
        reported: true,
    }
}

/// The JSON model configuration Triton accepts in a load request's `config` parameter, carrying
/// only what the tenant asks to change.
pub fn load_config_json(
    model: &str,
    instances: Option<u32>,
    db: Option<&DynamicBatching>,
) -> String {
    let mut cfg = serde_json::Map::new();
    cfg.insert("name".into(), model.into());
    if let Some(n) = instances {
        cfg.insert(
            "instance_group".into(),
            serde_json::json!([{ "count": n, "kind": "KIND_GPU" }]),
        );
    }
    if let Some(d) = db {
        cfg.insert(
            "dynamic_batching".into(),
            serde_json::json!({
                "max_queue_delay_microseconds": d.max_queue_delay_us,
                "preferred_batch_size": d.preferred_batch_sizes,
            }),
        );
    }
    serde_json::Value::Object(cfg).to_string()
}

/// A tenant ready to send: its request template, the server's configuration of its model, and
/// what the user should know about how it was set up (settings the server could not take).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub request: ModelInferRequest,
    pub server: ServerModel,
    pub notes: Vec<String>,
}

/// Loads the model when needed and builds the tenant's request template.
///
/// Only the KServe-v2 core is required of the server: without the model repository extension the
/// model is used as loaded, without ModelConfig its tensors come from ModelMetadata (or from the
/// tenant's declared `inputs`).
pub(crate) async fn setup_tenant(
    server: &dyn ServerControl,
    spec: &TenantSpec,
    model_control: bool,
    seed: u64,
) -> Result<Prepared, SetupError> {
    let model = spec.model.as_str();
    let mut notes = Vec::new();
    let wants_config = spec.instances.is_some() || spec.dynamic_batching.is_some();
    let repository = server.supports(Extension::ModelRepository) != Some(false);
    let loaded = if model_control && repository {
        match ensure_loaded(server, spec).await {
            Err(TritonError::Unsupported { .. }) => false,
            Err(error) => {
                return Err(SetupError::Load {
                    model: model.to_owned(),
                    error,
                });
            }
            Ok(()) => true,
        }
    } else {
        false
    };
    if model_control && !loaded && wants_config {
        notes.push(format!(
            "{model}: instances and dynamic_batching not applied: the server has no model \
             repository extension, so the model runs as the server loaded it"
        ));
    }
    let meta = server
        .model_metadata(model)
        .await
        .map_err(|error| SetupError::Metadata {
            model: model.to_owned(),
            error,
        })?;
    let config = match server.model_config(model).await {
        Ok(cfg) => Some(server_model(&cfg)),
        Err(TritonError::Unsupported { .. }) => None,
        Err(error) => {
            return Err(SetupError::Config {
                model: model.to_owned(),
                error,
            });
        }
    };
    if loaded && wants_config && config.is_none() {
        notes.push(format!(
            "{model}: instances and dynamic_batching sent with the load, but the server has no \
             ModelConfig to show whether it applied them"
        ));
    }
    let meta = with_declared_inputs(meta, &spec.inputs);
    if meta.inputs.is_empty() {
        return Err(SetupError::NoInputs {
            model: model.to_owned(),
        });
    }
    let found = config.unwrap_or_else(|| unreported_config(&meta, spec.batch));
    let request =
        build_request(&meta, found.max_batch, spec.batch, spec.data, seed).map_err(|error| {
            SetupError::Request {
                model: model.to_owned(),
                error,
            }
        })?;
    Ok(Prepared {
        request,
        server: found,
        notes,
    })
}

/// Loads the model unless it is ready with the configuration the tenant asks for.
async fn ensure_loaded(server: &dyn ServerControl, spec: &TenantSpec) -> Result<(), TritonError> {
    let model = spec.model.as_str();
    let ready = server.model_ready(model).await.unwrap_or(false);
    let wants_config = spec.instances.is_some() || spec.dynamic_batching.is_some();
    let differs = if ready && wants_config {
        match server.model_config(model).await {
            Ok(cfg) => {
                let current = server_model(&cfg);
                spec.instances.is_some_and(|n| n != current.instances)
                    || spec
                        .dynamic_batching
                        .as_ref()
                        .is_some_and(|d| Some(d) != current.dynamic_batching.as_ref())
            }
            // Without ModelConfig there is nothing to compare: asking for a reload is harmless.
            Err(_) => true,
        }
    } else {
        false
    };
    if ready && !differs {
        return Ok(());
    }
    let json = wants_config
        .then(|| load_config_json(model, spec.instances, spec.dynamic_batching.as_ref()));
    server.load_model(model, json.as_deref()).await
}

/// The metadata with the tenant's declared inputs in place of the server's. A declared shape is
/// one item's dimensions, so it gets the batch dimension (-1) in front, as Triton's metadata has.
fn with_declared_inputs(
    mut meta: ModelMetadataResponse,
    declared: &[DeclaredInput],
) -> ModelMetadataResponse {
    if declared.is_empty() {
        return meta;
    }
    meta.inputs = declared
        .iter()
        .map(|d| TensorMetadata {
            name: d.name.clone(),
            datatype: d.datatype.clone(),
            shape: std::iter::once(-1).chain(d.shape.iter().copied()).collect(),
        })
        .collect();
    meta
}

/// What Perseus assumes of a model whose server has no ModelConfig: inputs whose first dimension
/// is variable (-1) all take the batch there, as on a batching Triton model; otherwise the shapes
/// are sent as the metadata gives them.
fn unreported_config(meta: &ModelMetadataResponse, batch: u32) -> ServerModel {
    let batched = meta.inputs.iter().all(|i| i.shape.first() == Some(&-1));
    ServerModel {
        max_batch: if batched { batch } else { 0 },
        instances: 1,
        dynamic_batching: None,
        reported: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_config_carries_only_requested_changes() {
        let json = load_config_json(
            "resnet50",
            Some(2),
            Some(&DynamicBatching {
                max_queue_delay_us: 2000,
                preferred_batch_sizes: vec![4, 8],
            }),
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["name"], "resnet50");
        assert_eq!(v["instance_group"][0]["count"], 2);
        assert_eq!(v["dynamic_batching"]["preferred_batch_size"][1], 8);
        let bare: serde_json::Value =
            serde_json::from_str(&load_config_json("m", None, None)).unwrap();
        assert!(bare.get("instance_group").is_none());
        assert!(bare.get("dynamic_batching").is_none());
    }

    #[test]
    fn server_model_reads_instances_and_batching() {
        let cfg = ModelConfig {
            max_batch_size: 8,
            instance_group: vec![
                crate::proto::ModelInstanceGroup {
                    count: 2,
                    ..Default::default()
                },
                crate::proto::ModelInstanceGroup {
                    count: 1,
                    ..Default::default()
                },
            ],
            scheduling_choice: Some(model_config::SchedulingChoice::DynamicBatching(
                crate::proto::ModelDynamicBatching {
                    preferred_batch_size: vec![4],
                    max_queue_delay_microseconds: 100,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let s = server_model(&cfg);
        assert_eq!(s.max_batch, 8);
        assert_eq!(s.instances, 3);
        assert_eq!(
            s.dynamic_batching,
            Some(DynamicBatching {
                max_queue_delay_us: 100,
                preferred_batch_sizes: vec![4]
            })
        );
        assert_eq!(server_model(&ModelConfig::default()).instances, 1);
    }
}
