//! The typed gRPC client: one HTTP/2 connection per [`TritonClient`], cheap to clone and share.

use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::capabilities::{Capabilities, Extension};
use super::connect::{ConnectOptions, endpoint, endpoint_uri};
use super::direct::Direct;
use super::error::{Direction, Limits, TritonError, error_chain};
use super::stats::ModelStats;
use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::model_repository_parameter::ParameterChoice;
use crate::proto::{
    ModelConfig, ModelConfigRequest, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelRepositoryParameter, ModelStatisticsRequest,
    RepositoryIndexRequest, RepositoryModelLoadRequest, RepositoryModelUnloadRequest,
    ServerLiveRequest, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    repository_index_response::ModelIndex,
};

/// A connection to one Triton server. Clones share the connection; use [`TritonClient::pool`] for
/// several independent connections.
#[derive(Debug, Clone)]
pub struct TritonClient {
    inner: GrpcInferenceServiceClient<Channel>,
    /// The same connection, for calls that bypass the generated client ([`super::PreparedRequest`]).
    channel: Channel,
    address: String,
    request_timeout: Option<Duration>,
    limits: Limits,
    legacy_grpc: bool,
    /// ModelInfer's own connection to a plaintext target, for prepared requests (see [`Direct`]).
    direct: Option<Arc<Direct>>,
    /// What this server offers beyond the KServe-v2 core, shared by the clients of one pool.
    caps: Arc<Capabilities>,
}

