//! `perseus run`: the headless measurement, like perf_analyzer but for several tenants at once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::catalog::Catalog;
use crate::cli::RunArgs;
use crate::commands::hooks::{self, Files, recording_header};
use crate::commands::output::{self, Sink};
use crate::commands::signals::{StopSignals, stop_or_quit};
use crate::commands::target::{self, Target};
use crate::commands::{BadInput, Failure, describe, load_catalog, load_prices};
use crate::engine::{self, EngineConfig};
use crate::exporter::{Exporter, MetricsListener};
use crate::report;
use crate::session::{self, Config};
use crate::telemetry::GpuSummaryAcc;
use crate::vocab::command::Command;
use crate::vocab::snapshot::{ConnState, Phase, Snapshot};
use crate::vocab::spec::{FleetSpec, RunSpec};

/// How long a headless run waits for its target before giving up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn run(args: RunArgs, config: &Config) -> Result<(), Failure> {
    // First, so that a signal from here on stops the run instead of killing it unreported.
    let mut signals = StopSignals::install()?;
    let outputs = Outputs::from_args(&args)?;
    let catalog = load_catalog(config)?;
    let prices = load_prices(config)?;
    let mut fleet = load_fleet(&args.session, &catalog, &prices, config)?;
    if fleet.is_fleet() {
        let ctx = super::fleet_run::Context {
            catalog: &catalog,
            prices: &prices,
            config,
        };
        return super::fleet_run::run(args, fleet, ctx, outputs, &mut signals).await;
    }
    let Some(only) = fleet.targets.pop() else {
        return Err(Failure::BadInput(anyhow!("the session has no target")));
    };
    let label = only.label().to_string();
    let mut spec = only.spec;
    if spec.tenants.is_empty() {
        return Err(Failure::BadInput(anyhow!(
            "{}: no tenants: a headless run needs at least one [[tenant]]",
            session::printable(&args.session.display().to_string())
        )));
    }
    target::apply_target_args(&mut spec, &args.target)?;
    if let Some(d) = args.duration {
        spec.duration = d;
    }
    if let Some(w) = args.warmup {
        spec.warmup = w;
    }
    let price = prices.resolve(&spec.cost).bad_input()?;
    let metrics = bind_metrics(args.metrics_listen).await?;
    let target = target::resolve(&spec, &catalog, config.catalog_dir.as_deref()).await?;
    let result = measure(
        &spec,
        &target,
        price,
        args.record,
        metrics.map(|m| (label, m)),
        &mut signals,
    )
    .await;
    target.shutdown().await;
    let measured = result?;
    outputs.write(&measured.result)?;
    match measured.interrupted {
        Some(signal) => Err(Failure::Interrupted(signal)),
        None => check_outcome(&measured.last),
    }
}

/// The `--json` and `--csv` destinations, checked before the run.
pub(crate) struct Outputs {
    json: Option<Sink>,
    csv: Option<Sink>,
}

impl Outputs {
    fn from_args(args: &RunArgs) -> Result<Outputs, Failure> {
        let json = args.json.as_deref().map(Sink::from_arg);
        let csv = args.csv.as_deref().map(Sink::from_arg);
        if json.as_ref().is_some_and(Sink::is_stdout) && csv.as_ref().is_some_and(Sink::is_stdout) {
            return Err(Failure::BadInput(anyhow!(
                "--json - and --csv - would both go to stdout; send one of them to a file"
            )));
        }
        for (flag, sink) in [("--json", &json), ("--csv", &csv)] {
            if let Some(sink) = sink {
                sink.check(flag)?;
            }
        }
        Ok(Outputs { json, csv })
    }

    /// Files first, then stdout, each attempted whatever happened to the others; the summary
    /// goes to stderr when stdout carries a result.
    fn write(&self, result: &report::RunResult) -> Result<(), Failure> {
        let json = serde_json::to_string_pretty(result)
            .map(|j| j + "\n")
            .map_err(|e| Failure::Output(e.into()))?;
        let csv = report::csv(result).map_err(|e| Failure::Output(e.into()))?;
        self.write_texts(&json, &csv, &report::table(result))
    }

