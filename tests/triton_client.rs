//! The Triton client against a small in-process gRPC server over real loopback connections.
//!
//! The server here is test scaffolding, not the emulator: it answers each RPC with fixed data and
//! records what it received, so the tests can check what the client sends and how it treats what
//! comes back (statuses, oversized messages, deadlines, lost connections, TLS).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::triton::{loopback, simple_request};
use perseus::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use perseus::proto::model_repository_parameter::ParameterChoice;
use perseus::proto::{
    self, model_infer_response::InferOutputTensor, repository_index_response::ModelIndex,
};
use perseus::triton::{
    ConnectOptions, Direction, PreparedRequest, TlsOptions, TritonClient, TritonError,
};
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// What the test server saw.
#[derive(Debug, Default)]
struct Seen {
    peers: BTreeSet<SocketAddr>,
    infers: usize,
    statistics_names: Vec<String>,
    index_ready: Vec<bool>,
    loads: Vec<proto::RepositoryModelLoadRequest>,
    unloads: Vec<proto::RepositoryModelUnloadRequest>,
}

#[derive(Clone, Default)]
struct TestTriton {
    /// Extra bytes in every ModelMetadata response, to exceed the client's decode limit.
    metadata_padding: usize,
    /// How long ModelInfer takes.
    infer_delay: Duration,
    seen: Arc<Mutex<Seen>>,
}

impl TestTriton {
    fn record<T>(&self, request: &Request<T>) {
        if let Some(peer) = request.remote_addr() {
            self.seen.lock().unwrap().peers.insert(peer);
        }
    }
}

const MODEL: &str = "simple";

