//! System shared memory end to end: the emulator's Register / Status / Unregister and inference
//! through regions with Triton's errors, a client run over shared memory, and no `/dev/shm` files
//! left behind when the client or the emulator is killed.
#![cfg(target_os = "linux")]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use perseus::emulator::{Emulator, EmulatorConfig};
use perseus::proto::{self, InferParameter, infer_parameter::ParameterChoice};
use perseus::triton::{ConnectOptions, TritonClient};
use serde_json::Value;

mod common;
use common::triton::{le_bytes, simple_request};
#[path = "support/standalone.rs"]
mod standalone;
use standalone::Standalone;
#[path = "support/cli.rs"]
mod cli;
use cli::{command, num, perseus, serial, text, tmp};

/// A shared-memory object the test owns, unlinked when dropped.
struct Object {
    key: String,
    file: std::fs::File,
}

impl Object {
    fn new(len: u64) -> Object {
        let key = format!(
            "/perseus-shm-test-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let fd = rustix::shm::open(
            key.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let file = std::fs::File::from(fd);
        file.set_len(len).unwrap();
        Object { key, file }
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(self.key.as_str());
    }
}

fn shm_params(
    region: &str,
    offset: i64,
    size: i64,
) -> std::collections::HashMap<String, InferParameter> {
    let p = |c| InferParameter {
        parameter_choice: Some(c),
    };
    [
        (
            "shared_memory_region",
            p(ParameterChoice::StringParam(region.into())),
        ),
        (
            "shared_memory_offset",
            p(ParameterChoice::Int64Param(offset)),
        ),
        (
            "shared_memory_byte_size",
            p(ParameterChoice::Int64Param(size)),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn code(e: &perseus::triton::TritonError) -> &'static str {
    e.code_name()
}

#[tokio::test]
async fn regions_register_serve_simple_and_refuse_bad_windows() {
    let emu = Emulator::start(EmulatorConfig::embedded("t4"))
        .await
        .unwrap();
    let client = TritonClient::connect(&ConnectOptions::new(emu.grpc_addr.to_string()))
        .await
        .unwrap();
    let meta = client.server_metadata().await.unwrap();
    assert!(meta.extensions.iter().any(|e| e == "system_shared_memory"));

    // Inputs at 0 and 64, outputs at 128 and 192.
    let object = Object::new(256);
    let a: Vec<i32> = (0..16).collect();
    let b: Vec<i32> = (0..16).map(|i| 100 - i).collect();
    object.file.write_all_at(&le_bytes(&a), 0).unwrap();
    object.file.write_all_at(&le_bytes(&b), 64).unwrap();
    client
        .register_system_shm("io", &object.key, 0, 256)
        .await
        .unwrap();
    // The name may go at once: the server keeps the region.
    rustix::shm::unlink(object.key.as_str()).unwrap();

    let err = client
        .register_system_shm("io", &object.key, 0, 256)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ALREADY_EXISTS", "{err}");
    let other = Object::new(64);
    let err = client
        .register_system_shm("big", &other.key, 32, 64)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "INVALID_ARGUMENT");
    assert!(
        err.to_string()
            .contains("failed to register shared memory region 'big': invalid args"),
        "{err}"
    );

    let status = client.system_shm_status("").await.unwrap();
    let io = &status.regions["io"];
    assert_eq!(
        (io.key.as_str(), io.offset, io.byte_size),
        (object.key.as_str(), 0, 256)
    );
    let err = client.system_shm_status("nope").await.unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND");

    let mut request = simple_request(&a, &b);
    request.raw_input_contents.clear();
    request.inputs[0].parameters = shm_params("io", 0, 64);
    request.inputs[1].parameters = shm_params("io", 64, 64);
    request.outputs = ["OUTPUT0", "OUTPUT1"]
        .iter()
        .zip([128, 192])
        .map(
            |(name, offset)| proto::model_infer_request::InferRequestedOutputTensor {
                name: (*name).into(),
                parameters: shm_params("io", offset, 64),
            },
        )
        .collect();
    let response = client.infer(request.clone()).await.unwrap();
    assert_eq!(response.outputs.len(), 2);
    assert!(response.raw_output_contents.iter().all(|r| r.is_empty()));
    let mut out = [0u8; 128];
    object.file.read_exact_at(&mut out, 128).unwrap();
    let ints: Vec<i32> = out
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        ints[..16],
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        ints[16..],
        a.iter().zip(&b).map(|(x, y)| x - y).collect::<Vec<_>>()[..]
    );

    for (offset, size, expected) in [
        (256, 64, "Invalid offset for shared memory region: 'io'"),
        (
            224,
            64,
            "Invalid offset + byte size for shared memory region: 'io'",
        ),
    ] {
        let mut bad = request.clone();
        bad.inputs[1].parameters = shm_params("io", offset, size);
        let err = client.infer(bad).await.unwrap_err();
        assert_eq!(code(&err), "INVALID_ARGUMENT");
        assert!(err.to_string().contains(expected), "{err}");
    }
    let mut small = request.clone();
    small.outputs[0].parameters = shm_params("io", 128, 32);
    let err = client.infer(small).await.unwrap_err();
    assert!(
        err.to_string().contains("should be at least 64 bytes"),
        "{err}"
    );

    client.unregister_system_shm("io").await.unwrap();
    let err = client.infer(request).await.unwrap_err();
    assert_eq!(code(&err), "NOT_FOUND", "{err}");
    assert!(
        client
            .system_shm_status("")
            .await
            .unwrap()
            .regions
            .is_empty()
    );
    emu.shutdown().await;
}

/// Names of `/dev/shm` objects a process with this pid made through Perseus's client.
fn leftovers(pid: u32) -> Vec<String> {
    let prefix = format!("perseus-{pid}-");
    std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

const SESSION: &str =
    "[[tenant]]\nmodel = \"simple\"\nrate = 200\n\n[[tenant]]\nmodel = \"resnet50\"\nrate = 20\n";

fn ok_of(r: &Value) -> f64 {
    r["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| num(&t["ok"], "ok"))
        .sum()
}

#[test]
fn a_run_over_shared_memory_matches_one_over_grpc() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let mut totals = Vec::new();
    for transport in ["shm", "grpc"] {
        let session = dir.path().join(format!("{transport}.toml"));
        std::fs::write(
            &session,
            format!("[target]\ntransport = \"{transport}\"\n\n{SESSION}"),
        )
        .unwrap();
        let json = dir.path().join(format!("{transport}.json"));
        let out = perseus(
            &[
                "run",
                session.to_str().unwrap(),
                "--duration",
                "3s",
                "--warmup",
                "1s",
                "--json",
                json.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert!(out.status.success(), "{transport}: {}", text(&out));
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for t in r["tenants"].as_array().unwrap() {
            assert_eq!(num(&t["errors"], "errors"), 0.0, "{transport}: {t}");
        }
        totals.push(ok_of(&r));
    }
    // Open loop at the same rates: both transports complete the same schedule.
    let (shm, grpc) = (totals[0], totals[1]);
    assert!(
        shm > 0.0 && (shm - grpc).abs() <= 0.1 * grpc,
        "shm {shm} vs grpc {grpc}"
    );
}

#[test]
fn shm_on_a_remote_triton_is_refused_at_its_line() {
    let dir = tmp();
    let session = dir.path().join("remote.toml");
    std::fs::write(
        &session,
        "[target]\ntriton = \"gpu-box.example:8001\"\ntransport = \"shm\"\n\n[[tenant]]\nmodel = \"simple\"\nrate = 1\n",
    )
    .unwrap();
    let out = perseus(&["run", session.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remote.toml:3:"), "{err}");
    assert!(err.contains("needs the server on this machine"), "{err}");
}

#[test]
fn no_shm_files_remain_after_the_client_is_killed() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let session = dir.path().join("s.toml");
    std::fs::write(&session, SESSION).unwrap();
    let mut child = command(
        &["run", session.to_str().unwrap(), "--duration", "30s"],
        dir.path(),
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let pid = child.id();
    // Long enough for both tenants to be set up over shared memory.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn no_shm_files_remain_after_the_emulator_is_killed() {
    let _one_at_a_time = serial();
    let mut emu = Standalone::spawn(&["--models", "simple"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let regions = rt.block_on(async {
        let client = TritonClient::connect(&ConnectOptions::new(emu.grpc.clone()))
            .await
            .unwrap();
        let request = simple_request(&[1; 16], &[2; 16]);
        let (shared, regions) = perseus::triton::shm::attach(&client, "killed", &request)
            .await
            .unwrap();
        let response = client.infer(shared).await.unwrap();
        assert_eq!(response.outputs.len(), 2);
        let status = client.system_shm_status("").await.unwrap();
        assert_eq!(status.regions.len(), 2);
        regions.names().to_vec()
    });
    assert_eq!(regions.len(), 2);
    emu.kill();
    assert_eq!(leftovers(std::process::id()), Vec::<String>::new());
    assert!(!Path::new("/dev/shm").join(&regions[0]).exists());
}
