//! What a request costs in CPU, by transport: the demo mix (`sessions/demo.toml`) for plain gRPC as
//! first shipped (each request encoded afresh, HTTP/2's default windows), plain gRPC now (encoded
//! once, large windows and frames) and system shared memory.
//!
//! Two measures, each from this process's CPU time (user + system, `/proc/self/stat`) divided by the
//! requests completed:
//! - **embedded**: the emulator runs inside this process, as `perseus run` of the demo runs it, so
//!   the figure is what the user's machine pays per request, both ends of the loopback included.
//!   This is the measure the targets apply to (DESIGN §8, issue 16: shared memory at most 1/5 and
//!   plain gRPC at most 1/2 of the first).
//! - **client only**: the emulator runs as a child process (`perseus emulate`), so the figure is the
//!   load generator's alone.
//!
//! Then, for each transport, a short search finds the largest common scale factor of the demo's
//! rates at which every tenant still meets its SLA with no errors (embedded).
//!
//! `cargo bench --bench client_cost` (add `-- --seconds 10` for longer runs, `-- --no-search` to
//! skip the scale search).

#[path = "../tests/support/standalone.rs"]
mod standalone;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use perseus::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use perseus::engine::hooks::{NoKnowledge, NoPersistence, NoTelemetry};
use perseus::engine::{self, EngineConfig};
use perseus::session::{AnyModel, load_session};
use perseus::triton::ConnectOptions;
use perseus::vocab::snapshot::{Snapshot, TargetInfo, TargetKind};
use perseus::vocab::spec::{Load, RunSpec, TargetSpec, Transport};
use standalone::Standalone;

/// `/proc` reports CPU times in USER_HZ, which Linux fixes at 100 per second for this interface.
const TICKS_PER_S: f64 = 100.0;

#[derive(Clone, Copy)]
struct Mode {
    label: &'static str,
    transport: Transport,
    legacy: bool,
}

const MODES: [Mode; 3] = [
    Mode {
        label: "plain gRPC, as first shipped",
        transport: Transport::Grpc,
        legacy: true,
    },
    Mode {
        label: "plain gRPC, encoded once",
        transport: Transport::Grpc,
        legacy: false,
    },
    Mode {
        label: "system shared memory",
        transport: Transport::Shm,
        legacy: false,
    },
];

/// CPU seconds (user + system) this process has used, all threads included.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (tick(11) + tick(12)) / TICKS_PER_S
}

struct Outcome {
    cpu_s: f64,
    completed: u64,
    all_met: bool,
    errors: u64,
    /// Errors by status name, then drops, so that a failing run says why.
    why: String,
}

async fn run(spec: &RunSpec, address: &str, mode: Mode, scale: f64) -> Outcome {
    let mut spec = spec.clone();
    spec.target = TargetSpec::Triton {
        address: address.to_string(),
        metrics: None,
        gpu: None,
        tls: None,
    };
    for t in &mut spec.tenants {
        if let Load::Rate { per_s, .. } = &mut t.load {
            *per_s *= scale;
        }
    }
    let connect = ConnectOptions {
        transport: mode.transport,
        legacy_grpc: mode.legacy,
        ..ConnectOptions::new(address)
    };
    let handle = engine::start(EngineConfig {
        spec,
        target: TargetInfo {
            kind: TargetKind::Triton,
            address: address.to_string(),
            gpu: None,
            server_version: None,
            model_control: true,
        },
        connect,
        connections: 2,
        headless: true,
        price: None,
        knowledge: Arc::new(NoKnowledge),
        telemetry: Arc::new(NoTelemetry),
        persistence: Arc::new(NoPersistence),
        record: false,
    })
    .expect("engine starts");
    let before = cpu_seconds();
    let last: Arc<Snapshot> = handle.done.await.expect("the run ends");
    let cpu_s = cpu_seconds() - before;
    let completed = last.tenants.iter().map(|t| t.totals.ok).sum();
    let errors = last
        .tenants
        .iter()
        .map(|t| t.totals.errors + t.totals.dropped)
        .sum();
    let mut codes = std::collections::BTreeMap::<String, u64>::new();
    for t in &last.tenants {
        for (code, n) in &t.totals.errors_by_code {
            *codes.entry(code.clone()).or_default() += n;
        }
        *codes.entry("dropped".into()).or_default() += t.totals.dropped;
    }
    let why = codes
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let all_met = !last.tenants.is_empty()
        && last
            .tenants
            .iter()
            .all(|t| t.totals.sla_met == Some(true) && t.totals.errors == 0);
    Outcome {
        cpu_s,
        completed,
        all_met,
        errors,
        why,
    }
}

