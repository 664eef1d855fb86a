//! `perseus probe` against a standalone emulator treated as a real server (no shortcut through the
//! catalog): its measured solo peak agrees with the emulator model's virtual-time peak, and a second
//! run answers from the cache.

use std::path::Path;
use std::process::Command;

#[path = "support/standalone.rs"]
mod standalone;
use standalone::Standalone;

use perseus::catalog::Catalog;
use perseus::emulator::sim;

fn emulator() -> Standalone {
    Standalone::spawn(&[
        "--gpu",
        "t4",
        "--profile",
        "perseus2019",
        "--models",
        "resnet50",
    ])
}

fn probe(session: &Path, grpc: &str, data: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_perseus"))
        .args([
            "probe",
            session.to_str().unwrap(),
            "--triton",
            grpc,
            "--window",
            "1s",
            "--start",
            "150",
        ])
        .env("PERSEUS_DATA_DIR", data)
        .env(
            "PERSEUS_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config.sample.toml"),
        )
        .output()
        .expect("perseus probe runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "probe failed:\n{text}");
    text
}

fn peak_in(output: &str, model: &str) -> f64 {
    output
        .lines()
        .find(|l| l.starts_with(model))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak for {model} in:\n{output}"))
}

#[test]
fn probe_measures_the_virtual_time_peak_and_caches_it() {
    let emu = emulator();
    let data = tempfile::tempdir().unwrap();
    let session = data.path().join("probe.toml");
    std::fs::write(
        &session,
        "name = \"probe\"\n[target]\ntriton = \"127.0.0.1:1\"\n[cost]\nusd_per_hour = 0.6\n\
         [[tenant]]\nmodel = \"resnet50\"\nrate = 10\nsla = { latency_ms = 750, percentile = 95 }\n",
    )
    .unwrap();

    let first = probe(&session, &emu.grpc, data.path());
    assert!(first.contains("measured"), "{first}");
    let measured = peak_in(&first, "resnet50");

    // What the emulator's model says in virtual time for the server's configuration.
    let catalog = Catalog::embedded().unwrap();
    let gpu = perseus::emulator::sim::gpu_setup(catalog.gpu("t4").unwrap());
    let model =
        perseus::emulator::sim::model_setup(&catalog, "resnet50", "t4", Some("perseus2019"))
            .unwrap();
    let computed = sim::solo_peak(&gpu, &model, 1, 750.0, 95.0).unwrap();
    assert!(
        (measured - computed).abs() / computed <= 0.10,
        "probe measured {measured:.1}/s, virtual time says {computed:.1}/s:\n{first}"
    );

    let second = probe(&session, &emu.grpc, data.path());
    assert!(
        second.contains("cached"),
        "second run uses the cache:\n{second}"
    );
    assert_eq!(peak_in(&second, "resnet50"), measured);
}
