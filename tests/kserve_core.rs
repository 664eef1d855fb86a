//! The client and the engine against a server with only the KServe-v2 core, as MLServer is: no
//! ModelConfig, ModelStatistics or repository RPCs (tonic's default answer, UNIMPLEMENTED), an
//! empty extension list, and metadata that may list no inputs.
//!
//! The server is test scaffolding in the shape of MLServer's scikit-learn runtime: `iris` takes one
//! FP64 `[batch, 4]` input and refuses anything else with INVALID_ARGUMENT and its reason.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::triton::loopback;
use perseus::engine::hooks::{NoKnowledge, NoPersistence, NoTelemetry};
use perseus::engine::{self, EngineConfig, EngineHandle};
use perseus::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use perseus::proto::{self, model_infer_response::InferOutputTensor};
use perseus::triton::{ConnectOptions, Extension, TritonClient, TritonError};
use perseus::vocab::snapshot::{ConnState, Phase, Snapshot, TargetInfo, TargetKind};
use perseus::vocab::spec::{
    Arrival, CostSpec, DeclaredInput, InputData, Load, RunSpec, Sla, TargetSpec, TenantSpec,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const REFUSAL: &str = "Expected one FP64 input of shape [N, 4]";

/// A KServe-v2 core server; every extension RPC keeps tonic's UNIMPLEMENTED default.
#[derive(Default)]
struct Core {
    infers: AtomicU64,
}

#[tonic::async_trait]
impl GrpcInferenceService for Core {
    async fn server_live(
        &self,
        _: Request<proto::ServerLiveRequest>,
    ) -> Result<Response<proto::ServerLiveResponse>, Status> {
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
            name: "mlserver".into(),
            version: "1.7.1".into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<proto::ModelReadyRequest>,
    ) -> Result<Response<proto::ModelReadyResponse>, Status> {
        Ok(Response::new(proto::ModelReadyResponse {
            ready: request.get_ref().name == "iris",
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let name = &request.get_ref().name;
        if name != "iris" {
            return Err(Status::not_found(format!("Model {name} not found")));
        }
        Ok(Response::new(proto::ModelMetadataResponse {
            name: name.clone(),
            versions: vec!["v1".into()],
            platform: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<proto::ModelInferRequest>,
    ) -> Result<Response<proto::ModelInferResponse>, Status> {
        let request = request.into_inner();
        let batch = match (
            request.inputs.as_slice(),
            request.raw_input_contents.as_slice(),
        ) {
            ([input], [raw])
                if input.datatype == "FP64"
                    && input.shape.len() == 2
                    && input.shape[1] == 4
                    && raw.len() as i64 == input.shape[0] * 4 * 8 =>
            {
                input.shape[0]
            }
            _ => return Err(Status::invalid_argument(REFUSAL)),
        };
        self.infers.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(proto::ModelInferResponse {
            model_name: request.model_name,
            outputs: vec![InferOutputTensor {
                name: "predict".into(),
                datatype: "INT64".into(),
                shape: vec![batch],
                ..Default::default()
            }],
            raw_output_contents: vec![vec![0u8; batch as usize * 8].into()],
            ..Default::default()
        }))
    }
}

async fn serve() -> SocketAddr {
    let incoming = TcpIncoming::bind(loopback()).unwrap();
    let address = incoming.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(GrpcInferenceServiceServer::new(Core::default()))
            .serve_with_incoming(incoming),
    );
    address
}

fn iris(inputs: Vec<DeclaredInput>) -> TenantSpec {
    TenantSpec {
        model: "iris".into(),
        load: Load::Rate {
            per_s: 40.0,
            arrival: Arrival::Constant,
        },
        batch: 2,
        sla: Sla {
            latency_ms: 500.0,
            percentile: 95.0,
        },
        instances: Some(2),
        dynamic_batching: None,
        data: InputData::Random,
        max_in_flight: TenantSpec::DEFAULT_MAX_IN_FLIGHT,
        deadline: TenantSpec::DEFAULT_DEADLINE,
        inputs,
    }
}

fn features(datatype: &str) -> Vec<DeclaredInput> {
    vec![DeclaredInput {
        name: "input-0".into(),
        datatype: datatype.into(),
        shape: vec![4],
    }]
}

fn start(address: SocketAddr, tenant: TenantSpec) -> EngineHandle {
    let address = address.to_string();
    engine::start(EngineConfig {
        spec: RunSpec {
            name: "kserve".into(),
            duration: Duration::from_secs(600),
            warmup: Duration::ZERO,
            window: Duration::from_secs(2),
            tick: Duration::from_millis(100),
            target: TargetSpec::Triton {
                address: address.clone(),
                metrics: None,
                gpu: None,
                tls: None,
            },
            transport: None,
            cost: CostSpec::UsdPerHour(1.0),
            tenants: vec![tenant],
        },
        target: TargetInfo {
            kind: TargetKind::Triton,
            address: address.clone(),
            gpu: None,
            server_version: None,
            model_control: true,
        },
        connect: ConnectOptions::new(&address),
        connections: 1,
        headless: false,
        price: None,
        knowledge: Arc::new(NoKnowledge),
        telemetry: Arc::new(NoTelemetry),
        persistence: Arc::new(NoPersistence),
        record: false,
    })
    .expect("engine starts")
}

/// Waits for a snapshot satisfying `pred`; the bound only keeps a broken build from hanging.
async fn wait_for(h: &mut EngineHandle, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let snap = Arc::clone(&h.snapshots.borrow_and_update());
        if pred(&snap) {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached; last snapshot: phase {:?}, tenants {:?}, notices {:?}",
            snap.phase,
            snap.tenants,
            snap.notices
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), h.snapshots.changed()).await;
    }
}

fn noticed(snap: &Snapshot, text: &str) -> bool {
    snap.notices.iter().any(|n| n.text.contains(text))
}

#[tokio::test]
async fn missing_extensions_are_learnt_from_unimplemented_and_remembered() {
    let address = serve().await;
    let client = TritonClient::connect(&ConnectOptions::new(address.to_string()))
        .await
        .unwrap();
    // An empty extension list says nothing either way.
    assert!(
        client
            .server_metadata()
            .await
            .unwrap()
            .extensions
            .is_empty()
    );
    assert_eq!(client.capabilities().supports(Extension::Statistics), None);
    for _ in 0..2 {
        let err = client.model_config("iris", "").await.unwrap_err();
        assert!(
            matches!(
                err,
                TritonError::Unsupported {
                    extension: Extension::ModelConfiguration,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.code_name(), "UNIMPLEMENTED");
        assert!(!err.is_connection_error());
    }
    assert_eq!(
        client
            .capabilities()
            .supports(Extension::ModelConfiguration),
        Some(false)
    );
    let err = client.statistics(None).await.unwrap_err();
    assert!(err.to_string().contains("statistics extension"), "{err}");
    let err = client.load_model("iris", None).await.unwrap_err();
    assert!(err.to_string().contains("model_repository"), "{err}");
    assert_eq!(
        client.capabilities().supports(Extension::ModelRepository),
        Some(false)
    );
    // The core still works.
    assert!(client.model_ready("iris", "").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_inputs_run_on_a_core_only_server() {
    let address = serve().await;
    let mut h = start(address, iris(features("FP64")));
    let snap = wait_for(&mut h, |s| {
        s.phase == Phase::Measuring && s.tenants[0].totals.ok >= 20
    })
    .await;
    let t = &snap.tenants[0];
    assert_eq!(t.totals.errors, 0, "{:?}", t.totals.first_error_by_code);
    assert!(t.setup_error.is_none());
    // Nothing the server did not report is shown as if it had.
    assert_eq!((t.instances, t.max_batch), (None, None));
    assert!(t.server.is_none());
    assert!(!snap.target.model_control);
    assert!(
        noticed(&snap, "instances and dynamic_batching not applied"),
        "{:?}",
        snap.notices
    );
    let snap = wait_for(&mut h, |s| noticed(s, "not reported")).await;
    let once = snap
        .notices
        .iter()
        .filter(|n| n.text.contains("not reported"))
        .count();
    assert_eq!(once, 1, "{:?}", snap.notices);
    let _ = h
        .commands
        .send(perseus::vocab::command::Command::Stop)
        .await;
    let fin = h.done.await.unwrap();
    assert_eq!(fin.connection.state, ConnState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_without_inputs_is_a_setup_error_naming_them() {
    let address = serve().await;
    let mut h = start(address, iris(Vec::new()));
    let snap = wait_for(&mut h, |s| s.tenants[0].setup_error.is_some()).await;
    let why = snap.tenants[0].setup_error.clone().unwrap_or_default();
    assert!(
        why.contains("'iris'") && why.contains("lists no inputs"),
        "{why}"
    );
    assert!(why.contains("inputs = ["), "{why}");
    assert_eq!(snap.phase, Phase::Connecting);
    assert_eq!(snap.connection.state, ConnState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_of_each_error_code_is_kept_and_shown() {
    let address = serve().await;
    let mut h = start(address, iris(features("FP32")));
    let snap = wait_for(&mut h, |s| s.tenants[0].totals.errors >= 5).await;
    let t = &snap.tenants[0];
    assert_eq!(t.totals.ok, 0);
    assert_eq!(
        t.totals
            .first_error_by_code
            .get("INVALID_ARGUMENT")
            .map(String::as_str),
        Some(REFUSAL)
    );
    let shown: Vec<_> = snap
        .notices
        .iter()
        .filter(|n| n.text.contains(REFUSAL))
        .collect();
    assert_eq!(shown.len(), 1, "{:?}", snap.notices);
    assert!(shown[0].text.contains("iris") && shown[0].text.contains("INVALID_ARGUMENT"));
}

#[test]
fn perseus_run_reports_a_refused_setup_at_once() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let address = runtime.block_on(serve());
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("iris.toml");
    std::fs::write(
        &session,
        format!(
            "duration = \"2s\"\nwarmup = \"0s\"\n[target]\ntriton = \"{address}\"\n\
             [cost]\nusd_per_hour = 1.0\n[[tenant]]\nmodel = \"iris\"\nrate = 10\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perseus"))
        .arg("run")
        .arg(&session)
        .env("PERSEUS_DATA_DIR", dir.path())
        .env(
            "PERSEUS_CONFIG",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.sample.toml"),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lists no inputs"), "{stderr}");
    // The set-up's own answer, not the connect timeout running out.
    assert!(!stderr.contains("within 15s"), "{stderr}");
}