#[tonic::async_trait]
impl GrpcInferenceService for TestTriton {
    async fn server_live(
        &self,
        request: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
        self.record(&request);
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<proto::ServerReadyRequest>,
    ) -> Result<Response<proto::ServerReadyResponse>, Status> {
        Ok(Response::new(proto::ServerReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<proto::ServerMetadataRequest>,
    ) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: "triton".into(),
            version: "2.60.0".into(),
            extensions: vec!["model_repository".into(), "statistics".into()],
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        Ok(Response::new(proto::ModelReadyResponse {
            ready: request.get_ref().name == MODEL,
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let name = &request.get_ref().name;
        if name != MODEL {
            return Err(Status::not_found(format!(
                "Request for unknown model: '{name}' is not found"
            )));
        }
        Ok(Response::new(proto::ModelMetadataResponse {
            name: MODEL.into(),
            versions: vec!["1".into()],
            platform: "x".repeat(self.metadata_padding),
            inputs: vec![proto::model_metadata_response::TensorMetadata {
                name: "INPUT0".into(),
                datatype: "INT32".into(),
                shape: vec![-1, 16],
            }],
            outputs: vec![],
        }))
    }

    async fn model_config(
        &self,
        _: Request<proto::ModelConfigRequest>,
    ) -> Result<Response<proto::ModelConfigResponse>, Status> {
        Ok(Response::new(proto::ModelConfigResponse {
            config: Some(proto::ModelConfig {
                name: MODEL.into(),
                max_batch_size: 8,
                instance_group: vec![proto::ModelInstanceGroup {
                    count: 2,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        self.seen.lock().unwrap().infers += 1;
        tokio::time::sleep(self.infer_delay).await;
        let request = request.into_inner();
        // Echo: each input comes back as an output with the same bytes.
        Ok(Response::new(proto::ModelInferResponse {
            model_name: request.model_name,
            id: request.id,
            outputs: request
                .inputs
                .iter()
                .map(|input| InferOutputTensor {
                    name: input.name.replace("INPUT", "OUTPUT"),
                    datatype: input.datatype.clone(),
                    shape: input.shape.clone(),
                    ..Default::default()
                })
                .collect(),
            raw_output_contents: request.raw_input_contents,
            ..Default::default()
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<proto::ModelStatisticsRequest>,
    ) -> Result<Response<proto::ModelStatisticsResponse>, Status> {
        self.seen
            .lock()
            .unwrap()
            .statistics_names
            .push(request.get_ref().name.clone());
        let duration = |count, ns| Some(proto::StatisticDuration { count, ns });
        Ok(Response::new(proto::ModelStatisticsResponse {
            model_stats: vec![proto::ModelStatistics {
                name: MODEL.into(),
                version: "1".into(),
                inference_count: 40,
                execution_count: 10,
                inference_stats: Some(proto::InferStatistics {
                    success: duration(10, 9_000_000),
                    queue: duration(10, 1_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }))
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Result<Response<proto::RepositoryIndexResponse>, Status> {
        self.seen
            .lock()
            .unwrap()
            .index_ready
            .push(request.get_ref().ready);
        Ok(Response::new(proto::RepositoryIndexResponse {
            models: vec![ModelIndex {
                name: MODEL.into(),
                version: "1".into(),
                state: "READY".into(),
                reason: String::new(),
            }],
        }))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        self.seen.lock().unwrap().loads.push(request.into_inner());
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        self.seen.lock().unwrap().unloads.push(request.into_inner());
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

/// A server that implements nothing, like a gRPC server without Triton's service features.
struct Bare;

#[tonic::async_trait]
impl GrpcInferenceService for Bare {}

/// A running test server; dropping `stop` shuts it down gracefully.
struct Running {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn shut_down(self) {
        let _ = self.stop.send(());
        self.done.await.unwrap();
    }
}

async fn serve<S: GrpcInferenceService>(
    service: S,
    tls: Option<ServerTlsConfig>,
    at: SocketAddr,
) -> Running {
    let incoming = TcpIncoming::bind(at).unwrap();
    let address = incoming.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let router = builder.add_service(
        GrpcInferenceServiceServer::new(service).max_decoding_message_size(usize::MAX),
    );
    let done = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        address,
        stop,
        done,
    }
}

async fn start(service: TestTriton) -> Running {
    serve(service, None, loopback()).await
}

fn options(address: SocketAddr) -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        ..ConnectOptions::new(address.to_string())
    }
}

#[tokio::test]
async fn health_metadata_and_config_round_trip() {
    let server = start(TestTriton::default()).await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    assert!(client.server_live().await.unwrap());
    assert!(client.server_ready().await.unwrap());
    let metadata = client.server_metadata().await.unwrap();
    assert_eq!(metadata.version, "2.60.0");
    assert!(metadata.extensions.iter().any(|e| e == "model_repository"));
    assert!(client.model_ready(MODEL, "").await.unwrap());
    assert!(!client.model_ready("resnet50", "1").await.unwrap());
    let model = client.model_metadata(MODEL, "").await.unwrap();
    assert_eq!(model.inputs[0].shape, vec![-1, 16]);
    let config = client.model_config(MODEL, "").await.unwrap();
    assert_eq!(
        (config.max_batch_size, config.instance_group[0].count),
        (8, 2)
    );
}

#[tokio::test]
async fn server_errors_keep_tritons_code_and_message() {
    let server = start(TestTriton::default()).await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    let err = client.model_metadata("resnet5", "").await.unwrap_err();
    assert_eq!(err.code_name(), "NOT_FOUND");
    assert_eq!(
        err.server_message(),
        Some("Request for unknown model: 'resnet5' is not found")
    );
    assert!(!err.is_connection_error());

    let bare = serve(Bare, None, loopback()).await;
    let client = TritonClient::connect(&options(bare.address)).await.unwrap();
    let err = client.server_live().await.unwrap_err();
    assert_eq!(err.code_name(), "UNIMPLEMENTED");
}

#[tokio::test]
async fn an_oversized_response_is_refused_with_resource_exhausted() {
    const LIMIT: usize = 1 << 20;
    let server = start(TestTriton {
        metadata_padding: 2 * LIMIT,
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&ConnectOptions {
        max_decode_bytes: LIMIT,
        ..options(server.address)
    })
    .await
    .unwrap();
    let err = client.model_metadata(MODEL, "").await.unwrap_err();
    assert!(
        matches!(
            err,
            TritonError::MessageTooLarge {
                direction: Direction::Response,
                limit: LIMIT,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code_name(), "RESOURCE_EXHAUSTED");
    assert!(
        err.to_string().contains(&format!("{LIMIT} byte limit")),
        "{err}"
    );
    // The connection is still usable: the limit refused one message, it did not break the client.
    assert!(client.server_live().await.unwrap());
}

#[tokio::test]
async fn a_response_under_the_limit_is_accepted() {
    const LIMIT: usize = 1 << 20;
    let server = start(TestTriton {
        metadata_padding: LIMIT / 2,
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&ConnectOptions {
        max_decode_bytes: LIMIT,
        ..options(server.address)
    })
    .await
    .unwrap();
    assert_eq!(
        client
            .model_metadata(MODEL, "")
            .await
            .unwrap()
            .platform
            .len(),
        LIMIT / 2
    );
}

#[tokio::test]
async fn an_oversized_request_fails_before_reaching_the_server() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = start(TestTriton {
        seen: seen.clone(),
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&ConnectOptions {
        max_encode_bytes: 64 * 1024,
        ..options(server.address)
    })
    .await
    .unwrap();
    let err = client
        .infer(simple_request(&[0; 16 * 1024], &[0; 16 * 1024]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TritonError::MessageTooLarge {
                direction: Direction::Request,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(seen.lock().unwrap().infers, 0);
}

#[tokio::test]
async fn infer_carries_raw_tensors_both_ways() {
    let server = start(TestTriton::default()).await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    let a: Vec<i32> = (0..16).collect();
    let b: Vec<i32> = (100..116).collect();
    let request = proto::ModelInferRequest {
        id: "42".into(),
        ..simple_request(&a, &b)
    };
    let response = client.infer(request.clone()).await.unwrap();
    assert_eq!(response.id, "42");
    assert_eq!(response.outputs[0].name, "OUTPUT0");
    assert_eq!(response.raw_output_contents, request.raw_input_contents);
}

/// The load generator's path: the request encoded once and sent as those bytes, swapped in under
/// tonic's request. A stock gRPC server must see the same message and honour the same deadline.
#[tokio::test]
async fn a_prepared_request_reaches_a_stock_grpc_server_intact() {
    let server = start(TestTriton::default()).await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    let mut request = simple_request(&[1; 16], &[2; 16]);
    // A megabyte tensor, the size the send path is for.
    request.raw_input_contents[0] = vec![9u8; 1 << 20].into();
    let echoed = client.infer(request.clone()).await.unwrap();
    let prepared = PreparedRequest::new(request);
    let answered = client
        .infer_prepared(&prepared, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answered, prost::Message::encoded_len(&echoed));
    assert!(answered > 1 << 20, "the tensor went there and back");

    let slow = start(TestTriton {
        infer_delay: Duration::from_secs(30),
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&options(slow.address)).await.unwrap();
    let deadline = Duration::from_millis(100);
    let err = client
        .infer_prepared(&prepared, deadline)
        .await
        .unwrap_err();
    assert_eq!(err.code_name(), "DEADLINE_EXCEEDED", "{err:?}");
}

#[tokio::test]
async fn an_expired_deadline_is_deadline_exceeded() {
    let server = start(TestTriton {
        infer_delay: Duration::from_secs(30),
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    let deadline = Duration::from_millis(100);
    let err = client
        .infer_within(simple_request(&[0; 16], &[0; 16]), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TritonError::Timeout { after } if after == deadline),
        "{err:?}"
    );
    assert_eq!(err.code_name(), "DEADLINE_EXCEEDED");
    assert!(!err.is_connection_error());
}

#[tokio::test]
async fn statistics_and_repository_calls_send_what_triton_expects() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = start(TestTriton {
        seen: seen.clone(),
        ..TestTriton::default()
    })
    .await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();

    let stats = client.statistics(Some(MODEL)).await.unwrap();
    client.statistics(None).await.unwrap();
    assert_eq!(
        (stats[0].inference_count, stats[0].execution_count),
        (40, 10)
    );
    assert_eq!(stats[0].queue.ns, 1_000_000);

    assert_eq!(
        client.repository_index(true).await.unwrap()[0].state,
        "READY"
    );
    client.repository_index(false).await.unwrap();

    let config =
        r#"{"max_batch_size": 8, "dynamic_batching": {"max_queue_delay_microseconds": 2000}}"#;
    client.load_model(MODEL, Some(config)).await.unwrap();
    client.load_model("resnet50", None).await.unwrap();
    client.unload_model(MODEL, true).await.unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.statistics_names, vec![MODEL.to_owned(), String::new()]);
    assert_eq!(seen.index_ready, vec![true, false]);
    assert_eq!(seen.loads[0].model_name, MODEL);
    let sent = seen.loads[0].parameters["config"].parameter_choice.clone();
    assert_eq!(sent, Some(ParameterChoice::StringParam(config.to_owned())));
    assert!(seen.loads[1].parameters.is_empty());
    assert_eq!(seen.unloads[0].model_name, MODEL);
    let sent = seen.unloads[0].parameters["unload_dependents"]
        .parameter_choice
        .clone();
    assert_eq!(sent, Some(ParameterChoice::BoolParam(true)));
}

#[tokio::test]
async fn a_pool_opens_separate_connections() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let server = start(TestTriton {
        seen: seen.clone(),
        ..TestTriton::default()
    })
    .await;
    let pool = TritonClient::pool(&options(server.address), 3)
        .await
        .unwrap();
    assert_eq!(pool.len(), 3);
    for client in &pool {
        assert!(client.server_live().await.unwrap());
        // Clones share their connection rather than opening another.
        assert!(client.clone().server_live().await.unwrap());
    }
    assert_eq!(seen.lock().unwrap().peers.len(), 3);
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_refused_connection_is_a_connection_error() {
    let address = closed_port();
    let err = TritonClient::connect(&options(address)).await.unwrap_err();
    assert!(matches!(err, TritonError::Connect { .. }), "{err:?}");
    assert!(err.is_connection_error());
    assert_eq!(err.code_name(), "UNAVAILABLE");
    assert!(err.to_string().contains(&address.to_string()), "{err}");
}

#[tokio::test]
async fn a_lost_server_makes_calls_connection_errors() {
    let server = start(TestTriton::default()).await;
    let client = TritonClient::connect(&options(server.address))
        .await
        .unwrap();
    assert!(client.server_live().await.unwrap());
    server.shut_down().await;
    let err = client.server_live().await.unwrap_err();
    assert!(err.is_connection_error(), "{err:?}");
}

#[tokio::test]
async fn a_lazy_client_waits_for_a_server_that_starts_later() {
    let address = closed_port();
    let client = TritonClient::connect_lazy(&options(address)).unwrap();
    let err = client.server_live().await.unwrap_err();
    assert!(err.is_connection_error(), "{err:?}");

    let _server = serve(TestTriton::default(), None, address).await;
    assert!(client.server_live().await.unwrap());
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

async fn start_tls() -> Running {
    let read = |name| std::fs::read(fixture(name)).unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem"), read("server.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    serve(TestTriton::default(), Some(tls), loopback()).await
}

fn mutual_tls() -> TlsOptions {
    TlsOptions {
        ca_file: Some(fixture("ca.pem")),
        cert_file: Some(fixture("client.pem")),
        key_file: Some(fixture("client.key")),
        // The server's certificate names triton.test, not 127.0.0.1.
        domain: Some("triton.test".into()),
    }
}

#[tokio::test]
async fn mutual_tls_with_a_domain_override_connects() {
    let server = start_tls().await;
    let client = TritonClient::connect(&ConnectOptions {
        tls: Some(mutual_tls()),
        ..options(server.address)
    })
    .await
    .unwrap();
    assert!(client.server_live().await.unwrap());
}

#[tokio::test]
async fn tls_fails_without_the_domain_override_or_the_client_certificate() {
    let server = start_tls().await;
    let wrong_name = ConnectOptions {
        tls: Some(TlsOptions {
            domain: None,
            ..mutual_tls()
        }),
        ..options(server.address)
    };
    let err = TritonClient::connect(&wrong_name).await.unwrap_err();
    assert!(matches!(err, TritonError::Connect { .. }), "{err:?}");

    let anonymous = ConnectOptions {
        tls: Some(TlsOptions {
            cert_file: None,
            key_file: None,
            ..mutual_tls()
        }),
        ..options(server.address)
    };
    // rustls may finish the client side of the handshake before the server rejects the client, so
    // the refusal shows either at connect or on the first call; either way as a broken connection.
    let refused = match TritonClient::connect(&anonymous).await {
        Err(err) => err,
        Ok(client) => client.server_live().await.unwrap_err(),
    };
    assert!(refused.is_connection_error(), "{refused:?}");
}
