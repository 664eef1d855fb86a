//! The typed gRPC client: one HTTP/2 connection per [`TritonClient`], cheap to clone and share.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use super::capabilities::{Capabilities, Extension};
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
use crate::vocab::spec::{TlsSpec, Transport};

/// Default cap on a response: room for a batch of large CNN outputs, far below what would hurt.
pub const DEFAULT_MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on a request: a batch of 64 FP32 224×224 images is ~38 MiB.
pub const DEFAULT_MAX_ENCODE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows and frame size for megabyte tensors: with the protocol's defaults
/// (64 KiB windows, 16 KiB frames) one 0.6 MB image takes dozens of frames and window updates each
/// way, and the syscalls and wake-ups for them cost more CPU than the bytes.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// HTTP/2's largest frame is 2^24 − 1 bytes; 1 MiB holds a CNN image in one frame.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// How to reach a Triton server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `HOST:PORT`, or a URL `http://HOST:PORT` / `https://HOST:PORT`.
    pub address: String,
    /// Bound on establishing (and re-establishing) the connection.
    pub connect_timeout: Duration,
    /// Deadline for each call unless the call gives its own; `None` waits indefinitely.
    pub request_timeout: Option<Duration>,
    /// Connect over TLS with these settings; implies `https`.
    pub tls: Option<TlsOptions>,
    /// Largest response accepted. The length prefix is checked before any buffer is reserved, so a
    /// hostile or broken server cannot make the client allocate more than this per message.
    pub max_decode_bytes: usize,
    /// Largest request sent; a larger one fails locally without touching the network.
    pub max_encode_bytes: usize,
    /// How the tenants' requests carry their tensors (shared memory only to a server on this machine).
    pub transport: Transport,
    /// The send path as first shipped: HTTP/2's default windows and frames, and each request encoded
    /// afresh. Kept so that the client-cost benchmark measures what the current path saves.
    pub legacy_grpc: bool,
}

impl ConnectOptions {
    /// Options for `address` with the defaults: 5 s connect timeout, 30 s per call, no TLS, 64 MiB
    /// message limits.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
            tls: None,
            max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
            max_encode_bytes: DEFAULT_MAX_ENCODE_BYTES,
            transport: Transport::Grpc,
            legacy_grpc: false,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_decode: self.max_decode_bytes,
            max_encode: self.max_encode_bytes,
        }
    }
}

/// TLS for a remote Triton. Perseus carries no system trust store, so the server's CA is always given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that signed the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS (needs `key_file`).
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
    /// Name to verify the server's certificate against, when it differs from the address's host.
    pub domain: Option<String>,
}

impl From<&TlsSpec> for TlsOptions {
    fn from(spec: &TlsSpec) -> Self {
        Self {
            ca_file: spec.ca_file.clone(),
            cert_file: spec.cert_file.clone(),
            key_file: spec.key_file.clone(),
            domain: spec.domain.clone(),
        }
    }
}

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
        Self {
            inner,
            channel,
            address: opts.address.clone(),
            request_timeout: opts.request_timeout,
            limits: opts.limits(),
            legacy_grpc: opts.legacy_grpc,
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

/// Builds the endpoint: validates the address, picks the scheme from the TLS settings, applies the
/// timeouts. Connection-level failures come later, from `connect`.
fn endpoint(opts: &ConnectOptions) -> Result<Endpoint, TritonError> {
    let uri = endpoint_uri(&opts.address, opts.tls.is_some())?;
    let invalid = |err: tonic::transport::Error| TritonError::InvalidAddress {
        address: opts.address.clone(),
        reason: error_chain(&err),
    };
    let mut endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(invalid)?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true);
    if !opts.legacy_grpc {
        endpoint = endpoint
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(MAX_FRAME_BYTES);
    }
    if uri.scheme_str() == Some("https") {
        let tls = opts.tls.clone().unwrap_or_default();
        endpoint = endpoint
            .tls_config(tls_config(&tls)?)
            .map_err(|err| TritonError::Tls(error_chain(&err)))?;
    }
    Ok(endpoint)
}

