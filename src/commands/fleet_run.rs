//! `perseus run` of a session with several targets: one engine per target through
//! [`crate::fleet`], one progress line, and a `perseus.run.v2` report.
//!
//! A target that fails (absent at the start, refusing its tenants, killed mid-run) never stops
//! the others: it is stopped once every other target has finished, its block reports what it
//! measured, and the exit code says that it failed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use crate::catalog::Catalog;
use crate::cli::{RunArgs, TargetArgs};
use crate::commands::hooks::{self, Files, recording_header};
use crate::commands::run::{
    CONNECT_TIMEOUT, Outputs, bind_metrics, check_outcome, progress_bar, setup_failed,
};
use crate::commands::signals::{StopSignals, stop_or_quit};
use crate::commands::target::{self, Target};
use crate::commands::{BadInput, Failure};
use crate::engine::EngineConfig;
use crate::fleet::{self, FleetHandle, Member};
use crate::report;
use crate::session::Config;
use crate::telemetry::GpuSummaryAcc;
use crate::vocab::command::Command;
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{ConnState, Phase, Snapshot};
use crate::vocab::spec::FleetSpec;

/// What the wiring already loaded.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub prices: &'a crate::cost::Prices,
    pub config: &'a Config,
}

/// A target flag given for a session whose targets are named in the file.
pub(crate) fn refuse_target_flags(args: &TargetArgs) -> Result<(), Failure> {
    let given = [
        ("--triton", args.triton.is_some()),
        ("--metrics", args.metrics.is_some()),
        ("--gpu", args.gpu.is_some()),
        ("--tls-ca", args.tls_ca.is_some()),
        ("--tls-cert", args.tls_cert.is_some()),
        ("--tls-key", args.tls_key.is_some()),
        ("--tls-domain", args.tls_domain.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(Failure::BadInput(anyhow!(
            "{flag} applies to a session with one target; this one names several [[target]] \
             tables (set each target's address in its table)"
        ))),
        None => Ok(()),
    }
}

/// Resolves every target (starting the embedded emulators), stopping those already started when
/// one cannot be.
pub(crate) async fn resolve_all(
    fleet: &FleetSpec,
    ctx: &Context<'_>,
) -> Result<Vec<(Target, crate::cost::ResolvedPrice)>, Failure> {
    let mut resolved: Vec<(Target, crate::cost::ResolvedPrice)> = Vec::new();
    for t in &fleet.targets {
        let outcome = async {
            let price = ctx.prices.resolve(&t.spec.cost).bad_input()?;
            let target =
                target::resolve(&t.spec, ctx.catalog, ctx.config.catalog_dir.as_deref()).await?;
            Ok::<_, Failure>((target, price))
        }
        .await;
        match outcome {
            Ok(pair) => resolved.push(pair),
            Err(e) => {
                for (target, _) in resolved {
                    target.shutdown().await;
                }
                return Err(e);
            }
        }
    }
    Ok(resolved)
}

/// One engine configuration per target.
pub(crate) fn members(
    fleet: &FleetSpec,
    resolved: &[(Target, crate::cost::ResolvedPrice)],
    headless: bool,
    record: bool,
) -> Vec<Member> {
    fleet
        .targets
        .iter()
        .zip(resolved)
        .map(|(t, (target, price))| Member {
            name: t.label().to_string(),
            cfg: EngineConfig {
                spec: t.spec.clone(),
                target: target.info.clone(),
                connect: target.connect.clone(),
                connections: 4,
                headless,
                price: Some(price.clone()),
                knowledge: Arc::clone(&target.knowledge),
                telemetry: hooks::start_telemetry(target),
                persistence: Arc::new(Files {
                    header: recording_header(&t.spec, &target.info),
                }),
                record,
            },
        })
        .collect()
}

pub async fn run(
    args: RunArgs,
    mut fleet: FleetSpec,
    ctx: Context<'_>,
    outputs: Outputs,
    signals: &mut StopSignals,
) -> Result<(), Failure> {
    refuse_target_flags(&args.target)?;
    if fleet.tenants().next().is_none() {
        return Err(Failure::BadInput(anyhow!(
            "{}: no tenants: a headless run needs at least one [[tenant]]",
            crate::session::printable(&args.session.display().to_string())
        )));
    }
    for t in &mut fleet.targets {
        if let Some(d) = args.duration {
            t.spec.duration = d;
        }
        if let Some(w) = args.warmup {
            t.spec.warmup = w;
        }
    }
    let metrics = bind_metrics(args.metrics_listen).await?;
    let resolved = resolve_all(&fleet, &ctx).await?;
    let result = measure(&fleet, &resolved, args.record, metrics, signals).await;
    for (target, _) in resolved {
        target.shutdown().await;
    }
    let measured = result?;
    let json = serde_json::to_string_pretty(&measured.result)
        .map(|j| j + "\n")
        .map_err(|e| Failure::Output(e.into()))?;
    let csv = report::fleet_csv(&measured.result).map_err(|e| Failure::Output(e.into()))?;
    outputs.write_texts(&json, &csv, &report::fleet_table(&measured.result))?;
    if let Some(signal) = measured.interrupted {
        return Err(Failure::Interrupted(signal));
    }
    let failed: Vec<String> = measured
        .result
        .targets
        .iter()
        .zip(&measured.last)
        .filter_map(|(t, snap)| {
            let why = measured.setup_errors.iter().find(|(n, _)| *n == t.name);
            match (why, check_outcome(snap)) {
                (Some((_, why)), _) => Some(format!("{}: {why}", t.name)),
                (None, Err(e)) => Some(format!("{}: {e}", t.name)),
                (None, Ok(())) => None,
            }
        })
        .collect();
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Failure::Target(anyhow!(
            "some targets failed: {}",
            failed.join("; ")
        ))),
    }
}