impl TritonClient {
    /// Connects now, failing with [`TritonError::ConnectTimeout`] or [`TritonError::Connect`] if the
    /// server cannot be reached within the connect timeout.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, TritonError> {
        Self::connect_sharing(opts, Arc::default()).await
    }

    async fn connect_sharing(
        opts: &ConnectOptions,
        caps: Arc<Capabilities>,
    ) -> Result<Self, TritonError> {
        let endpoint = endpoint(opts)?;
        let channel = match tokio::time::timeout(opts.connect_timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(err)) => {
                return Err(TritonError::Connect {
                    address: opts.address.clone(),
                    message: error_chain(&err),
                });
            }
            Err(_elapsed) => {
                return Err(TritonError::ConnectTimeout {
                    address: opts.address.clone(),
                    after: opts.connect_timeout,
                });
            }
        };
        Ok(Self::with_channel(channel, opts, caps))
    }

    /// A client that connects on its first call (and reconnects after a failure), so a server that is
    /// absent at start surfaces as `UNAVAILABLE` calls rather than a startup error. Fails only on bad
    /// settings.
    pub fn connect_lazy(opts: &ConnectOptions) -> Result<Self, TritonError> {
        Ok(Self::with_channel(
            endpoint(opts)?.connect_lazy(),
            opts,
            Arc::default(),
        ))
    }

    /// `n` clients (at least one) on as many separate HTTP/2 connections, so that a load generator is
    /// not limited by one connection's stream concurrency and flow-control window. Connects them all
    /// now and fails if any cannot connect.
    pub async fn pool(opts: &ConnectOptions, n: usize) -> Result<Vec<Self>, TritonError> {
        let caps = Arc::<Capabilities>::default();
        let connects = (0..n.max(1)).map(|_| Self::connect_sharing(opts, Arc::clone(&caps)));
        futures::future::try_join_all(connects).await
    }

    fn with_channel(channel: Channel, opts: &ConnectOptions, caps: Arc<Capabilities>) -> Self {
        let inner = GrpcInferenceServiceClient::new(channel.clone())
            .max_decoding_message_size(opts.max_decode_bytes)
            .max_encoding_message_size(opts.max_encode_bytes);
        let direct = (!opts.legacy_grpc && opts.tls.is_none())
            .then(|| endpoint_uri(&opts.address, false).ok())
            .flatten()
            .filter(|uri| uri.scheme_str() == Some("http"))
            .map(|uri| {
                Arc::new(Direct::new(
                    &opts.address,
                    &uri,
                    opts.connect_timeout,
                    opts.limits(),
                ))
            });
        Self {
            inner,
            channel,
            address: opts.address.clone(),
            request_timeout: opts.request_timeout,
            limits: opts.limits(),
            legacy_grpc: opts.legacy_grpc,
            direct,
            caps,
        }
    }

    pub(super) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(super) fn limits(&self) -> Limits {
        self.limits
    }

    pub(super) fn legacy_grpc(&self) -> bool {
        self.legacy_grpc
    }

    pub(super) fn direct(&self) -> Option<&Direct> {
        self.direct.as_deref()
    }

    /// Which of Triton's extensions the server offers, as far as this client has found out.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The address this client was built for, as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn server_live(&self) -> Result<bool, TritonError> {
        let response = self.call(ServerLiveRequest {}, None, |mut c, r| async move {
            c.server_live(r).await
        });
        Ok(response.await?.live)
    }

    pub async fn server_ready(&self) -> Result<bool, TritonError> {
        let response = self.call(ServerReadyRequest {}, None, |mut c, r| async move {
            c.server_ready(r).await
        });
        Ok(response.await?.ready)
    }

    /// Server name, version and the protocol extensions it supports (`model_repository`, …);
    /// the list is remembered in [`Self::capabilities`].
    pub async fn server_metadata(&self) -> Result<ServerMetadataResponse, TritonError> {
        let metadata = self
            .call(ServerMetadataRequest {}, None, |mut c, r| async move {
                c.server_metadata(r).await
            })
            .await?;
        self.caps.learn_from_metadata(&metadata.extensions);
        Ok(metadata)
    }

    /// Whether `name` can serve requests; an empty `version` means the server's choice.
    pub async fn model_ready(&self, name: &str, version: &str) -> Result<bool, TritonError> {
        let request = ModelReadyRequest {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let response = self.call(
            request,
            None,
            |mut c, r| async move { c.model_ready(r).await },
        );
        Ok(response.await?.ready)
    }

    /// The model's input and output tensors (names, datatypes, shapes with -1 for variable dims).
    pub async fn model_metadata(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelMetadataResponse, TritonError> {
        let request = ModelMetadataRequest {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        self.call(request, None, |mut c, r| async move {
            c.model_metadata(r).await
        })
        .await
    }

    /// The model's configuration as the server applied it (max batch, instances, dynamic batching).
    pub async fn model_config(
        &self,
        name: &str,
        version: &str,
    ) -> Result<ModelConfig, TritonError> {
        let request = ModelConfigRequest {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        let response = self
            .extension_call(
                Extension::ModelConfiguration,
                "ModelConfig",
                request,
                |mut c, r| async move { c.model_config(r).await },
            )
            .await?;
        response.config.ok_or_else(|| TritonError::Protocol {
            call: "ModelConfig",
            reason: format!("no config for model '{name}'"),
        })
    }

    /// Runs one inference with the client's default deadline. The request is moved into the call
    /// and tensors travel as `Bytes`, so nothing is copied on the way out or back.
    pub async fn infer(
        &self,
        request: ModelInferRequest,
    ) -> Result<ModelInferResponse, TritonError> {
        self.call(
            request,
            None,
            |mut c, r| async move { c.model_infer(r).await },
        )
        .await
    }

    /// [`Self::infer`] with this request's own deadline, sent to the server as `grpc-timeout` and
    /// enforced locally; expiry is [`TritonError::Timeout`] (`DEADLINE_EXCEEDED`).
    pub async fn infer_within(
        &self,
        request: ModelInferRequest,
        timeout: Duration,
    ) -> Result<ModelInferResponse, TritonError> {
        self.call(request, Some(timeout), |mut c, r| async move {
            c.model_infer(r).await
        })
        .await
    }

    /// Cumulative statistics of one model (all its versions), or of every model with `None`.
    pub async fn statistics(&self, name: Option<&str>) -> Result<Vec<ModelStats>, TritonError> {
        let request = ModelStatisticsRequest {
            name: name.unwrap_or_default().to_owned(),
            version: String::new(),
        };
        let response = self
            .extension_call(
                Extension::Statistics,
                "ModelStatistics",
                request,
                |mut c, r| async move { c.model_statistics(r).await },
            )
            .await?;
        Ok(response
            .model_stats
            .into_iter()
            .map(ModelStats::from)
            .collect())
    }

    /// The models in the server's repository with their state (`READY`, `UNAVAILABLE`, …).
    pub async fn repository_index(&self, ready_only: bool) -> Result<Vec<ModelIndex>, TritonError> {
        let request = RepositoryIndexRequest {
            repository_name: String::new(),
            ready: ready_only,
        };
        let response = self
            .extension_call(
                Extension::ModelRepository,
                "RepositoryIndex",
                request,
                |mut c, r| async move { c.repository_index(r).await },
            )
            .await?;
        Ok(response.models)
    }

    /// Loads (or reloads) a model; with `config_json`, Triton uses that configuration instead of the
    /// one in its repository (it reads it from the `config` parameter). Needs explicit model control.
    pub async fn load_model(
        &self,
        name: &str,
        config_json: Option<&str>,
    ) -> Result<(), TritonError> {
        let mut request = RepositoryModelLoadRequest {
            repository_name: String::new(),
            model_name: name.to_owned(),
            parameters: Default::default(),
        };
        if let Some(config) = config_json {
            request.parameters.insert(
                "config".to_owned(),
                parameter(ParameterChoice::StringParam(config.to_owned())),
            );
        }
        self.extension_call(
            Extension::ModelRepository,
            "RepositoryModelLoad",
            request,
            |mut c, r| async move { c.repository_model_load(r).await },
        )
        .await?;
        Ok(())
    }

    /// Unloads a model; `unload_dependents` also unloads ensembles that use it, as Triton's
    /// `unload_dependents` parameter does.
    pub async fn unload_model(
        &self,
        name: &str,
        unload_dependents: bool,
    ) -> Result<(), TritonError> {
        let mut request = RepositoryModelUnloadRequest {
            repository_name: String::new(),
            model_name: name.to_owned(),
            parameters: Default::default(),
        };
        request.parameters.insert(
            "unload_dependents".to_owned(),
            parameter(ParameterChoice::BoolParam(unload_dependents)),
        );
        self.extension_call(
            Extension::ModelRepository,
            "RepositoryModelUnload",
            request,
            |mut c, r| async move { c.repository_model_unload(r).await },
        )
        .await?;
        Ok(())
    }

    /// Sends one unary call with a deadline (the call's own, else the client's default) and turns a
    /// failure into a [`TritonError`]. The generated client needs `&mut self`; cloning it only clones
    /// the channel handle.
    pub(super) async fn call<Req, Resp, F, Fut>(
        &self,
        message: Req,
        timeout: Option<Duration>,
        send: F,
    ) -> Result<Resp, TritonError>
    where
        Req: prost::Message,
        F: FnOnce(GrpcInferenceServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        // tonic enforces the limit too, but only while streaming the body, and the server then sees
        // a reset stream and the caller a bare "h2 protocol error". Measuring first (a sum of
        // lengths, no encoding) gives the caller the real reason.
        let len = message.encoded_len();
        if len > self.limits.max_encode {
            return Err(TritonError::MessageTooLarge {
                direction: Direction::Request,
                limit: self.limits.max_encode,
                message: format!("request is {len} bytes"),
            });
        }
        let mut request = tonic::Request::new(message);
        let timeout = timeout.or(self.request_timeout);
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        match send(self.inner.clone(), request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(TritonError::from_status(status, timeout, self.limits)),
        }
    }
}

impl TritonClient {
    /// A call to one of Triton's extensions: refused locally once the server is known to lack it,
    /// and an `UNIMPLEMENTED` answer is remembered as "lacks it" (any other answer as "has it").
    async fn extension_call<Req, Resp, F, Fut>(
        &self,
        extension: Extension,
        rpc: &'static str,
        message: Req,
        send: F,
    ) -> Result<Resp, TritonError>
    where
        Req: prost::Message,
        F: FnOnce(GrpcInferenceServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        if self.caps.supports(extension) == Some(false) {
            return Err(TritonError::Unsupported {
                extension,
                call: rpc,
                detail: None,
            });
        }
        match self.call(message, None, send).await {
            Err(TritonError::Status {
                code: tonic::Code::Unimplemented,
                message,
            }) => {
                self.caps.set(extension, false);
                Err(TritonError::Unsupported {
                    extension,
                    call: rpc,
                    detail: Some(message),
                })
            }
            Err(e) if e.is_connection_error() => Err(e),
            other => {
                self.caps.set(extension, true);
                other
            }
        }
    }
}

fn parameter(choice: ParameterChoice) -> ModelRepositoryParameter {
    ModelRepositoryParameter {
        parameter_choice: Some(choice),
    }
}
