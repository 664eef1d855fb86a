//! `perseus plan`: the session's tenants placed onto priced GPUs, verified in virtual time, with the
//! ranked table on stdout, a progress bar on stderr, `--json` and `--write` session files.

use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::PlanArgs;
use crate::commands::output::{self, Sink};
use crate::commands::run::load_session;
use crate::commands::{BadInput, Failure, describe, load_catalog, load_prices};
use crate::emulator::sim::GapSource;
use crate::loadgen::ArrivalProcess;
use crate::plan::{self, ArrivalSource, PlanInput};
use crate::session::Config;
use crate::vocab::spec::Arrival;

/// The load generator's arrival processes, so a plan sees the arrivals a run would send.
struct LoadgenArrivals;

impl ArrivalSource for LoadgenArrivals {
    fn gaps(&self, arrival: &Arrival, per_s: f64, seed: u64) -> GapSource<'static> {
        let mut process = ArrivalProcess::new(arrival, per_s, seed);
        Box::new(move || process.next_gap().as_secs_f64())
    }
}

/// The planner's stages on an indicatif bar: a bar when the steps are known, a count otherwise.
struct Bar(ProgressBar);

impl plan::Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        let template = if total > 0 {
            "{spinner} [{bar:30}] {pos}/{len} {msg}"
        } else {
            "{spinner} {msg}: {pos} virtual-time runs"
        };
        self.0.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_message(name.to_string());
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
}

pub async fn plan(args: PlanArgs, config: &Config) -> Result<(), Failure> {
    let json = args.json.as_deref().map(Sink::from_arg);
    if let Some(sink) = &json {
        sink.check("--json")?;
    }
    let catalog = load_catalog(config)?;
    let prices = load_prices(config)?;
    let spec = load_session(&args.session, &catalog, &prices, config)?;
    let text = std::fs::read_to_string(&args.session)
        .with_context(|| format!("reading {}", args.session.display()))
        .bad_input()?;
    plan::tenants_without_sla(&text, &args.session).bad_input()?;
    let gpus = plan::gpu_options(
        &catalog,
        &prices,
        args.gpus.as_deref(),
        args.prices.as_deref(),
    )
    .bad_input()?;
    let input = PlanInput::new(
        spec,
        gpus,
        args.headroom.unwrap_or(plan::DEFAULT_HEADROOM),
        args.seed.unwrap_or(plan::DEFAULT_SEED),
    )
    .bad_input()?;
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    let progress = Bar(bar.clone());
    let (report, input) = tokio::task::spawn_blocking(move || {
        let report = plan::plan(&input, &catalog, Arc::new(LoadgenArrivals), &progress);
        (report, input)
    })
    .await
    .map_err(|e| Failure::Target(anyhow!("planning stopped unexpectedly: {e}")))?;
    bar.finish_and_clear();
    let report = report.bad_input()?;
    write_outputs(&args, json.as_ref(), &report, &input)
}

/// Session files and the JSON file first, then stdout, each attempted whatever happened to the
/// others, so one failed output never costs the rest.
fn write_outputs(
    args: &PlanArgs,
    json: Option<&Sink>,
    report: &plan::PlanReport,
    input: &PlanInput,
) -> Result<(), Failure> {
    let mut failed = Vec::new();
    if let Some(dir) = &args.write {
        match plan::write_sessions(report, input, dir) {
            Ok(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                output::stderr(&format!(
                    "wrote {} session file(s): {}\n",
                    names.len(),
                    names.join(", ")
                ));
            }
            Err(e) => failed.push(format!("--write {}: {e}", dir.display())),
        }
    }
    let text = serde_json::to_string_pretty(report)
        .map(|j| j + "\n")
        .map_err(|e| Failure::Output(e.into()))?;
    if let Some(sink) = json.filter(|s| !s.is_stdout())
        && let Err(e) = sink.write(&text)
    {
        failed.push(describe(&e));
    }
    let table = plan::render_table(report);
    if json.is_some_and(Sink::is_stdout) {
        output::stderr(&table);
        if let Err(e) = output::stdout(&text) {
            failed.push(describe(&e));
        }
    } else if let Err(e) = output::stdout(&table) {
        failed.push(describe(&e));
    }
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Failure::Output(anyhow!(failed.join("; ")))),
    }
}