    /// Writes the JSON, CSV and summary texts where they go.
    pub(crate) fn write_texts(&self, json: &str, csv: &str, table: &str) -> Result<(), Failure> {
        let sinks: Vec<(&Sink, &str)> = [(&self.json, json), (&self.csv, csv)]
            .into_iter()
            .filter_map(|(sink, text)| sink.as_ref().map(|s| (s, text)))
            .collect();
        let mut failed = Vec::new();
        for (sink, text) in sinks.iter().filter(|(s, _)| !s.is_stdout()) {
            if let Err(e) = sink.write(text) {
                failed.push(describe(&e));
            }
        }
        if sinks.iter().any(|(s, _)| s.is_stdout()) {
            output::stderr(table);
        } else if let Err(e) = output::stdout(table) {
            failed.push(describe(&e));
        }
        for (sink, text) in sinks.iter().filter(|(s, _)| s.is_stdout()) {
            if let Err(e) = sink.write(text) {
                failed.push(describe(&e));
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(Failure::Output(anyhow!(failed.join("; ")))),
        }
    }
}

/// Loads and validates a session file against the catalog's models.
/// The config file's tick is the default for a session that sets none.
pub fn load_session(
    path: &Path,
    catalog: &Catalog,
    prices: &crate::cost::Prices,
    config: &Config,
) -> Result<RunSpec, Failure> {
    let lookup = hooks::CatalogLookup {
        catalog,
        prices,
        tick: config_tick(config),
    };
    session::load_session(path, &lookup).map_err(|e| Failure::BadInput(anyhow!("{e}")))
}

/// Loads and validates a session file with all its targets; see [`load_session`].
pub fn load_fleet(
    path: &Path,
    catalog: &Catalog,
    prices: &crate::cost::Prices,
    config: &Config,
) -> Result<FleetSpec, Failure> {
    let lookup = hooks::CatalogLookup {
        catalog,
        prices,
        tick: config_tick(config),
    };
    session::load_fleet_session(path, &lookup).map_err(|e| Failure::BadInput(anyhow!("{e}")))
}

/// The tick a config file sets, where it differs from the built-in default.
pub fn config_tick(config: &Config) -> Option<Duration> {
    (config.tick != RunSpec::DEFAULT_TICK).then_some(config.tick)
}

/// What a run measured, and the signal that cut it short, if one did.
struct Measured {
    result: report::RunResult,
    last: Arc<Snapshot>,
    interrupted: Option<&'static str>,
    /// Serves the final figures until the run's outputs are written.
    _exporter: Option<Exporter>,
}

/// Binds `--metrics-listen` before anything runs, so that an unusable address is bad input, and
/// says where the figures are served.
pub(crate) async fn bind_metrics(
    addr: Option<SocketAddr>,
) -> Result<Option<MetricsListener>, Failure> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let listener = MetricsListener::bind(addr).await.bad_input()?;
    output::stderr(&format!("metrics  {}\n", listener.url()));
    tracing::info!("serving Prometheus metrics at {}", listener.url());
    Ok(Some(listener))
}