struct Measured {
    result: report::FleetResult,
    last: Vec<Arc<Snapshot>>,
    interrupted: Option<&'static str>,
    /// Targets stopped because their set-up failed, with the reason.
    setup_errors: Vec<(String, String)>,
    _exporter: Option<crate::exporter::Exporter>,
}

/// What the run loop keeps per target.
#[derive(Default)]
struct Follow {
    gpu: GpuSummaryAcc,
    last_seq: Option<u64>,
    stopped: bool,
}

async fn measure(
    fleet: &FleetSpec,
    resolved: &[(Target, crate::cost::ResolvedPrice)],
    record: bool,
    metrics: Option<crate::exporter::MetricsListener>,
    signals: &mut StopSignals,
) -> Result<Measured, Failure> {
    let handle = fleet::start(members(fleet, resolved, true, record))
        .map_err(|e| Failure::Target(e.into()))?;
    let exporter = metrics.map(|m| m.serve_targets(handle.named_snapshots()));
    let first = &fleet.targets[0].spec;
    let bar = progress_bar(first);
    let mut follow: Vec<Follow> = handle.names.iter().map(|_| Follow::default()).collect();
    let mut setup_errors = Vec::new();
    let started = tokio::time::Instant::now();
    let mut view = handle.view.clone();
    let mut interrupted = None;
    loop {
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(1), view.changed()) => {},
            signal = signals.next() => {
                stop_or_quit(signal, &mut interrupted, &bar);
                let _ = handle.commands.send(Command::Stop).await;
                continue;
            }
        };
        let now = Arc::clone(&view.borrow_and_update());
        let mut finished = 0;
        for (i, t) in now.targets.iter().enumerate() {
            let f = &mut follow[i];
            let snap = &t.snapshot;
            if snap.phase == Phase::Measuring && f.last_seq != Some(snap.seq) {
                f.gpu.push(&snap.gpu);
            }
            f.last_seq = Some(snap.seq);
            if snap.phase == Phase::Finished {
                finished += 1;
            } else if !f.stopped
                && let Some(why) = setup_failed(snap)
            {
                stop(&handle, i, f).await;
                setup_errors.push((t.name.clone(), format!("could not set up the run: {why}")));
            }
        }
        bar.set_position(progress(&now, first));
        bar.set_message(progress_message(&now));
        if finished == now.targets.len() {
            break;
        }
        stop_stragglers(&handle, &now, &mut follow, started.elapsed()).await;
    }
    bar.finish_and_clear();
    let gpus: Vec<_> = follow.into_iter().map(|f| f.gpu.finish()).collect();
    let last = handle
        .finish()
        .await
        .map_err(|e| Failure::Target(e.into()))?;
    let session = fleet.targets[0].spec.name.clone();
    let runs: Vec<(String, report::RunResult, &Snapshot)> = fleet
        .targets
        .iter()
        .zip(resolved)
        .zip(gpus)
        .zip(&last)
        .map(|(((t, (_, price)), gpu), snap)| {
            let run = report::run_result(snap, Some(gpu.into()), Some(price));
            (t.label().to_string(), run, &**snap)
        })
        .collect();
    let result = report::fleet_result(&session, runs);
    Ok(Measured {
        result,
        last,
        interrupted,
        setup_errors,
        _exporter: exporter,
    })
}

