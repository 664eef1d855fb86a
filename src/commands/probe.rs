//! `perseus probe`: each tenant's solo peak measured on a live server, the PERSEUS way.
//!
//! One tenant at a time runs alone through the real engine and load generator; the pure
//! [`PeakSearch`] decides the next rate from each measured window. Results are cached in the data
//! directory, keyed by server, model and configuration, and the dashboard shows them as *measured*.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::ProbeArgs;
use crate::commands::output;
use crate::commands::run::load_session;
use crate::commands::target::{self, Target};
use crate::commands::{BadInput, Failure, load_catalog, load_prices};
use crate::engine::hooks::{NoKnowledge, NoPersistence};
use crate::engine::{self, EngineConfig};
use crate::measure::{
    PeakCache, PeakConfig, PeakKey, PeakSearch, PeakSearchConfig, PeakStep, ProbeWindow,
};
use crate::session::{self, Config};
use crate::vocab::command::Command;
use crate::vocab::snapshot::{Percentiles, Phase, Snapshot, TargetKind};
use crate::vocab::spec::{Arrival, Load, RunSpec, TenantSpec};

/// The cache key of a tenant's solo peak on a server.
pub fn cache_key(server: &str, tenant: &TenantSpec) -> (PeakKey, PeakConfig) {
    let config = PeakConfig {
        batch: tenant.batch,
        instances: tenant.instances,
        dynamic_batching: tenant.dynamic_batching.clone(),
        sla: tenant.sla,
    };
    (PeakKey::new(server, &tenant.model, &config), config)
}

/// What the cache calls a server: its address, or the emulated GPU for the embedded emulator
/// (whose port changes every run).
pub fn server_id(target: &Target, spec: &RunSpec) -> String {
    match (&target.info.kind, &spec.target) {
        (TargetKind::Emulated, crate::vocab::spec::TargetSpec::Emulated { gpu, profile }) => {
            format!("embedded:{gpu}:{}", profile.as_deref().unwrap_or("default"))
        }
        _ => target.info.address.clone(),
    }
}

pub async fn probe(args: ProbeArgs, config: &Config) -> Result<(), Failure> {
    let catalog = load_catalog(config)?;
    let prices = load_prices(config)?;
    let mut spec = load_session(&args.session, &catalog, &prices, config)?;
    target::apply_target_args(&mut spec, &args.target)?;
    if args.window < Duration::from_millis(500) {
        return Err(Failure::BadInput(anyhow!(
            "--window must be at least 500ms, got {:?}",
            args.window
        )));
    }
    let dir = session::data_dir().bad_input()?.join("peaks");
    let mut cache = PeakCache::open(&dir).bad_input()?;
    let target = target::resolve(&spec, &catalog, config.catalog_dir.as_deref()).await?;
    let server = server_id(&target, &spec);
    output::print(&format!(
        "probing {} tenant(s) on {} ({} windows)\n",
        spec.tenants.len(),
        server,
        humantime::format_duration(args.window)
    ))?;
    let mut failure = None;
    for tenant in &spec.tenants {
        let (key, peak_config) = cache_key(&server, tenant);
        if !args.fresh
            && let Some(entry) = cache.get(&key)
        {
            output::print(&format!(
                "{:<16} {:>10} req/s   (cached, {})\n",
                tenant.model,
                entry
                    .peak_per_s
                    .map(|p| format!("{p:.1}"))
                    .unwrap_or_else(|| "none".into()),
                peak_config.canonical()
            ))?;
            continue;
        }
        match probe_one(&target, &spec, tenant, &args).await {
            Ok((peak, summary)) => {
                output::print(&format!(
                    "{:<16} {:>10} req/s   (measured: {summary})\n",
                    tenant.model,
                    peak.map(|p| format!("{p:.1}"))
                        .unwrap_or_else(|| "none".into())
                ))?;
                if let Err(e) = cache.insert(key, &peak_config, peak) {
                    output::stderr(&format!("warning: could not cache the result: {e}\n"));
                }
            }
            Err(e) => {
                failure = Some(e.context(format!("probing {}", tenant.model)));
                break;
            }
        }
    }
    target.shutdown().await;
    output::print(&format!("cache: {}\n", cache.path().display()))?;
    match failure {
        Some(e) => Err(Failure::Target(e)),
        None => Ok(()),
    }
}