/// The largest scale factor that met every SLA: doubling from 1, then three halvings of the gap.
async fn search(spec: &RunSpec, address: &str, mode: Mode) -> f64 {
    let (mut good, mut bad) = (0.0_f64, None::<f64>);
    let mut k = 1.0;
    while bad.is_none() && k <= 16.0 {
        if run(spec, address, mode, k).await.all_met {
            good = k;
            k *= 2.0;
        } else {
            bad = Some(k);
        }
    }
    if let Some(mut hi) = bad {
        for _ in 0..3 {
            let mid = (good + hi) / 2.0;
            if run(spec, address, mode, mid).await.all_met {
                good = mid;
            } else {
                hi = mid;
            }
        }
    }
    good
}

/// Where the emulator runs for a measurement.
enum Server {
    Embedded(RunningEmulator),
    Child(Standalone),
}

impl Server {
    fn address(&self) -> String {
        match self {
            Server::Embedded(e) => e.grpc_addr.to_string(),
            Server::Child(c) => c.grpc.clone(),
        }
    }
}

/// A fresh emulator for each measurement, so none inherits another's queue.
async fn server(embedded: bool, models: &[String]) -> Server {
    if embedded {
        let emu = Emulator::start(EmulatorConfig {
            models: models.to_vec(),
            ..EmulatorConfig::embedded("t4")
        })
        .await
        .expect("the embedded emulator starts");
        Server::Embedded(emu)
    } else {
        Server::Child(Standalone::spawn(&[
            "--gpu",
            "t4",
            "--models",
            &models.join(","),
        ]))
    }
}

/// One table: CPU per request for each transport, and its ratio to the first.
async fn table(spec: &RunSpec, models: &[String], embedded: bool) {
    let what = if embedded {
        "embedded emulator (client and server, one process)"
    } else {
        "client only (emulator in a child process)"
    };
    println!("{what}");
    println!(
        "  {:<30} {:>12} {:>10} {:>10} {:>8}",
        "transport", "CPU ms/req", "requests", "vs first", "errors"
    );
    let mut first = None;
    for mode in MODES {
        let emu = server(embedded, models).await;
        let o = run(spec, &emu.address(), mode, 1.0).await;
        let per_req_ms = 1e3 * o.cpu_s / o.completed.max(1) as f64;
        let base = *first.get_or_insert(per_req_ms);
        println!(
            "  {:<30} {:>12.3} {:>10} {:>10.2} {:>8}  {}",
            mode.label,
            per_req_ms,
            o.completed,
            per_req_ms / base,
            o.errors,
            o.why
        );
        if let Server::Embedded(e) = emu {
            e.shutdown().await;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args
        .iter()
        .skip_while(|a| *a != "--seconds")
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let with_search = !args.iter().any(|a| a == "--no-search");
    let session = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/demo.toml");
    let mut spec = load_session(&session, &AnyModel).expect("the demo session parses");
    let models: Vec<String> = spec.tenants.iter().map(|t| t.model.clone()).collect();
    spec.duration = Duration::from_secs(seconds);
    spec.warmup = Duration::from_secs(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        println!("CPU per request, demo mix, {seconds} s (+1 s warm-up) each");
        table(&spec, &models, true).await;
        table(&spec, &models, false).await;
        if with_search {
            println!("largest scale factor of the demo's rates with every SLA met (embedded)");
            for mode in MODES {
                let emu = server(true, &models).await;
                let k = search(&spec, &emu.address(), mode).await;
                println!("  {:<30} {k:>6.2}×", mode.label);
                if let Server::Embedded(e) = emu {
                    e.shutdown().await;
                }
            }
        }
    });
}