async fn stop(handle: &FleetHandle, i: usize, f: &mut Follow) {
    if let Some(engine) = handle.engines.get(i) {
        let _ = engine.send(Command::Stop).await;
    }
    f.stopped = true;
}

/// A target still connecting is stopped once every other target has finished (it would never
/// start measuring), or once the connect timeout passed with no target measuring at all.
async fn stop_stragglers(
    handle: &FleetHandle,
    view: &FleetView,
    follow: &mut [Follow],
    elapsed: Duration,
) {
    let connecting = |s: &Snapshot| s.phase == Phase::Connecting;
    let finished = |s: &Snapshot| s.phase == Phase::Finished;
    let others_done = view.targets.iter().any(|t| finished(&t.snapshot))
        && view
            .targets
            .iter()
            .all(|t| connecting(&t.snapshot) || finished(&t.snapshot));
    let none_started = view.targets.iter().all(|t| connecting(&t.snapshot));
    if !(others_done || (none_started && elapsed > CONNECT_TIMEOUT)) {
        return;
    }
    for (i, t) in view.targets.iter().enumerate() {
        if connecting(&t.snapshot) && !follow[i].stopped {
            stop(handle, i, &mut follow[i]).await;
        }
    }
}

/// The slowest target's progress: the run ends when it does.
fn progress(view: &FleetView, spec: &crate::vocab::spec::RunSpec) -> u64 {
    let warmup = spec.warmup.as_secs_f64();
    view.targets
        .iter()
        .map(|t| {
            let s = &t.snapshot;
            let warm = match s.phase {
                Phase::Connecting => 0.0,
                Phase::WarmingUp => s.elapsed_s.min(warmup),
                _ => warmup,
            };
            ((warm + s.measured_s) * 1000.0) as u64
        })
        .min()
        .unwrap_or(0)
}

fn progress_message(view: &FleetView) -> String {
    let targets: Vec<String> = view
        .targets
        .iter()
        .map(|t| {
            let s = &t.snapshot;
            let state = match (s.phase, s.connection.state) {
                (Phase::Finished, _) => "done".to_string(),
                (_, ConnState::Disconnected) => "DISCONNECTED".to_string(),
                (Phase::Connecting, _) => "connecting".to_string(),
                _ => {
                    let rate: f64 = s.tenants.iter().map(|x| x.window.achieved_per_s).sum();
                    format!("{rate:.0}/s")
                }
            };
            format!("{} {state}", t.name)
        })
        .collect();
    format!(
        "{} · fleet {:.0}/s ${:.2}/h",
        targets.join(" · "),
        view.line.throughput_per_s,
        view.line.usd_per_hour
    )
}