async fn measure(
    spec: &RunSpec,
    target: &Target,
    price: crate::cost::ResolvedPrice,
    record: bool,
    metrics: Option<(String, MetricsListener)>,
    signals: &mut StopSignals,
) -> Result<Measured, Failure> {
    let telemetry = hooks::start_telemetry(target);
    let handle = engine::start(EngineConfig {
        spec: spec.clone(),
        target: target.info.clone(),
        connect: target.connect.clone(),
        connections: 4,
        headless: true,
        price: Some(price.clone()),
        knowledge: Arc::clone(&target.knowledge),
        telemetry: telemetry.clone(),
        persistence: Arc::new(Files {
            header: recording_header(spec, &target.info),
        }),
        record,
    })
    .map_err(|e| Failure::Target(e.into()))?;
    let exporter =
        metrics.map(|(label, m)| m.serve_targets(vec![(label, handle.snapshots.clone())]));

    let bar = progress_bar(spec);
    let mut snapshots = handle.snapshots.clone();
    let mut gpu = GpuSummaryAcc::default();
    let started = tokio::time::Instant::now();
    let commands = handle.commands.clone();
    let mut interrupted = None;
    loop {
        let changed = tokio::select! {
            changed = tokio::time::timeout(Duration::from_secs(1), snapshots.changed()) => changed,
            signal = signals.next() => {
                stop_or_quit(signal, &mut interrupted, &bar);
                let _ = commands.send(Command::Stop).await;
                continue;
            }
        };
        let snap = Arc::clone(&snapshots.borrow_and_update());
        if snap.phase == Phase::Measuring {
            gpu.push(&snap.gpu);
        }
        bar.set_position(progress_ms(&snap, spec));
        bar.set_message(progress_message(&snap));
        if snap.phase == Phase::Finished || matches!(changed, Ok(Err(_))) {
            break;
        }
        if interrupted.is_none()
            && let Some(why) = setup_failed(&snap)
        {
            let _ = commands.send(Command::Stop).await;
            bar.finish_and_clear();
            return Err(Failure::Target(anyhow!(
                "could not set up the run on {}: {why}",
                snap.target.address
            )));
        }
        if interrupted.is_none()
            && snap.phase == Phase::Connecting
            && started.elapsed() > CONNECT_TIMEOUT
        {
            let _ = commands.send(Command::Stop).await;
            bar.finish_and_clear();
            let why = snap
                .connection
                .last_error
                .clone()
                .or_else(|| snap.notices.last().map(|n| n.text.clone()))
                .unwrap_or_else(|| "no answer".into());
            return Err(Failure::Target(anyhow!(
                "could not set up the run on {} within {}s: {why}",
                snap.target.address,
                CONNECT_TIMEOUT.as_secs()
            )));
        }
    }
    bar.finish_and_clear();
    let last = handle
        .done
        .await
        .map_err(|e| Failure::Target(anyhow!("the engine stopped unexpectedly: {e}")))?;
    let mut result = report::run_result(&last, Some(gpu.finish().into()), Some(&price));
    if let Some(url) = &target.metrics_url {
        add_server_latency(&mut result, url).await;
    }
    Ok(Measured {
        result,
        last,
        interrupted,
        _exporter: exporter,
    })
}

/// Each tenant's model's server-side latency quantiles, read once from the server's request
/// summary as the run ends. A server without summaries (Triton's default) or an unreachable
/// endpoint leaves the field out: the rest of the result stands.
async fn add_server_latency(result: &mut report::RunResult, url: &str) {
    match crate::telemetry::fetch_request_summaries(url, Duration::from_secs(2)).await {
        Ok(models) => {
            for t in &mut result.tenants {
                t.server_latency_ms = models
                    .get(&t.model)
                    .and_then(|points| report::ServerLatency::from_points(points));
            }
            result.fill_client_tails();
        }
        Err(e) => tracing::debug!("no server latency summaries from {url}: {e}"),
    }
}

/// Every tenant's set-up came back refused by a server that is up: waiting longer would only
/// delay the answer, so this is reported as soon as it is known. The reasons, one per tenant.
pub(crate) fn setup_failed(snap: &Snapshot) -> Option<String> {
    if snap.phase != Phase::Connecting
        || snap.connection.state != ConnState::Connected
        || snap.tenants.is_empty()
    {
        return None;
    }
    let errors: Option<Vec<&str>> = snap
        .tenants
        .iter()
        .map(|t| t.setup_error.as_deref())
        .collect();
    errors.map(|e| e.join("; "))
}