async fn probe_one(
    target: &Target,
    spec: &RunSpec,
    tenant: &TenantSpec,
    args: &ProbeArgs,
) -> anyhow::Result<(Option<f64>, String)> {
    let search_cfg = PeakSearchConfig {
        start_per_s: args.start,
        ..PeakSearchConfig::default()
    };
    let mut search = PeakSearch::new(tenant.sla.latency_ms, search_cfg.clone());
    let mut alone = tenant.clone();
    alone.load = Load::Rate {
        per_s: search_cfg.start_per_s,
        arrival: Arrival::Poisson,
    };
    let mut run = spec.clone();
    run.tenants = vec![alone];
    run.window = args.window;
    let mut handle = engine::start(EngineConfig {
        spec: run.clone(),
        target: target.info.clone(),
        connect: target.connect.clone(),
        connections: 4,
        headless: false,
        price: None,
        knowledge: Arc::new(NoKnowledge),
        telemetry: Arc::new(crate::engine::hooks::NoTelemetry),
        persistence: Arc::new(NoPersistence),
        record: false,
    })?;
    let started = tokio::time::Instant::now();
    loop {
        let snap = Arc::clone(&handle.snapshots.borrow_and_update());
        // The run measures once its one tenant is set up (a server without ModelConfig leaves
        // the tenant's max batch unknown, so that cannot be the sign).
        if snap.phase == Phase::Measuring {
            break;
        }
        if let Some(why) = crate::commands::run::setup_failed(&snap) {
            let _ = handle.commands.send(Command::Stop).await;
            return Err(anyhow!("could not set up the tenant: {why}"));
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = handle.commands.send(Command::Stop).await;
            return Err(anyhow!(
                "could not start the tenant: {}",
                snap.notices
                    .last()
                    .map(|n| n.text.clone())
                    .or(snap.connection.last_error.clone())
                    .unwrap_or_else(|| "no answer".into())
            ));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), handle.snapshots.changed()).await;
    }
    let tick = run.tick;
    let mut current = f64::NAN;
    let outcome = loop {
        match search.next_step() {
            PeakStep::Done(outcome) => break outcome,
            PeakStep::Measure { per_s } => {
                if per_s != current {
                    if per_s < current {
                        // An overloaded rate leaves a queue behind; measuring the lower rate on top of
                        // it would judge the backlog, not the rate. Drain it first.
                        drain(&mut handle).await?;
                    }
                    handle
                        .commands
                        .send(Command::SetRate { tenant: 0, per_s })
                        .await?;
                    handle
                        .commands
                        .send(Command::Resume { tenant: None })
                        .await?;
                    current = per_s;
                }
                // A fresh, non-overlapping window at this rate (plus a tick for the switch).
                tokio::time::sleep(args.window + tick).await;
                let snap = Arc::clone(&handle.snapshots.borrow());
                let window = probe_window(&snap, tenant.sla.percentile)
                    .ok_or_else(|| anyhow!("the tenant vanished from the run"))?;
                if snap.connection.state != crate::vocab::snapshot::ConnState::Connected {
                    let _ = handle.commands.send(Command::Stop).await;
                    return Err(anyhow!(
                        "lost the server: {}",
                        snap.connection.last_error.clone().unwrap_or_default()
                    ));
                }
                search.observe(window);
            }
        }
    };
    let _ = handle.commands.send(Command::Stop).await;
    let _ = handle.done.await;
    let mut table = format!(
        "  {:>10} {:>10} {:>12} {:>8} {:>7}\n",
        "rate/s", "achieved", "latency ms", "windows", "verdict"
    );
    for step in &outcome.steps {
        table.push_str(&format!(
            "  {:>10.1} {:>10.1} {:>12.1} {:>8} {:>7}\n",
            step.rate_per_s,
            step.achieved_per_s,
            step.latency_ms,
            step.windows,
            if step.passed { "pass" } else { "fail" }
        ));
    }
    output::stdout(&table)?;
    let summary = format!("{:?} after {} rates", outcome.reason, outcome.steps.len());
    Ok((outcome.peak_per_s, summary))
}

/// Pauses the tenant until nothing of it is in flight (the caller resumes it).
async fn drain(handle: &mut crate::engine::EngineHandle) -> anyhow::Result<()> {
    handle
        .commands
        .send(Command::Pause { tenant: None })
        .await?;
    let started = tokio::time::Instant::now();
    loop {
        let idle = handle
            .snapshots
            .borrow_and_update()
            .tenants
            .first()
            .is_none_or(|t| t.window.in_flight == 0);
        if idle {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!("requests still in flight after 120 s of pause"));
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), handle.snapshots.changed()).await;
    }
}

fn probe_window(snap: &Snapshot, percentile: f64) -> Option<ProbeWindow> {
    let t = snap.tenants.first()?;
    Some(ProbeWindow {
        offered_per_s: t.window.offered_per_s,
        achieved_per_s: t.window.achieved_per_s,
        latency_ms: at_percentile(&t.window.latency_ms, percentile),
        errors: t.window.errors,
        dropped: t.window.dropped,
    })
}

/// The summary percentile at or just above the SLA's.
fn at_percentile(p: &Percentiles, percentile: f64) -> f64 {
    match percentile {
        x if x <= 50.0 => p.p50,
        x if x <= 90.0 => p.p90,
        x if x <= 95.0 => p.p95,
        x if x <= 99.0 => p.p99,
        _ => p.max,
    }
}
