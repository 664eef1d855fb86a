//! Wiring: turns a parsed command line into a running emulator, engine and front end.
//!
//! This is the one place that knows both the client side and the emulator (DESIGN §1), and the only
//! library module that uses `anyhow`: everything below it has typed errors.

mod emulate;
mod hooks;
mod probe;
mod run;
mod target;
mod tui;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::catalog::Catalog;
use crate::cli::{Cli, Command, TuiArgs};
use crate::session::{self, Config};

/// How a command failed, which decides the exit code (DESIGN §2).
#[derive(Debug)]
pub enum Failure {
    /// The session file, a flag or a value was wrong: exit 2.
    BadInput(anyhow::Error),
    /// The target failed (unreachable, refused, died): exit 1.
    Target(anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::BadInput(_) => ExitCode::from(2),
            Failure::Target(_) => ExitCode::from(1),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadInput(e) | Failure::Target(e) => write!(f, "{e:#}"),
        }
    }
}

pub(crate) trait BadInput<T> {
    fn bad_input(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> BadInput<T> for Result<T, E> {
    fn bad_input(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::BadInput(e.into()))
    }
}

pub(crate) trait TargetFailed<T> {
    fn target_failed(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> TargetFailed<T> for Result<T, E> {
    fn target_failed(self) -> Result<T, Failure> {
        self.map_err(|e| Failure::Target(e.into()))
    }
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("perseus")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            failure.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let (config, _) = Config::load().bad_input()?;
    let _log = init_logging();
    match cli.command {
        None => tui::run(TuiArgs::default(), &config).await,
        Some(Command::Tui(args)) => tui::run(args, &config).await,
        Some(Command::Run(args)) => run::run(args, &config).await,
        Some(Command::Emulate(args)) => emulate::emulate(args, &config).await,
        Some(Command::Probe(args)) => probe::probe(args, &config).await,
        Some(Command::Replay(args)) => tui::replay(args, &config).await,
        Some(Command::Export(args)) => export(&args.recording, &args.csv),
        Some(Command::Catalog(_)) => {
            let catalog = load_catalog(&config)?;
            let prices = load_prices(&config)?;
            print!("{}", catalog.render_text());
            println!();
            print!("{}", prices.render_text());
            Ok(())
        }
    }
}

pub(crate) fn load_catalog(config: &Config) -> Result<Catalog, Failure> {
    Catalog::load(config.catalog_dir.as_deref())
        .context("loading the model and GPU catalog")
        .bad_input()
}

pub(crate) fn load_prices(config: &Config) -> Result<crate::cost::Prices, Failure> {
    crate::cost::Prices::load(config.prices.as_deref())
        .context("loading the price catalog")
        .bad_input()
}

fn export(recording: &Path, csv: &Path) -> Result<(), Failure> {
    let rec = session::read_recording(recording)
        .with_context(|| format!("reading {}", recording.display()))
        .bad_input()?;
    if let Some(damage) = &rec.damage {
        eprintln!(
            "warning: {} is damaged at line {}: {}; exporting the {} snapshots before it",
            recording.display(),
            damage.line,
            damage.message,
            rec.snapshots.len()
        );
    }
    if csv == Path::new("-") {
        let stdout = std::io::stdout();
        session::export_csv(&rec, &mut stdout.lock())
            .context("writing CSV to stdout")
            .bad_input()?;
    } else {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(csv)
                .with_context(|| format!("creating {}", csv.display()))
                .bad_input()?,
        );
        session::export_csv(&rec, &mut out)
            .with_context(|| format!("writing {}", csv.display()))
            .bad_input()?;
        std::io::Write::flush(&mut out)
            .with_context(|| format!("writing {}", csv.display()))
            .bad_input()?;
        eprintln!("wrote {} ({} ticks)", csv.display(), rec.snapshots.len());
    }
    Ok(())
}

/// Logs go to a file in the data directory: the TUI owns the terminal.
fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir: PathBuf = session::data_dir().ok()?.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = tracing_appender::rolling::daily(dir, "perseus.log");
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_env("PERSEUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init()
        .ok()?;
    Some(guard)
}
