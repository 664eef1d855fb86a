//! What the tests of the real binary share: running it with a private data dir and the sample
//! config, and the JSON schema of `perseus run` (perseus.run.v1).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Each test runs servers and load on a small machine: one at a time, so they do not slow each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn perseus(args: &[&str], data_dir: &Path) -> Output {
    command(args, data_dir)
        .output()
        .expect("the perseus binary runs")
}

/// The binary with its arguments and environment, to spawn or redirect as a test needs.
pub fn command(args: &[&str], data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_perseus"));
    cmd.args(args)
        .env("PERSEUS_DATA_DIR", data_dir)
        .env(
            "PERSEUS_CONFIG",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config.sample.toml"),
        )
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

pub fn num_or_null(v: &Value, what: &str) {
    assert!(
        v.is_null() || v.is_number(),
        "{what} must be a number or null: {v}"
    );
}

/// Checks a result against the schema documented in the README: perseus.run.v1, or v2 (a session
/// with several targets), whose every target block is a v1 result with its name.
pub fn check_schema(r: &Value) {
    if r["schema"] == "perseus.run.v2" {
        let targets = r["targets"].as_array().expect("v2: targets array");
        assert!(targets.len() >= 2, "v2 is for several targets: {r}");
        for t in targets {
            assert!(t["name"].is_string(), "v2: each target is named: {t}");
            check_schema(t);
        }
        assert!(
            r["fleet"]["usd_per_hour"].is_number(),
            "v2: fleet line: {r}"
        );
        return;
    }
    assert_eq!(r["schema"], "perseus.run.v1");
    assert!(r["session"].is_string());
    let kind = r["target"]["kind"].as_str().expect("target.kind");
    assert!(kind == "emulated" || kind == "triton");
    assert!(r["target"]["address"].is_string());
    assert!(num(&r["duration_s"], "duration_s") > 0.0);
    let tenants = r["tenants"].as_array().expect("tenants array");
    assert!(!tenants.is_empty());
    for t in tenants {
        assert!(t["model"].is_string());
        assert!(t["arrival"].is_string());
        num_or_null(&t["target_rate"], "target_rate");
        num(&t["achieved_rate"], "achieved_rate");
        for k in ["sent", "ok", "errors", "dropped", "late"] {
            assert!(t[k].is_u64(), "{k} is a count: {}", t[k]);
        }
        // Only requests sent in the measured period count, whenever they complete.
        let count = |k: &str| t[k].as_u64().unwrap_or(0);
        assert!(
            count("ok") + count("errors") <= count("sent"),
            "ok + errors ≤ sent: {t}"
        );
        for block in ["latency_ms", "service_latency_ms"] {
            for k in ["mean", "p50", "p90", "p95", "p99", "max"] {
                num(&t[block][k], &format!("{block}.{k}"));
            }
        }
        let server = &t["server_ms"];
        assert!(server.is_null() || server.is_object());
        if server.is_object() {
            for k in ["queue", "compute_input", "compute_infer", "compute_output"] {
                num(&server[k], &format!("server_ms.{k}"));
            }
        }
        num_or_null(&t["avg_batch"], "avg_batch");
        num(&t["sla"]["latency_ms"], "sla.latency_ms");
        num(&t["sla"]["percentile"], "sla.percentile");
        num_or_null(&t["sla"]["attainment"], "sla.attainment");
        assert!(t["sla"]["met"].is_null() || t["sla"]["met"].is_boolean());
        num(&t["goodput"], "goodput");
    }
    let gpu = &r["gpu"];
    assert!(gpu.is_object(), "gpu block");
    for k in [
        "util_mean",
        "sm_activity_mean",
        "memory_used_mb",
        "memory_total_mb",
        "power_w_mean",
    ] {
        num_or_null(&gpu[k], &format!("gpu.{k}"));
    }
    let cost = &r["cost"];
    assert!(cost.is_object(), "cost block");
    num(&cost["usd_per_hour"], "cost.usd_per_hour");
    num(&cost["throughput_per_s"], "cost.throughput_per_s");
    num(&cost["monthly_usd"], "cost.monthly_usd");
    for k in [
        "usd_per_million",
        "goodput_usd_per_million",
        "dedicated_equivalents",
    ] {
        num_or_null(&cost[k], &format!("cost.{k}"));
    }
    // No savings below the frontier: they are in the capacity block, at capacity.
    assert!(cost.get("savings_vs_timeslicing_pct").is_none(), "{cost}");
    assert!(cost.get("savings_vs_dedicated_pct").is_none(), "{cost}");
    let capacity = &r["capacity"];
    assert!(capacity.is_object(), "capacity block");
    let status = capacity["status"].as_str().unwrap_or("");
    assert!(
        ["known", "unknown", "computing"].contains(&status),
        "capacity.status {status}"
    );
    for k in [
        "headroom",
        "equivalents",
        "savings_vs_dedicated_pct",
        "savings_vs_timeslicing_pct",
    ] {
        num_or_null(&capacity[k], &format!("capacity.{k}"));
    }
    if status == "known" {
        num(&capacity["headroom"], "capacity.headroom");
        assert!(capacity["gpu"].is_string(), "capacity.gpu");
    } else {
        assert!(capacity["savings_vs_timeslicing_pct"].is_null());
    }
}
