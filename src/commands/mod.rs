//! Wiring: turns a parsed command line into a running emulator, engine and front end.
//!
//! This is the one place that knows both the client side and the emulator (DESIGN §1), and the only
//! library module that uses `anyhow`: everything below it has typed errors.

mod capacity;
mod completions;
mod emulate;
mod fleet_run;
mod hooks;
mod output;
mod plan;
mod predict;
mod probe;
mod run;
mod signals;
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
    /// Results could not be written (full disk, closed pipe): exit 1, after every other output
    /// was written.
    Output(anyhow::Error),
    /// A signal stopped the run after what it measured was reported: exit 130, as shells report
    /// a process ended by SIGINT.
    Interrupted(&'static str),
}

impl Failure {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Failure::BadInput(_) => ExitCode::from(2),
            Failure::Target(_) | Failure::Output(_) => ExitCode::from(1),
            Failure::Interrupted(_) => ExitCode::from(130),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadInput(e) | Failure::Target(e) | Failure::Output(e) => {
                f.write_str(&session::printable(&describe(e)))
            }
            Failure::Interrupted(signal) => write!(f, "interrupted by {signal}"),
        }
    }
}

/// An error and its causes on one line, each cause once.
///
/// Most error types here and in our dependencies put their source's text in their own message
/// *and* return it as `source()`, so a plain walk of the chain says everything twice; a cause
/// whose text is already in the line is left out.
pub fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
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
            output::stderr(&format!("error: cannot start the async runtime: {e}\n"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Interrupted(_) => output::stderr(&format!("{failure}\n")),
                _ => output::stderr(&format!("error: {failure}\n")),
            }
            failure.exit_code()
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    // Needs neither the config nor logs: it must work while setting up a broken install.
    if let Some(Command::Completions(args)) = &cli.command {
        return completions::completions(args.shell);
    }
    let (config, _) = Config::load().bad_input()?;
    let _log = init_logging();
    match cli.command {
        None => tui::run(TuiArgs::default(), &config).await,
        Some(Command::Tui(args)) => tui::run(args, &config).await,
        Some(Command::Run(args)) => run::run(args, &config).await,
        Some(Command::Emulate(args)) => emulate::emulate(args, &config).await,
        Some(Command::Probe(args)) => probe::probe(args, &config).await,
        Some(Command::Predict(args)) => predict::predict(args, &config).await,
        Some(Command::Plan(args)) => plan::plan(args, &config).await,
        Some(Command::Replay(args)) => tui::replay(args, &config).await,
        Some(Command::Export(args)) => export(&args.recording, &args.csv),
        Some(Command::Completions(args)) => completions::completions(args.shell),
        Some(Command::Catalog(_)) => {
            let catalog = load_catalog(&config)?;
            let prices = load_prices(&config)?;
            output::print(&format!(
                "{}\n{}",
                catalog.render_text(),
                prices.render_text()
            ))
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
    let sink = output::Sink::from_arg(csv);
    sink.check("--csv")?;
    let mut reader = session::RecordingReader::open(recording)
        .context("reading the recording")
        .bad_input()?;
    let mut ticks = 0usize;
    let snapshots = reader.by_ref().inspect(|_| ticks += 1);
    match &sink {
        output::Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            session::export_csv(snapshots, &mut out)
                .and_then(|_| std::io::Write::flush(&mut out))
                .context("cannot write CSV to stdout")
                .map_err(Failure::Output)?;
        }
        output::Sink::File(path) => {
            let written = std::fs::File::create(path).and_then(|file| {
                let mut out = std::io::BufWriter::new(file);
                session::export_csv(snapshots, &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()
            });
            written
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::Output)?;
            output::stderr(&format!("wrote {} ({ticks} ticks)\n", path.display()));
        }
    }
    if let Some(damage) = reader.damage() {
        output::stderr(&format!(
            "warning: {} is damaged, {}; exported the {ticks} readable snapshots\n",
            recording.display(),
            session::printable(&damage.to_string())
        ));
    }
    Ok(())
}

/// How many daily log files are kept: two weeks of history, and a bound on the disk they take.
pub const MAX_LOG_FILES: usize = 14;

/// Logs go to a file in the data directory: the TUI owns the terminal.
fn init_logging() -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let dir: PathBuf = session::data_dir().ok()?.join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    let appender = log_appender(&dir).ok()?;
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

/// `perseus.log.YYYY-MM-DD`, a new file each day; the oldest beyond [`MAX_LOG_FILES`] are
/// deleted when the appender starts and at each rotation.
fn log_appender(
    dir: &Path,
) -> Result<tracing_appender::rolling::RollingFileAppender, tracing_appender::rolling::InitError> {
    tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("perseus.log")
        .max_log_files(MAX_LOG_FILES)
        .build(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_logs_beyond_the_limit_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=(MAX_LOG_FILES + 6) {
            std::fs::write(
                dir.path().join(format!("perseus.log.2020-01-{day:02}")),
                "x",
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), "not a log").unwrap();
        let appender = log_appender(dir.path()).unwrap();
        drop(appender);
        let mut logs: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("perseus.log"))
            .collect();
        logs.sort();
        assert_eq!(logs.len(), MAX_LOG_FILES, "{logs:?}");
        // The library orders by creation time, which files written within one clock tick
        // share; what is certain is the count and that today's file is among those kept.
        assert!(
            logs.iter().any(|n| !n.starts_with("perseus.log.2020-")),
            "today's file is kept: {logs:?}"
        );
        assert!(
            dir.path().join("notes.txt").exists(),
            "other files are left alone"
        );
    }
}
