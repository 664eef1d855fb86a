//! The calls the engine makes to its server, behind a small interface.
//!
//! The engine's own logic (backoff, tenant set-up, statistics windows, repository refresh) is about
//! what the server answers, not how it is reached; with the calls behind [`ServerControl`] that logic
//! is tested against a server that fails, stalls and recovers on cue. [`TritonClient`] is the one
//! implementation the product uses. Inference does not go through here: the load generator sends on
//! the [`Link`]'s clients directly, since a boxed call per request would cost the send path.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::proto::{ModelConfig, ModelMetadataResponse};
use crate::triton::{ConnectOptions, Extension, ModelStats, TritonClient, TritonError};

/// One model in the server's repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    /// Triton's state string (`READY`, `UNAVAILABLE`, …), empty when never loaded.
    pub state: String,
}

/// The control-plane calls of one server: health, models, statistics, repository.
pub trait ServerControl: Send + Sync {
    fn server_live(&self) -> BoxFuture<'_, Result<bool, TritonError>>;
    /// The server's version string (ServerMetadata).
    fn server_version(&self) -> BoxFuture<'_, Result<String, TritonError>>;
    fn model_ready<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<bool, TritonError>>;
    fn model_metadata<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelMetadataResponse, TritonError>>;
    fn model_config<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelConfig, TritonError>>;
    /// Loads (or reloads) a model, with a JSON configuration to apply where given.
    fn load_model<'a>(
        &'a self,
        model: &'a str,
        config_json: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TritonError>>;
    fn unload_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), TritonError>>;
    /// Every model's cumulative statistics.
    fn statistics(&self) -> BoxFuture<'_, Result<Vec<ModelStats>, TritonError>>;
    fn repository_index(&self) -> BoxFuture<'_, Result<Vec<IndexEntry>, TritonError>>;
    /// Whether the server offers one of Triton's extensions beyond the KServe-v2 core, as far as
    /// is known (`None` until ServerMetadata or a first call has told).
    fn supports(&self, _extension: Extension) -> Option<bool> {
        None
    }
}

/// A connection to the server: the control calls, and the clients the tenants send requests on.
#[derive(Clone)]
pub struct Link {
    pub control: Arc<dyn ServerControl>,
    /// The HTTP/2 connections the tenants' requests share.
    pub requests: Arc<Vec<TritonClient>>,
}

/// Opens a [`Link`]; the engine calls it again, with backoff, until one is open.
pub trait Connector: Send + Sync {
    fn connect(&self) -> BoxFuture<'_, Result<Link, TritonError>>;
}

/// Connects to a Triton server (or the emulator) over gRPC.
pub struct TritonConnector {
    pub options: ConnectOptions,
    /// HTTP/2 connections shared by the tenants' requests.
    pub connections: usize,
}

impl Connector for TritonConnector {
    fn connect(&self) -> BoxFuture<'_, Result<Link, TritonError>> {
        Box::pin(async move {
            let clients = TritonClient::pool(&self.options, self.connections.max(1)).await?;
            let Some(control) = clients.first().cloned() else {
                return Err(TritonError::Connect {
                    address: self.options.address.clone(),
                    message: "no connection was opened".into(),
                });
            };
            Ok(Link {
                control: Arc::new(control),
                requests: Arc::new(clients),
            })
        })
    }
}

impl ServerControl for TritonClient {
    fn server_live(&self) -> BoxFuture<'_, Result<bool, TritonError>> {
        Box::pin(TritonClient::server_live(self))
    }
    fn server_version(&self) -> BoxFuture<'_, Result<String, TritonError>> {
        Box::pin(async move { Ok(self.server_metadata().await?.version) })
    }
    fn model_ready<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<bool, TritonError>> {
        Box::pin(TritonClient::model_ready(self, model, ""))
    }
    fn model_metadata<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelMetadataResponse, TritonError>> {
        Box::pin(TritonClient::model_metadata(self, model, ""))
    }
    fn model_config<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelConfig, TritonError>> {
        Box::pin(TritonClient::model_config(self, model, ""))
    }
    fn load_model<'a>(
        &'a self,
        model: &'a str,
        config_json: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TritonError>> {
        Box::pin(TritonClient::load_model(self, model, config_json))
    }
    fn unload_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), TritonError>> {
        Box::pin(TritonClient::unload_model(self, model, false))
    }
    fn statistics(&self) -> BoxFuture<'_, Result<Vec<ModelStats>, TritonError>> {
        Box::pin(TritonClient::statistics(self, None))
    }
    fn supports(&self, extension: Extension) -> Option<bool> {
        self.capabilities().supports(extension)
    }
    fn repository_index(&self) -> BoxFuture<'_, Result<Vec<IndexEntry>, TritonError>> {
        Box::pin(async move {
            Ok(TritonClient::repository_index(self, false)
                .await?
                .into_iter()
                .map(|m| IndexEntry {
                    name: m.name,
                    state: m.state,
                })
                .collect())
        })
    }
}
