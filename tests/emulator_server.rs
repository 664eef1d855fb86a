//! The running emulator over real loopback gRPC, driven with the generated client (not Perseus's own
//! Triton client), for every RPC it serves and every error it must give as Triton does.

mod common;

use common::triton::{int_tensor, le_bytes, simple_request};
use perseus::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use perseus::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use perseus::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use perseus::proto::{self, model_repository_parameter::ParameterChoice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

async fn start(models: &[&str]) -> (RunningEmulator, Client) {
    let mut config = EmulatorConfig::embedded("t4");
    config.models = models.iter().map(|m| (*m).to_string()).collect();
    let emulator = Emulator::start(config)
        .await
        .expect("emulator starts on ephemeral ports");
    let client = GrpcInferenceServiceClient::connect(emulator.grpc_url())
        .await
        .expect("connects over loopback")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    (emulator, client)
}

fn ints(raw: &[u8]) -> Vec<i32> {
    raw.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn operands() -> (Vec<i32>, Vec<i32>) {
    (
        (0..16).map(|i| i * 7 - 20).collect(),
        (0..16).map(|i| 1000 - i * i).collect(),
    )
}

#[tokio::test]
async fn health_and_server_metadata() {
    let (emulator, mut client) = start(&["simple"]).await;
    assert!(
        client
            .server_live(proto::ServerLiveRequest {})
            .await
            .unwrap()
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(proto::ServerReadyRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    let meta = client
        .server_metadata(proto::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, perseus::emulator::SERVER_NAME);
    assert!(!meta.version.is_empty());
    assert!(meta.extensions.iter().any(|e| e == "model_repository"));
    let ready = |name: &str| proto::ModelReadyRequest {
        name: name.into(),
        version: String::new(),
    };
    assert!(
        client
            .model_ready(ready("simple"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(ready("no_such_model"))
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn model_metadata_and_config_come_from_the_catalog() {
    let (emulator, mut client) = start(&["simple", "resnet50"]).await;
    let meta = client
        .model_metadata(proto::ModelMetadataRequest {
            name: "simple".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, vec!["1".to_string()]);
    let names: Vec<&str> = meta.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["INPUT0", "INPUT1"]);
    assert_eq!(meta.inputs[0].datatype, "INT32");
    assert_eq!(meta.inputs[0].shape, vec![-1, 16]);
    assert_eq!(meta.outputs.len(), 2);

    let config = client
        .model_config(proto::ModelConfigRequest {
            name: "resnet50".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert!(config.max_batch_size > 1);
    assert_eq!(config.instance_group[0].count, 1);
    assert!(matches!(
        config.scheduling_choice,
        Some(proto::model_config::SchedulingChoice::DynamicBatching(_))
    ));
    assert_eq!(config.input[0].data_type, proto::DataType::TypeFp32 as i32);
    emulator.shutdown().await;
}

#[tokio::test]
async fn simple_sums_and_differences_raw_and_typed() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    let reply = client
        .model_infer(simple_request(&a, &b))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.outputs.len(), 2);
    assert_eq!(reply.outputs[0].name, "OUTPUT0");
    assert_eq!(reply.outputs[0].shape, vec![1, 16]);
    let sum: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let diff: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert_eq!(ints(&reply.raw_output_contents[0]), sum);
    assert_eq!(ints(&reply.raw_output_contents[1]), diff);

    // The typed `contents` field, and only the output asked for.
    let typed = |name: &str, values: &[i32]| InferInputTensor {
        contents: Some(proto::InferTensorContents {
            int_contents: values.to_vec(),
            ..Default::default()
        }),
        ..int_tensor(name, vec![1, 16])
    };
    let request = proto::ModelInferRequest {
        model_name: "simple".into(),
        inputs: vec![typed("INPUT0", &a), typed("INPUT1", &b)],
        outputs: vec![InferRequestedOutputTensor {
            name: "OUTPUT1".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let reply = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(reply.outputs.len(), 1);
    assert_eq!(reply.outputs[0].name, "OUTPUT1");
    assert_eq!(ints(&reply.raw_output_contents[0]), diff);
    emulator.shutdown().await;
}

/// ModelInfer has two receive paths: decoded where the frame arrived (the default) and tonic's
/// (compressed requests; the benchmark's as-first-shipped server). A client must not tell them apart.
#[tokio::test]
async fn every_grpc_receive_path_answers_and_fails_alike() {
    let (current, mut client) = start(&["simple"]).await;
    let mut config = EmulatorConfig::embedded("t4");
    config.models = vec!["simple".into()];
    config.limits.legacy_grpc = true;
    let legacy = Emulator::start(config).await.expect("starts");
    let mut legacy_client = GrpcInferenceServiceClient::connect(legacy.grpc_url())
        .await
        .expect("connects");
    let mut gzip_client = client
        .clone()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let (a, b) = operands();
    let unknown = proto::ModelInferRequest {
        model_name: "resnet5".into(),
        ..simple_request(&a, &b)
    };
    for (path, c) in [
        ("legacy", &mut legacy_client),
        ("compressed", &mut gzip_client),
    ] {
        let expected = client.model_infer(simple_request(&a, &b)).await.unwrap();
        let got = c.model_infer(simple_request(&a, &b)).await.unwrap();
        assert_eq!(got.into_inner(), expected.into_inner(), "{path}");
        let expected = client.model_infer(unknown.clone()).await.unwrap_err();
        let got = c.model_infer(unknown.clone()).await.unwrap_err();
        assert_eq!(
            (got.code(), got.message()),
            (expected.code(), expected.message()),
            "{path}"
        );
    }
    legacy.shutdown().await;
    current.shutdown().await;
}

#[tokio::test]
async fn resnet50_answers_a_batch_with_the_catalog_output_shape() {
    let (emulator, mut client) = start(&["resnet50"]).await;
    let meta = client
        .model_metadata(proto::ModelMetadataRequest {
            name: "resnet50".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let input = &meta.inputs[0];
    let mut shape = input.shape.clone();
    shape[0] = 2;
    let elements: i64 = shape.iter().product();
    let request = proto::ModelInferRequest {
        model_name: "resnet50".into(),
        inputs: vec![InferInputTensor {
            name: input.name.clone(),
            datatype: input.datatype.clone(),
            shape,
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; elements as usize * 4].into()],
        ..Default::default()
    };
    let reply = client.model_infer(request).await.unwrap().into_inner();
    let mut expected = meta.outputs[0].shape.clone();
    expected[0] = 2;
    assert_eq!(reply.outputs[0].shape, expected);
    let per_image: i64 = expected[1..].iter().product();
    assert_eq!(reply.raw_output_contents[0].len() as i64, 2 * per_image * 4);
    emulator.shutdown().await;
}

#[tokio::test]
async fn malformed_inputs_are_invalid_argument_naming_the_input() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    let mut wrong_name = simple_request(&a, &b);
    wrong_name.inputs[0].name = "INPUT9".into();
    let mut wrong_shape = simple_request(&a, &b);
    wrong_shape.inputs[0].shape = vec![1, 8];
    let mut wrong_type = simple_request(&a, &b);
    wrong_type.inputs[0].datatype = "FP32".into();
    let mut wrong_size = simple_request(&a, &b);
    wrong_size.raw_input_contents[0] = le_bytes(&a[..8]);
    let mut too_big = simple_request(&a, &b);
    for (i, t) in too_big.inputs.iter_mut().enumerate() {
        t.shape = vec![64, 16];
        too_big.raw_input_contents[i] = le_bytes(&vec![1; 64 * 16]);
    }
    let mut missing = simple_request(&a, &b);
    missing.inputs.pop();
    missing.raw_input_contents.pop();
    let mut bad_output = simple_request(&a, &b);
    bad_output.outputs = vec![InferRequestedOutputTensor {
        name: "OUTPUT7".into(),
        ..Default::default()
    }];
    for (request, needle) in [
        (wrong_name, "INPUT9"),
        (wrong_shape, "unexpected shape for input 'INPUT0'"),
        (wrong_type, "data-type is 'FP32'"),
        (wrong_size, "byte size"),
        (too_big, "batch-size must be <="),
        (missing, "INPUT1"),
        (bad_output, "OUTPUT7"),
    ] {
        let status = client.model_infer(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains(needle),
            "'{}' lacks '{needle}'",
            status.message()
        );
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn unknown_and_unloaded_models_fail_as_triton_does() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    let mut unknown = simple_request(&a, &b);
    unknown.model_name = "no_such_model".into();
    let status = client.model_infer(unknown).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("'no_such_model' is not found"),
        "{}",
        status.message()
    );

    client
        .repository_model_unload(proto::RepositoryModelUnloadRequest {
            model_name: "simple".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let status = client
        .model_infer(simple_request(&a, &b))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    let index = client
        .repository_index(proto::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let simple = index.models.iter().find(|m| m.name == "simple").unwrap();
    assert_eq!(simple.state, "UNAVAILABLE");
    assert!(
        index.models.iter().any(|m| m.name == "resnet50"),
        "the catalog's models are listed"
    );

    client
        .repository_model_load(proto::RepositoryModelLoadRequest {
            model_name: "simple".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(client.model_infer(simple_request(&a, &b)).await.is_ok());
    emulator.shutdown().await;
}

fn load_with_config(model: &str, json: &str) -> proto::RepositoryModelLoadRequest {
    let mut request = proto::RepositoryModelLoadRequest {
        model_name: model.into(),
        ..Default::default()
    };
    request.parameters.insert(
        "config".into(),
        proto::ModelRepositoryParameter {
            parameter_choice: Some(ParameterChoice::StringParam(json.into())),
        },
    );
    request
}

#[tokio::test]
async fn a_load_that_does_not_fit_is_resource_exhausted_with_mib() {
    let (emulator, mut client) = start(&["simple"]).await;
    let status = client
        .repository_model_load(load_with_config(
            "vgg16",
            r#"{"instance_group": [{"count": 500}]}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(status.message().contains("MiB"), "{}", status.message());
    let index = client
        .repository_index(proto::RepositoryIndexRequest {
            ready: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let vgg = index.models.iter().find(|m| m.name == "vgg16").unwrap();
    assert_eq!(vgg.state, "UNAVAILABLE");
    assert!(vgg.reason.contains("MiB"), "{}", vgg.reason);
    emulator.shutdown().await;
}

#[tokio::test]
async fn load_configuration_sets_instances_and_batcher() {
    let (emulator, mut client) = start(&[]).await;
    let json = r#"{"max_batch_size": 16, "instance_group": [{"count": 2}],
        "dynamic_batching": {"max_queue_delay_microseconds": 250, "preferred_batch_size": [4, 8]}}"#;
    client
        .repository_model_load(load_with_config("resnet50", json))
        .await
        .unwrap();
    let config = client
        .model_config(proto::ModelConfigRequest {
            name: "resnet50".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 16);
    assert_eq!(config.instance_group[0].count, 2);
    let Some(proto::model_config::SchedulingChoice::DynamicBatching(batcher)) =
        config.scheduling_choice
    else {
        panic!("dynamic batching was configured");
    };
    assert_eq!(batcher.preferred_batch_size, vec![4, 8]);
    assert_eq!(batcher.max_queue_delay_microseconds, 250);

    let status = client
        .repository_model_load(load_with_config(
            "resnet50",
            r#"{"max_batch_size": "lots"}"#,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("max_batch_size"),
        "{}",
        status.message()
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn statistics_count_the_requests_served() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    let requests = 7u64;
    for _ in 0..requests {
        client.model_infer(simple_request(&a, &b)).await.unwrap();
    }
    let mut bad = simple_request(&a, &b);
    bad.inputs[0].name = "INPUT9".into();
    client.model_infer(bad).await.unwrap_err();

    let stats = client
        .model_statistics(proto::ModelStatisticsRequest {
            name: "simple".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .model_stats;
    assert_eq!(stats.len(), 1);
    let s = &stats[0];
    assert_eq!(s.name, "simple");
    assert_eq!(s.inference_count, requests);
    assert!(s.execution_count >= 1 && s.execution_count <= requests);
    let infer = s.inference_stats.unwrap();
    let success = infer.success.unwrap();
    assert_eq!(success.count, requests);
    assert!(success.ns > 0);
    assert_eq!(infer.queue.unwrap().count, requests);
    let compute = infer.compute_infer.unwrap();
    assert_eq!(compute.count, requests);
    assert!(compute.ns > 0 && compute.ns <= success.ns);
    assert!(s.last_inference > 0);
    let batched: u64 = s
        .batch_stats
        .iter()
        .map(|b| b.batch_size * b.compute_infer.unwrap().count)
        .sum();
    assert_eq!(
        batched, requests,
        "batch statistics account for every image"
    );

    let status = client
        .model_statistics(proto::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    emulator.shutdown().await;
}

#[tokio::test]
async fn stream_answers_each_request_on_the_stream() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    let mut requests: Vec<proto::ModelInferRequest> = (0..3)
        .map(|i| {
            let mut r = simple_request(&a, &b);
            r.id = format!("req-{i}");
            r
        })
        .collect();
    let mut bad = simple_request(&a, &b);
    bad.inputs[1].datatype = "FP32".into();
    requests.push(bad);
    let mut responses = client
        .model_stream_infer(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let (mut ok, mut errors) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let message = responses
            .message()
            .await
            .unwrap()
            .expect("one answer per request");
        match message.infer_response {
            Some(reply) => ok.push(reply),
            None => errors.push(message.error_message),
        }
    }
    assert_eq!(ok.len(), 3);
    let sum: Vec<i32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let mut ids: Vec<String> = ok.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["req-0", "req-1", "req-2"]);
    assert!(ok.iter().all(|r| ints(&r.raw_output_contents[0]) == sum));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("INPUT1"), "{}", errors[0]);
    emulator.shutdown().await;
}

/// A bare HTTP/1.1 GET, enough for health and the Prometheus text without an HTTP client dependency.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn http_health_and_prometheus_metrics_with_triton_names() {
    let (emulator, mut client) = start(&["simple"]).await;
    let (a, b) = operands();
    for _ in 0..3 {
        client.model_infer(simple_request(&a, &b)).await.unwrap();
    }
    assert_eq!(
        http_get(emulator.http_addr, "/v2/health/ready").await.0,
        200
    );
    assert_eq!(
        http_get(emulator.http_addr, "/v2/models/simple/ready")
            .await
            .0,
        200
    );
    assert_eq!(
        http_get(emulator.http_addr, "/v2/models/nope/ready")
            .await
            .0,
        400
    );
    let (status, text) = http_get(emulator.metrics_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("nv_inference_request_success{model=\"simple\",version=\"1\"} 3\n"),
        "{text}"
    );
    for name in [
        "nv_inference_count{",
        "nv_inference_exec_count{",
        "nv_inference_queue_duration_us{",
        "nv_inference_compute_infer_duration_us{",
        "nv_inference_pending_request_count{",
        "nv_gpu_utilization{gpu_uuid=",
        "nv_gpu_memory_total_bytes{",
        "nv_gpu_memory_used_bytes{",
        "nv_gpu_power_usage{",
        "nv_gpu_power_limit{",
        "nv_energy_consumption{",
        "perseus_emulator_sm_activity{",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    let utilization: f64 = text
        .lines()
        .find(|l| l.starts_with("nv_gpu_utilization{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((0.0..=1.0).contains(&utilization));
    // Triton's latency summaries, as it serves them with summary_latencies=true: the three
    // requests counted, and their server-side quantiles read by the client's parser.
    assert!(
        text.contains("nv_inference_request_summary_us_count{model=\"simple\",version=\"1\"} 3\n"),
        "{text}"
    );
    for family in ["queue", "compute_input", "compute_infer", "compute_output"] {
        assert!(
            text.contains(&format!("# TYPE nv_inference_{family}_summary_us summary")),
            "{family}"
        );
    }
    let summaries = perseus::telemetry::parse_request_summaries(&text).expect("parses");
    let quantiles: Vec<f64> = summaries["simple"].iter().map(|(q, _)| *q).collect();
    assert_eq!(quantiles, [0.5, 0.9, 0.95, 0.99]);
    assert!(summaries["simple"].iter().all(|(_, ms)| *ms >= 0.0));
    emulator.shutdown().await;
}

/// One ResNet-50 image of zeros.
fn resnet_request(id: &str) -> proto::ModelInferRequest {
    proto::ModelInferRequest {
        model_name: "resnet50".into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3, 224, 224],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; 3 * 224 * 224 * 4].into()],
        ..Default::default()
    }
}

/// A batcher that holds a lone request for 50 s waiting for a batch of 8: it stays queued.
const HOLDING_BATCHER: &str = r#""dynamic_batching": {"max_queue_delay_microseconds": 50000000,
    "preferred_batch_size": [8], "default_queue_policy": {"max_queue_size": QUEUE}}"#;

/// Sends two held requests at once and returns the status of whichever is answered first: the
/// one refused at admission (the other waits in the queue until the model is unloaded).
async fn first_of_two_held(client: &Client) -> tonic::Status {
    let mut one = client.clone();
    let mut two = client.clone();
    let mut a = tokio::spawn(async move { one.model_infer(resnet_request("a")).await });
    let mut b = tokio::spawn(async move { two.model_infer(resnet_request("b")).await });
    // Without a bound both would wait in the queue for 50 s: the timeout only keeps that failure
    // from hanging the test.
    let first = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        tokio::select! {
            first = &mut a => (first, b),
            first = &mut b => (first, a),
        }
    })
    .await;
    let Ok((first, other)) = first else {
        panic!("neither request was refused: both were queued");
    };
    let mut client = client.clone();
    client
        .repository_model_unload(proto::RepositoryModelUnloadRequest {
            model_name: "resnet50".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let other = other.await.unwrap().unwrap_err();
    assert_eq!(other.code(), Code::Unavailable, "{}", other.message());
    assert!(other.message().contains("unloaded"), "{}", other.message());
    first.unwrap().unwrap_err()
}

#[tokio::test]
async fn a_full_queue_refuses_with_unavailable_in_tritons_words() {
    let (emulator, mut client) = start(&[]).await;
    let json = format!(
        r#"{{"max_batch_size": 8, {}}}"#,
        HOLDING_BATCHER.replace("QUEUE", "1")
    );
    client
        .repository_model_load(load_with_config("resnet50", &json))
        .await
        .unwrap();
    let config = client
        .model_config(proto::ModelConfigRequest {
            name: "resnet50".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    let Some(proto::model_config::SchedulingChoice::DynamicBatching(batcher)) =
        config.scheduling_choice
    else {
        panic!("dynamic batching was configured");
    };
    assert_eq!(
        batcher.default_queue_policy.map(|p| p.max_queue_size),
        Some(1)
    );

    let refused = first_of_two_held(&client).await;
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    let message = refused.message();
    assert!(
        message == "[request id: a] Exceeds maximum queue size"
            || message == "[request id: b] Exceeds maximum queue size",
        "{message}"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_memory_bound_refuses_what_it_cannot_hold() {
    let mut config = EmulatorConfig::embedded("t4");
    // Room for one ResNet-50 image (588 KiB in, 4 KB out, plus the per-request charge), not two.
    config.limits.max_queued_bytes = 1 << 20;
    let emulator = Emulator::start(config).await.unwrap();
    let mut client = GrpcInferenceServiceClient::connect(emulator.grpc_url())
        .await
        .unwrap();
    // No queue policy: only the emulator's own bound stands between the flood and its memory.
    let json = format!(
        r#"{{"max_batch_size": 8, {}}}"#,
        HOLDING_BATCHER.replace("QUEUE", "0")
    );
    client
        .repository_model_load(load_with_config("resnet50", &json))
        .await
        .unwrap();
    let refused = first_of_two_held(&client).await;
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
    assert!(
        refused
            .message()
            .contains("Exceeds the emulator's memory bound for queued requests"),
        "{}",
        refused.message()
    );
    // What the refused and the unloaded requests held is returned: a later request is admitted.
    client
        .repository_model_load(load_with_config("resnet50", r#"{"max_batch_size": 8}"#))
        .await
        .unwrap();
    assert!(client.model_infer(resnet_request("c")).await.is_ok());
    emulator.shutdown().await;
}

#[tokio::test]
async fn each_load_starts_from_the_default_configuration() {
    let (emulator, mut client) = start(&[]).await;
    let batcher_of = |config: proto::ModelConfig| match config.scheduling_choice {
        Some(proto::model_config::SchedulingChoice::DynamicBatching(b)) => b,
        other => panic!("resnet50 has a dynamic batcher by default, got {other:?}"),
    };
    let config_now = {
        let client = client.clone();
        move || {
            let mut client = client.clone();
            async move {
                client
                    .model_config(proto::ModelConfigRequest {
                        name: "resnet50".into(),
                        version: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .config
                    .unwrap()
            }
        }
    };
    let json = r#"{"instance_group": [{"count": 2}], "dynamic_batching":
        {"max_queue_delay_microseconds": 30000000, "preferred_batch_size": [8],
         "default_queue_policy": {"max_queue_size": 4}}}"#;
    client
        .repository_model_load(load_with_config("resnet50", json))
        .await
        .unwrap();
    assert_eq!(
        batcher_of(config_now().await).max_queue_delay_microseconds,
        30_000_000
    );
    // A reload that overrides only the batch size keeps nothing of the previous override.
    client
        .repository_model_load(load_with_config("resnet50", r#"{"max_batch_size": 4}"#))
        .await
        .unwrap();
    let config = config_now().await;
    assert_eq!(config.max_batch_size, 4);
    assert_eq!(config.instance_group[0].count, 1);
    let batcher = batcher_of(config);
    assert_eq!(batcher.max_queue_delay_microseconds, 0);
    assert!(batcher.preferred_batch_size.is_empty());
    assert!(batcher.default_queue_policy.is_none());
    // With the 30 s delay gone a lone request runs at once (the guard only stops a hung test).
    let served = tokio::time::timeout(
        std::time::Duration::from_secs(25),
        client.model_infer(resnet_request("after-reload")),
    )
    .await;
    assert!(matches!(served, Ok(Ok(_))), "{served:?}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn absurd_configurations_are_refused_naming_the_field() {
    let (emulator, mut client) = start(&[]).await;
    for (json, expected) in [
        (
            r#"{"instance_group": [{"count": 4294967295}, {"count": 2}]}"#,
            "'instance_group' counts add up to more than 1024 instances",
        ),
        (
            r#"{"dynamic_batching": {"max_queue_delay_microseconds": 18446744073709551615}}"#,
            "'dynamic_batching.max_queue_delay_microseconds' is 18446744073709551615",
        ),
    ] {
        let status = client
            .repository_model_load(load_with_config("resnet50", json))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().contains(expected), "{}", status.message());
    }
    emulator.shutdown().await;
}

/// Sends `head` a byte every 100 ms and reports whether the server closed the connection before
/// the whole of it was sent (a generous 30 s at most).
async fn closed_while_dribbling(addr: std::net::SocketAddr, head: &[u8]) -> bool {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1024];
    for &byte in head.iter().cycle().take(300) {
        if stream.write_all(&[byte]).await.is_err() {
            return true;
        }
        match tokio::time::timeout(std::time::Duration::from_millis(100), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    false
}

#[tokio::test]
async fn slow_request_heads_are_cut_off_on_every_port() {
    let mut config = EmulatorConfig::embedded("t4");
    config.models = vec!["simple".into()];
    config.limits.head_timeout = std::time::Duration::from_millis(500);
    let emulator = Emulator::start(config).await.unwrap();
    // A header line that never ends the head, repeated.
    let http_head = b"GET /v2/health/live HTTP/1.1\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n";
    // An HTTP/2 preface that never completes its first frame.
    let h2_head = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x40\x00\x04";
    assert!(
        closed_while_dribbling(emulator.http_addr, http_head).await,
        "HTTP"
    );
    assert!(
        closed_while_dribbling(emulator.metrics_addr, http_head).await,
        "metrics"
    );
    assert!(
        closed_while_dribbling(emulator.grpc_addr, h2_head).await,
        "gRPC"
    );

    // Well-behaved clients that go quiet past the deadline are left alone.
    let mut client = GrpcInferenceServiceClient::connect(emulator.grpc_url())
        .await
        .unwrap();
    let (a, b) = operands();
    assert!(client.model_infer(simple_request(&a, &b)).await.is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(client.model_infer(simple_request(&a, &b)).await.is_ok());
    let mut keep_alive = tokio::net::TcpStream::connect(emulator.http_addr)
        .await
        .unwrap();
    for _ in 0..2 {
        let request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n";
        keep_alive.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = keep_alive.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn grpc_connections_advertise_a_bound_on_open_streams() {
    let mut config = EmulatorConfig::embedded("t4");
    config.models = vec!["simple".into()];
    config.limits.max_streams_per_connection = 77;
    let emulator = Emulator::start(config).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(emulator.grpc_addr)
        .await
        .unwrap();
    // The client preface and an empty SETTINGS frame; the server answers with its own SETTINGS.
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    stream.write_all(&hello).await.unwrap();
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 4, "the server's first frame is SETTINGS");
    let len =
        (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    let max_streams = payload.chunks_exact(6).find_map(|s| {
        // SETTINGS_MAX_CONCURRENT_STREAMS is identifier 3.
        (u16::from_be_bytes([s[0], s[1]]) == 3)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    });
    assert_eq!(max_streams, Some(77));
    emulator.shutdown().await;
}

#[tokio::test]
async fn http_errors_have_tritons_json_body() {
    let (emulator, _client) = start(&["simple"]).await;
    for (path, code) in [("/v2/no/such/route", 404), ("/v2/models/simple/infer", 405)] {
        let (status, text) = http_get(emulator.http_addr, path).await;
        assert_eq!(status, code, "{text}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_sequence_must_open_with_start() {
    let (emulator, mut client) = start(&["simple_sequence"]).await;
    let request = |id: u64, start: bool, value: i32| {
        let mut params = std::collections::HashMap::new();
        let param = |c| proto::InferParameter {
            parameter_choice: Some(c),
        };
        use proto::infer_parameter::ParameterChoice as P;
        params.insert("sequence_id".to_string(), param(P::Int64Param(id as i64)));
        params.insert("sequence_start".to_string(), param(P::BoolParam(start)));
        proto::ModelInferRequest {
            model_name: "simple_sequence".into(),
            inputs: vec![int_tensor("INPUT", vec![1, 1])],
            raw_input_contents: vec![le_bytes(&[value])],
            parameters: params,
            ..Default::default()
        }
    };
    let err = client.model_infer(request(5, false, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("must specify the START flag"),
        "{}",
        err.message()
    );
    let reply = client
        .model_infer(request(5, true, 41))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ints(&reply.raw_output_contents[0]), [42]);
    let reply = client
        .model_infer(request(5, false, 41))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ints(&reply.raw_output_contents[0]), [41]);
    emulator.shutdown().await;
}
