//! `perseus` / `perseus tui` and `perseus replay`: the dashboard, live or from a recording.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use tokio::sync::{mpsc, watch};

use crate::cli::{ReplayArgs, TuiArgs};
use crate::commands::fleet_run::{Context, members, refuse_target_flags, resolve_all};
use crate::commands::hooks::{self, Files, recording_header};
use crate::commands::run::{bind_metrics, load_fleet};
use crate::commands::target;
use crate::commands::{BadInput, Failure, load_catalog, load_prices};
use crate::engine::{self, EngineConfig};
use crate::fleet;
use crate::session::{self, Config};
use crate::tui::{Control, TuiOptions};
use crate::vocab::command::Command;
use crate::vocab::spec::FleetSpec;

pub async fn run(args: TuiArgs, config: &Config) -> Result<(), Failure> {
    let catalog = load_catalog(config)?;
    let prices = load_prices(config)?;
    let mut spec = match &args.session {
        Some(path) => {
            let mut fleet = load_fleet(path, &catalog, &prices, config)?;
            if fleet.is_fleet() {
                let ctx = Context {
                    catalog: &catalog,
                    prices: &prices,
                    config,
                };
                return run_fleet(args, fleet, ctx).await;
            }
            match fleet.targets.pop() {
                Some(only) => only.spec,
                None => return Err(Failure::BadInput(anyhow!("the session has no target"))),
            }
        }
        None => session::parse_session(
            session::DEMO_SESSION,
            std::path::Path::new("sessions/demo.toml"),
            &hooks::CatalogLookup {
                catalog: &catalog,
                prices: &prices,
                tick: crate::commands::run::config_tick(config),
            },
        )
        .map_err(|e| Failure::BadInput(anyhow!("the built-in demo session: {e}")))?,
    };
    target::apply_target_args(&mut spec, &args.target)?;
    let price = prices.resolve(&spec.cost).bad_input()?;
    let metrics = bind_metrics(args.metrics_listen).await?;
    let target = target::resolve(&spec, &catalog, config.catalog_dir.as_deref()).await?;
    let telemetry = hooks::start_telemetry(&target);
    let handle = engine::start(EngineConfig {
        spec: spec.clone(),
        target: target.info.clone(),
        connect: target.connect.clone(),
        connections: 4,
        headless: false,
        price: Some(price),
        knowledge: Arc::clone(&target.knowledge),
        telemetry,
        persistence: Arc::new(Files {
            header: recording_header(&spec, &target.info),
        }),
        record: args.record,
    })
    .map_err(|e| Failure::Target(e.into()))?;
    let exporter = metrics.map(|m| m.serve(handle.snapshots.clone()));
    let commands = handle.commands.clone();
    let shown = crate::tui::run(
        tui_options(args.theme, config),
        handle.snapshots.clone(),
        Control::Live(handle.commands.clone()),
    )
    .await;
    let _ = commands.send(Command::Stop).await;
    let _ = handle.done.await;
    if let Some(exporter) = exporter {
        exporter.shutdown().await;
    }
    target.shutdown().await;
    shown.map_err(|e| Failure::Target(anyhow::Error::new(e).context("the dashboard failed")))
}

/// The dashboard of a session with several targets: one engine per target, as `perseus run`
/// starts them, shown as one fleet.
async fn run_fleet(args: TuiArgs, fleet: FleetSpec, ctx: Context<'_>) -> Result<(), Failure> {
    refuse_target_flags(&args.target)?;
    let metrics = bind_metrics(args.metrics_listen).await?;
    let resolved = resolve_all(&fleet, &ctx).await?;
    let started = fleet::start(members(&fleet, &resolved, false, args.record))
        .map_err(|e| Failure::Target(e.into()));
    let shown = match started {
        Ok(handle) => {
            let exporter = metrics.map(|m| m.serve_targets(handle.named_snapshots()));
            let control = Control::Fleet {
                router: handle.commands.clone(),
                engines: handle.engines.clone(),
            };
            let shown = crate::tui::run_fleet(
                tui_options(args.theme, ctx.config),
                handle.view.clone(),
                control,
            )
            .await;
            let _ = handle.commands.send(Command::Stop).await;
            let _ = handle.finish().await;
            if let Some(exporter) = exporter {
                exporter.shutdown().await;
            }
            Ok(shown)
        }
        Err(e) => Err(e),
    };
    for (target, _) in resolved {
        target.shutdown().await;
    }
    shown?.map_err(|e| Failure::Target(anyhow::Error::new(e).context("the dashboard failed")))
}

pub async fn replay(args: ReplayArgs, config: &Config) -> Result<(), Failure> {
    let mut rec = session::RecordingIndex::open(&args.recording)
        .context("reading the recording")
        .bad_input()?;
    if rec.is_empty() {
        return Err(Failure::BadInput(anyhow!(
            "{} holds no snapshots{}",
            args.recording.display(),
            rec.damage()
                .map(|d| format!(" (damaged, {})", session::printable(&d.to_string())))
                .unwrap_or_default()
        )));
    }
    let first = Arc::new(rec.load(0).context("reading the recording").bad_input()?);
    let (tx, rx) = watch::channel(first);
    let (ctrl_tx, ctrl_rx) = mpsc::channel(16);
    let player = tokio::spawn(session::replay(rec, tx, ctrl_rx));
    let shown = crate::tui::run(
        tui_options(args.theme, config),
        rx,
        Control::Replay(ctrl_tx),
    )
    .await;
    player.abort();
    shown.map_err(|e| Failure::Target(anyhow::Error::new(e).context("the dashboard failed")))
}

fn tui_options(theme: Option<String>, config: &Config) -> TuiOptions {
    let theme_dirs: Vec<PathBuf> = session::default_config_path()
        .and_then(|p| p.parent().map(|d| vec![d.join("themes")]))
        .unwrap_or_default();
    TuiOptions {
        theme: theme.unwrap_or_else(|| config.theme.clone()),
        render_fps: config.render_fps,
        key_overrides: config.keys.clone(),
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        theme_dirs,
    }
}