/// `HOST:PORT` becomes `http://HOST:PORT` (or `https://` with TLS); a URL keeps its scheme, which must
/// agree with the TLS settings. A port is required: Triton's gRPC port (8001) is not HTTP's default.
pub(crate) fn endpoint_uri(address: &str, tls: bool) -> Result<Uri, TritonError> {
    let invalid = |reason: &str| TritonError::InvalidAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty; expected HOST:PORT"));
    }
    let text = if trimmed.contains("://") {
        trimmed.to_owned()
    } else if tls {
        format!("https://{trimmed}")
    } else {
        format!("http://{trimmed}")
    };
    let uri: Uri = text
        .parse()
        .map_err(|err: tonic::codegen::http::uri::InvalidUri| {
            invalid(&format!("{err}; expected HOST:PORT"))
        })?;
    match uri.scheme_str() {
        Some("http") if tls => {
            return Err(invalid("http:// address with TLS settings; use https://"));
        }
        Some("http" | "https") => {}
        _ => return Err(invalid("scheme must be http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host; expected HOST:PORT"));
    }
    if uri.port_u16().is_none() {
        return Err(invalid(
            "no port; expected HOST:PORT (Triton's gRPC port is usually 8001)",
        ));
    }
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err(invalid("a gRPC address has no path; expected HOST:PORT"));
    }
    Ok(uri)
}

fn tls_config(tls: &TlsOptions) -> Result<ClientTlsConfig, TritonError> {
    let Some(ca_file) = &tls.ca_file else {
        return Err(TritonError::Tls(
            "a CA file is required (Perseus carries no system trust store)".to_owned(),
        ));
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(TritonError::Tls(
                "a client certificate needs its key file too".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(TritonError::Tls(
                "a client key needs its certificate file too".to_owned(),
            ));
        }
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca_file)?));
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TritonError> {
    let pem = std::fs::read(path).map_err(|source| TritonError::TlsFile {
        path: path.to_owned(),
        source,
    })?;
    if !pem
        .windows(b"-----BEGIN ".len())
        .any(|w| w == b"-----BEGIN ")
    {
        return Err(TritonError::Tls(format!(
            "{} is not a PEM file",
            path.display()
        )));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_gets_a_scheme_from_the_tls_settings() {
        assert_eq!(
            endpoint_uri("localhost:8001", false).unwrap().to_string(),
            "http://localhost:8001/"
        );
        assert_eq!(
            endpoint_uri("triton.example:443", true)
                .unwrap()
                .to_string(),
            "https://triton.example:443/"
        );
        assert_eq!(
            endpoint_uri("[::1]:8001", false).unwrap().host(),
            Some("[::1]")
        );
        assert_eq!(
            endpoint_uri(" http://127.0.0.1:9000 ", false)
                .unwrap()
                .port_u16(),
            Some(9000)
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (address, tls, expected) in [
            ("", false, "empty"),
            ("localhost", false, "no port"),
            ("http://localhost", false, "no port"),
            ("grpc://localhost:8001", false, "scheme"),
            ("http://localhost:8001", true, "with TLS settings"),
            ("localhost:8001/v2", false, "no path"),
            ("local host:8001", false, "expected HOST:PORT"),
        ] {
            let err = endpoint_uri(address, tls).expect_err(address);
            assert!(
                matches!(err, TritonError::InvalidAddress { .. }),
                "{address}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(expected), "{address}: {text}");
            assert!(text.contains(address.trim()), "{address}: {text}");
        }
    }

    #[test]
    fn tls_settings_are_checked_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();

        let with = |tls: TlsOptions| ConnectOptions {
            tls: Some(tls),
            ..ConnectOptions::new("triton.example:8001")
        };
        let err = endpoint(&with(TlsOptions::default())).unwrap_err();
        assert!(err.to_string().contains("CA file is required"), "{err}");

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(missing.clone()),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TritonError::TlsFile { path, .. } if *path == missing),
            "{err}"
        );

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(not_pem.clone()),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("not a PEM file"), "{err}");
        assert_eq!(err.code_name(), "INVALID_ARGUMENT");

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(not_pem.clone()),
            cert_file: Some(not_pem),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }
}
