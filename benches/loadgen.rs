//! Schedule accuracy of the open-loop load generator.
//!
//! Runs the real clock thread and request path against the in-process emulator's `simple` model on
//! loopback and reports the send-time error (actual send − intended send) at 1,000 and 5,000 req/s,
//! plus the achieved rate. Target (DESIGN §8): p99 ≤ 200 µs at 5,000 req/s on 2 cores.
//!
//! Next to each rate it prints the floor measured in the same run: the error an ideal clock thread
//! would see on this machine (see `support/floor.rs`), and the CPU time the hypervisor stole.
//!
//! `cargo bench --bench loadgen` (add `-- --seconds 10` for longer runs).

#[path = "support/floor.rs"]
mod floor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use perseus::emulator::{Emulator, EmulatorConfig};
use perseus::loadgen::tensors::build_request;
use perseus::loadgen::{ArrivalProcess, Clock, TenantShared};
use perseus::measure::TenantMeter;
use perseus::triton::{ConnectOptions, TritonClient};
use perseus::vocab::spec::{Arrival, InputData, Sla};

fn main() {
    let seconds: u64 = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let emu = Emulator::start(EmulatorConfig {
            gpu: "h100".into(),
            profile: None,
            models: vec!["simple".into()],
            grpc: loopback,
            http: loopback,
            metrics: loopback,
            catalog_dir: None,
            limits: Default::default(),
        })
        .await
        .expect("emulator");
        let opts = ConnectOptions::new(emu.grpc_addr.to_string());
        let clients = Arc::new(TritonClient::pool(&opts, 4).await.expect("connect"));
        let meta = clients[0].model_metadata("simple", "").await.expect("metadata");
        let cfg = clients[0].model_config("simple", "").await.expect("config");
        let request = build_request(&meta, cfg.max_batch_size as u32, 1, InputData::Zero, 0)
            .expect("request");
        println!("open-loop schedule accuracy, {seconds} s per rate, constant arrivals, `simple` on loopback");
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
            "rate/s", "achieved/s", "err p50 µs", "err p90 µs", "err p99 µs", "err max µs", "late"
        );
        let quantiles = [0.5, 0.9, 0.99, 1.0];
        for (i, rate) in [1000.0, 5000.0].into_iter().enumerate() {
            let mut meter = TenantMeter::new(
                Sla {
                    latency_ms: 100.0,
                    percentile: 99.0,
                },
                Duration::from_secs(60),
                Duration::from_millis(250),
                Instant::now(),
            )
            .expect("meter");
            let shared = Arc::new(TenantShared::new(
                i as u32,
                "simple".into(),
                request.clone(),
                Arc::clone(&clients),
                4096,
                Duration::from_secs(10),
                meter.recorder(),
            ));
            // The floor first, on an otherwise idle process, for as long as the measurement.
            let span = Duration::from_secs(seconds);
            let (gaps, floor_steal) = floor::measure_floor(span).await;
            let ideal = gaps.ideal_error_us(rate, &quantiles);
            let clock = Clock::start(tokio::runtime::Handle::current(), true).expect("clock");
            // Warm up for a second, then measure.
            clock.add(Arc::clone(&shared), ArrivalProcess::new(&Arrival::Constant, rate, 1));
            tokio::time::sleep(Duration::from_secs(1)).await;
            shared.reset_send_errors();
            meter.tick(Instant::now());
            meter.start_measuring(Instant::now());
            let t0 = Instant::now();
            let steal0 = floor::steal_ms();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let run_steal = floor::steal_since(steal0);
            meter.tick(Instant::now());
            let elapsed = t0.elapsed().as_secs_f64();
            let totals = meter.totals(elapsed);
            let (q, n) = shared.send_error_quantiles_us(&quantiles);
            drop(clock);
            let late = totals.late;
            println!(
                "{:>8.0} {:>10.1} {:>10} {:>10} {:>10} {:>10} {:>8}   ({n} sends)",
                rate,
                totals.achieved_per_s,
                q[0],
                q[1],
                q[2],
                q[3],
                late
            );
            let steal = |ms: Option<u64>| ms.map_or("n/a".to_string(), |ms| format!("{ms} ms"));
            println!(
                "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}   (ideal clock on this machine: off-CPU {:.1}%, steal {} / run steal {})",
                "floor",
                "",
                ideal[0],
                ideal[1],
                ideal[2],
                ideal[3],
                "",
                gaps.lost_fraction() * 100.0,
                steal(floor_steal),
                steal(run_steal)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        emu.shutdown().await;
    });
}