pub(crate) fn progress_bar(spec: &RunSpec) -> ProgressBar {
    let total = spec.warmup + spec.duration;
    let bar = ProgressBar::with_draw_target(
        Some(total.as_millis() as u64),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn progress_ms(snap: &Snapshot, spec: &RunSpec) -> u64 {
    let warm = match snap.phase {
        Phase::Connecting => 0.0,
        Phase::WarmingUp => snap.elapsed_s.min(spec.warmup.as_secs_f64()),
        _ => spec.warmup.as_secs_f64(),
    };
    ((warm + snap.measured_s) * 1000.0) as u64
}

fn progress_message(snap: &Snapshot) -> String {
    let phase = match snap.phase {
        Phase::Connecting => "connecting",
        Phase::WarmingUp => "warming up",
        Phase::Measuring => "measuring",
        Phase::Finished => "done",
    };
    let conn = match snap.connection.state {
        ConnState::Disconnected => format!(
            " DISCONNECTED ({})",
            snap.connection.last_error.as_deref().unwrap_or("")
        ),
        _ => String::new(),
    };
    let rates: Vec<String> = snap
        .tenants
        .iter()
        .map(|t| {
            let p99 = if t.window.achieved_per_s > 0.0 {
                format!("{:.1}ms", t.window.latency_ms.p99)
            } else {
                "–".into()
            };
            format!("{} {:.0}/s p99 {p99}", t.model, t.window.achieved_per_s)
        })
        .collect();
    // The progress line says so as soon as the generator falls behind, not only at the end.
    let client = match &snap.client.window {
        Some(flag) => format!(" · ⚠ {}", flag.short()),
        None => String::new(),
    };
    // And as soon as the target saturates: those drops are the server's, not the client's.
    let saturated: String = snap
        .tenants
        .iter()
        .filter_map(|t| {
            let s = t.window.saturated.as_ref().filter(|_| !t.paused)?;
            Some(format!(" · ⚠ {}: {}", t.model, s.short()))
        })
        .collect();
    format!("{phase}{conn}{client}{saturated} · {}", rates.join(" · "))
}

/// A run whose tenants got nothing through failed on the target's side; one whose recording
/// failed is incomplete.
pub(crate) fn check_outcome(snap: &Snapshot) -> Result<(), Failure> {
    if let Some(why) = &snap.recording_error {
        return Err(Failure::Target(anyhow!("{why}")));
    }
    let dead: Vec<&str> = snap
        .tenants
        .iter()
        .filter(|t| t.totals.ok == 0)
        .map(|t| t.model.as_str())
        .collect();
    if snap.tenants.is_empty() || !dead.is_empty() {
        let why = snap
            .notices
            .iter()
            .rev()
            .find(|n| n.level == crate::vocab::snapshot::NoticeLevel::Error)
            .map(|n| n.text.clone())
            .unwrap_or_else(|| "no successful requests".into());
        return Err(Failure::Target(anyhow!(
            "no request succeeded for {}: {why}",
            if dead.is_empty() {
                "any tenant".to_string()
            } else {
                dead.join(", ")
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::snapshot::{
        Connection, GpuView, History, SoloPeak, TargetInfo, TargetKind, TenantView, Totals,
        WindowStats,
    };
    use crate::vocab::spec::{Load, Sla};

    fn finished(ok: u64, recording_error: Option<&str>) -> Snapshot {
        Snapshot {
            seq: 1,
            elapsed_s: 1.0,
            measured_s: 1.0,
            phase: Phase::Finished,
            session: "s".into(),
            target: TargetInfo {
                kind: TargetKind::Emulated,
                address: "127.0.0.1:1".into(),
                gpu: None,
                server_version: None,
                model_control: true,
            },
            connection: Connection {
                state: ConnState::Connected,
                last_error: None,
                retries: 0,
            },
            paused: false,
            window_s: 1.0,
            tick_s: 0.25,
            tenants: vec![TenantView {
                id: 0,
                model: "simple".into(),
                load: Load::Concurrency(1),
                paused: false,
                batch: 1,
                sla: Sla {
                    latency_ms: 10.0,
                    percentile: 95.0,
                },
                instances: None,
                dynamic_batching: None,
                max_batch: None,
                window: WindowStats::default(),
                totals: Totals {
                    sent: ok,
                    ok,
                    ..Totals::default()
                },
                server: None,
                solo_peak: SoloPeak::UNKNOWN,
                setup_error: None,
            }],
            gpu: GpuView::default(),
            cost: None,
            frontier: None,
            capacity: None,
            whatif: None,
            notices: Vec::new(),
            recording: None,
            recording_error: recording_error.map(str::to_string),
            replay: None,
            client: Default::default(),
            repository: Vec::new(),
            history: Arc::new(History::default()),
        }
    }

    #[test]
    fn a_failed_recording_fails_the_run_with_its_message() {
        assert!(check_outcome(&finished(10, None)).is_ok());
        let why = "recording stopped: run.jsonl: No space left on device (os error 28)";
        match check_outcome(&finished(10, Some(why))) {
            Err(Failure::Target(e)) => assert_eq!(e.to_string(), why),
            other => panic!("expected a target failure, got {other:?}"),
        }
        assert!(check_outcome(&finished(0, None)).is_err());
    }
}
