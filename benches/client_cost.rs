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
//! Then two floors measured in the same run: the CPU of a bare loopback TCP transfer of the demo's
//! mean request (what separates plain gRPC from shared memory), and that of a bare HTTP/2 exchange
//! at the demo's total rate (what every request over loopback gRPC pays, whatever its transport of
//! tensors: `h2` on both ends, a few hundred bytes each way, the answer after a timed wait). And, for each transport, a short search finds the largest common scale factor of the demo's
//! rates at which every tenant still meets its SLA with no errors (embedded).
//!
//! `cargo bench --bench client_cost` (add `-- --seconds 10` for longer runs, `-- --no-search` to
//! skip the scale search, `-- --threads` for each thread's CPU and context switches per request,
//! `-- --scale 0.05` for the demo's rates scaled, `-- --embedded-only` to skip the client-only
//! table, `-- --only shared` for the transports whose label has that word, `-- --no-floor` to skip
//! the loopback floor, so that a profile of the run holds the transports alone).

#[path = "../tests/support/standalone.rs"]
mod standalone;
#[path = "support/threads.rs"]
mod threads;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use perseus::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use perseus::engine::hooks::{NoKnowledge, NoPersistence, NoTelemetry};
use perseus::engine::{self, EngineConfig};
use perseus::loadgen::tensors::build_request;
use perseus::session::{AnyModel, load_session};
use perseus::triton::{ConnectOptions, PreparedRequest, TritonClient};
use perseus::vocab::snapshot::{Snapshot, TargetInfo, TargetKind};
use perseus::vocab::spec::{Load, RunSpec, TargetSpec, Transport};
use standalone::Standalone;
use threads::ThreadSampler;

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
    wall_s: f64,
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
        // As `perseus run` and the dashboard open them.
        connections: 4,
        headless: true,
        price: None,
        knowledge: Arc::new(NoKnowledge),
        telemetry: Arc::new(NoTelemetry),
        persistence: Arc::new(NoPersistence),
        record: false,
    })
    .expect("engine starts");
    let before = cpu_seconds();
    let started = std::time::Instant::now();
    let last: Arc<Snapshot> = handle.done.await.expect("the run ends");
    let cpu_s = cpu_seconds() - before;
    let wall_s = started.elapsed().as_secs_f64();
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
        wall_s,
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

/// A fresh emulator for each measurement, so none inherits another's queue. Embedded, it serves
/// the baseline's transport as first shipped too; a child serves the current one in every row.
async fn server(embedded: bool, models: &[String], mode: Mode) -> Server {
    if embedded {
        let mut config = EmulatorConfig {
            models: models.to_vec(),
            ..EmulatorConfig::embedded("t4")
        };
        config.limits.legacy_grpc = mode.legacy;
        let emu = Emulator::start(config)
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

/// What a table measures beyond the default.
#[derive(Clone, Copy)]
struct Options {
    /// The demo's rates times this (a small one shows the fixed cost of a run: ticks, sampling).
    scale: f64,
    /// Each mode's CPU and context switches per request by thread, embedded.
    threads: bool,
    /// Only the transports whose label contains this (for a profiler's run of one).
    only: Option<&'static str>,
}

/// One table: CPU per request for each transport, and its ratio to the first.
async fn table(spec: &RunSpec, models: &[String], embedded: bool, opts: Options) {
    let what = if embedded {
        "embedded emulator (client and server, one process)"
    } else {
        "client only (emulator in a child process)"
    };
    println!("{what}");
    println!(
        "  {:<30} {:>12} {:>10} {:>10} {:>8} {:>9} {:>16}",
        "transport", "CPU ms/req", "requests", "vs first", "errors", "CPU ms/s", "late p50/p99 µs"
    );
    let mut first = None;
    for mode in MODES {
        if opts.only.is_some_and(|o| !mode.label.contains(o)) {
            continue;
        }
        let emu = server(embedded, models, mode).await;
        let sampler = (opts.threads && embedded).then(ThreadSampler::start);
        let o = run(spec, &emu.address(), mode, opts.scale).await;
        let per_thread = sampler.map(ThreadSampler::finish);
        let per_req_ms = 1e3 * o.cpu_s / o.completed.max(1) as f64;
        let base = *first.get_or_insert(per_req_ms);
        // The emulated GPU's completions, delivered late by the clock thread's wake-ups.
        let lateness = match &emu {
            Server::Embedded(e) => {
                let s = e.scheduling_error();
                format!("{:.0}/{:.0}", s.p50_us, s.p99_us)
            }
            Server::Child(_) => "—".to_string(),
        };
        println!(
            "  {:<30} {:>12.3} {:>10} {:>10.2} {:>8} {:>9.1} {:>16}  {}",
            mode.label,
            per_req_ms,
            o.completed,
            per_req_ms / base,
            o.errors,
            1e3 * o.cpu_s / o.wall_s,
            lateness,
            o.why
        );
        for (name, usage) in per_thread.unwrap_or_default() {
            let n = o.completed.max(1) as f64;
            println!(
                "      {name:<26} {:>8.3} ms/req {:>7.2} switches/req",
                1e3 * usage.cpu_s / n,
                usage.switches as f64 / n
            );
        }
        if let Server::Embedded(e) = emu {
            e.shutdown().await;
        }
    }
}

/// The demo mix's mean request on the wire, in bytes: each tenant's request weighted by its rate.
async fn mean_request_bytes(spec: &RunSpec, address: &str) -> f64 {
    let client = TritonClient::connect(&ConnectOptions::new(address))
        .await
        .expect("connects");
    let (mut bytes, mut rate) = (0.0, 0.0);
    for t in &spec.tenants {
        let Load::Rate { per_s, .. } = t.load else {
            continue;
        };
        let meta = client.model_metadata(&t.model, "").await.expect("metadata");
        let config = client.model_config(&t.model, "").await.expect("config");
        let request = build_request(&meta, config.max_batch_size as u32, t.batch, t.data, 0)
            .expect("request");
        bytes += per_s * PreparedRequest::new(request).encoded_len() as f64;
        rate += per_s;
    }
    bytes / rate.max(f64::MIN_POSITIVE)
}

/// CPU per message (ms) of a bare loopback TCP transfer of `bytes`, written by one thread and
/// read by another into a reused buffer: the kernel's copy in and its copy out, which every
/// request over plain gRPC pays and one over shared memory does not.
fn loopback_floor_ms(bytes: usize, messages: usize) -> f64 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = listener.local_addr().expect("address");
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accepts");
        let mut buf = vec![0u8; bytes];
        for _ in 0..messages {
            stream.read_exact(&mut buf).expect("reads");
        }
    });
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    let _ = stream.set_nodelay(true);
    let message = vec![1u8; bytes];
    let before = cpu_seconds();
    for _ in 0..messages {
        stream.write_all(&message).expect("writes");
    }
    reader.join().expect("the reader finishes");
    1e3 * (cpu_seconds() - before) / messages as f64
}

