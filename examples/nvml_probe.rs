//! Prints Perseus's NVML view as CSV, to set beside `nvidia-smi --query-gpu=... --format=csv -lms N`.
//!
//! Usage: `nvml_probe [SECONDS] [INTERVAL_MS] [DEVICE]` (defaults 10, 500, 0; DEVICE is an index or a
//! UUID). Columns match nvidia-smi's units: utilization in %, memory in MiB, power in W.

use std::time::{Duration, Instant};

use perseus::telemetry::{DeviceSelector, NvmlChoice, Telemetry, TelemetryConfig};
use perseus::vocab::snapshot::Reading;

fn arg<T: std::str::FromStr>(n: usize, default: T) -> Result<T, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("argument {n} ({s:?}) is not valid")),
    }
}

fn cell(r: Option<Reading>, scale: f64) -> String {
    r.map(|r| format!("{:.1}", r.value * scale))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let seconds: f64 = arg(1, 10.0)?;
    let interval_ms: u64 = arg(2, 500)?;
    let device: String = arg(3, "0".to_owned())?;
    let device: DeviceSelector = device.parse().map_err(|e| format!("{e}"))?;
    let telemetry = Telemetry::start(TelemetryConfig {
        nvml: NvmlChoice::Device(device),
        nvml_hz: 10.0,
        ..TelemetryConfig::default()
    });
    println!(
        "elapsed_s,utilization_pct,memory_used_mib,power_w,power_limit_w,sm_clock_mhz,temperature_c,age_ms,name"
    );
    let start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms.max(10)));
    let mut reported = false;
    while start.elapsed().as_secs_f64() < seconds {
        ticker.tick().await;
        let v = telemetry.view();
        if !v.unavailable.is_empty() && !reported {
            eprintln!("{}", v.unavailable.join("\n"));
            reported = true;
        }
        println!(
            "{:.2},{},{},{},{},{},{},{},{}",
            start.elapsed().as_secs_f64(),
            cell(v.utilization, 100.0),
            cell(v.memory_used_bytes, 1.0 / 1_048_576.0),
            cell(v.power_w, 1.0),
            cell(v.power_limit_w, 1.0),
            cell(v.sm_clock_mhz, 1.0),
            cell(v.temperature_c, 1.0),
            v.utilization
                .map(|r| r.age_ms.to_string())
                .unwrap_or_default(),
            v.name.unwrap_or_default(),
        );
    }
    telemetry.shutdown();
    Ok(())
}