/// CPU per request (ms) of bare HTTP/2 exchanges between a client and a server in this process:
/// `rate` requests a second for `seconds`, each a few hundred bytes answered with as many after
/// `service` (tokio's timer), with gRPC's headers and trailers and nothing else: no gRPC stack,
/// no model, no measurement.
async fn h2_exchange_floor_ms(rate: f64, seconds: f64, service: Duration) -> f64 {
    use bytes::Bytes;
    use tonic::codegen::http;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accepts");
        let _ = socket.set_nodelay(true);
        let mut connection = h2::server::handshake(socket).await.expect("handshake");
        while let Some(Ok((request, mut respond))) = connection.accept().await {
            tokio::spawn(async move {
                let mut body = request.into_body();
                while let Some(Ok(data)) = body.data().await {
                    let _ = body.flow_control().release_capacity(data.len());
                }
                tokio::time::sleep(service).await;
                let head = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .body(())
                    .expect("response head");
                let Ok(mut send) = respond.send_response(head, false) else {
                    return;
                };
                let _ = send.send_data(Bytes::from(vec![7u8; 300]), false);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let _ = send.send_trailers(trailers);
            });
        }
    });
    let socket = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let _ = socket.set_nodelay(true);
    let (client, connection) = h2::client::handshake(socket).await.expect("handshake");
    tokio::spawn(connection);
    let n = (rate * seconds).max(1.0) as u64;
    let uri = format!("http://{addr}/inference.GRPCInferenceService/ModelInfer");
    let before = cpu_seconds();
    let start = tokio::time::Instant::now();
    let mut exchanges = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let mut sender = client.clone().ready().await.expect("ready");
        let request = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request head");
        let (response, mut stream) = sender.send_request(request, false).expect("sends");
        let _ = stream.send_data(Bytes::from(vec![1u8; 300]), true);
        exchanges.push(tokio::spawn(async move {
            let mut body = response.await.expect("answered").into_body();
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
            }
            let _ = body.trailers().await;
        }));
    }
    for exchange in exchanges {
        let _ = exchange.await;
    }
    let per_request = 1e3 * (cpu_seconds() - before) / n as f64;
    server.abort();
    per_request
}

/// The demo's total rate of requests, scaled.
fn total_rate(spec: &RunSpec, scale: f64) -> f64 {
    spec.tenants
        .iter()
        .filter_map(|t| match t.load {
            Load::Rate { per_s, .. } => Some(per_s * scale),
            _ => None,
        })
        .sum()
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
    let opts = Options {
        scale: args
            .iter()
            .skip_while(|a| *a != "--scale")
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
        threads: args.iter().any(|a| a == "--threads"),
        only: args
            .iter()
            .skip_while(|a| *a != "--only")
            .nth(1)
            .map(|s| &*s.clone().leak()),
    };
    let client_only = !args.iter().any(|a| a == "--embedded-only");
    let with_floor = !args.iter().any(|a| a == "--no-floor");
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
        table(&spec, &models, true, opts).await;
        if client_only {
            table(&spec, &models, false, opts).await;
        }
        if with_floor {
            let emu = server(true, &models, MODES[1]).await;
            let mean = mean_request_bytes(&spec, &emu.address()).await;
            if let Server::Embedded(e) = emu {
                e.shutdown().await;
            }
            println!(
                "floor of plain gRPC over shared memory: a bare loopback TCP transfer of the mean \
                 request ({:.0} kB) costs {:.3} ms of CPU",
                mean / 1e3,
                loopback_floor_ms(mean as usize, 5_000)
            );
            let rate = total_rate(&spec, opts.scale);
            println!(
                "floor of any request over loopback gRPC: a bare HTTP/2 exchange at the demo's \
                 {rate:.0} req/s, answered after 3 ms, costs {:.3} ms of CPU",
                h2_exchange_floor_ms(rate, seconds as f64, Duration::from_millis(3)).await
            );
        }
        if with_search {
            println!("largest scale factor of the demo's rates with every SLA met (embedded)");
            for mode in MODES {
                let emu = server(true, &models, mode).await;
                let k = search(&spec, &emu.address(), mode).await;
                println!("  {:<30} {k:>6.2}×", mode.label);
                if let Server::Embedded(e) = emu {
                    e.shutdown().await;
                }
            }
        }
    });
}
