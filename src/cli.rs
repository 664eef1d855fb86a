//! Command-line definitions (DESIGN §2). Parsing only: `app` decides what each command does.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::session::limits;

#[derive(Debug, Parser)]
#[command(
    name = "perseus",
    version,
    about = "A live dashboard for multi-tenant CNN inference serving on Triton",
    long_about = "Pick CNN models to co-locate on one GPU served by Triton, drive each with its own \
                  open-loop rate, change rates live, and watch utilization, latency percentiles, SLA \
                  attainment and cost. With no arguments it opens the dashboard on the built-in \
                  emulator with the demo session."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dashboard (the default): a session on the embedded emulator or a real Triton.
    Tui(TuiArgs),
    /// A headless measurement: progress on stderr, a summary on stdout, JSON/CSV files.
    Run(RunArgs),
    /// Serve the Triton-compatible emulator on loopback (gRPC, HTTP/REST and metrics).
    Emulate(crate::emulator::EmulateArgs),
    /// Measure each tenant's solo peak on a real server, the PERSEUS way (cached).
    Probe(ProbeArgs),
    /// The dashboard, fed from a recording.
    Replay(ReplayArgs),
    /// Write a recording as CSV, one row per tick and tenant.
    Export(ExportArgs),
    /// GPUs, models and prices the emulator and the cost panel know.
    Catalog(CatalogArgs),
    /// Shell completions, or the man page (`man`), on stdout.
    Completions(CompletionsArgs),
    /// The session on the emulator's GPU model in virtual time: `perseus run`'s result in well under a
    /// second.
    Predict(PredictArgs),
    /// The cheapest placement of the session's tenants onto priced GPUs that meets every SLA with
    /// headroom, verified in virtual time, beside one GPU per tenant and time-slicing.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Session file: its open-loop tenants, each with a rate and an SLA.
    pub session: PathBuf,
    /// Catalog GPUs to place on (default: every GPU with a price).
    #[arg(long, value_delimiter = ',', value_name = "GPU,…")]
    pub gpus: Option<Vec<String>>,
    /// Price providers to take prices from (default: all), e.g. aws,gcp.
    #[arg(long, value_delimiter = ',', value_name = "PROVIDER,…")]
    pub prices: Option<Vec<String>>,
    /// Every GPU's mix must still meet every SLA at its rates × (1 + headroom): `20%` or `0.2`.
    #[arg(long, value_parser = parse_headroom, value_name = "PCT")]
    pub headroom: Option<f64>,
    /// Write the plan as JSON (schema perseus.plan.v1); `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one session file per planned GPU into this directory.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
    /// Base seed of the tenants' arrivals in virtual time (default: the engine's).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Headroom as `20%` or as a fraction `0.2`; a bare number above 1 is refused as ambiguous.
fn parse_headroom(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let x: f64 = number
        .parse()
        .map_err(|_| format!("'{s}' is not a headroom; e.g. 20% or 0.2"))?;
    let fraction = if percent { x / 100.0 } else { x };
    if !percent && x > 1.0 {
        return Err(format!("'{s}' is ambiguous: write {x}% or {}", x / 100.0));
    }
    if !(0.0..=10.0).contains(&fraction) {
        return Err(format!("'{s}': headroom must be between 0% and 1000%"));
    }
    Ok(fraction)
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Session file.
    pub session: PathBuf,
    /// The catalog GPU to predict on (see `perseus catalog`): needed for a session that targets a
    /// real Triton, and replaces an emulated target's GPU.
    #[arg(long, value_name = "NAME")]
    pub gpu: Option<String>,
    /// Every tenant's client turnaround: the client's transport both ways, which the GPU model
    /// does not see (perf_analyzer's client send + network + client recv). It adds to each
    /// request's latency, and a closed loop's cycle. Default 0: a client with no transport cost.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", conflicts_with = "client_from")]
    pub turnaround: Option<Duration>,
    /// Each tenant's turnaround as a `perseus run` of this session measured it on this machine:
    /// the `client_ms` of its JSON (service latency less the server's own time per request).
    #[arg(long, value_name = "RUN.json")]
    pub client_from: Option<PathBuf>,
    /// Measured duration of virtual time (default: the session's, else 60s).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Write the result as JSON (schema perseus.run.v1, target.kind "predicted"); `-` for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Where the run's target is, overriding the session's `[target]`.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
    /// A real Triton's gRPC endpoint (HOST:PORT) instead of the embedded emulator.
    #[arg(long, value_name = "HOST:PORT")]
    pub triton: Option<String>,
    /// Triton's Prometheus endpoint (default: port 8002 on the Triton host).
    #[arg(long, value_name = "URL")]
    pub metrics: Option<String>,
    /// GPU index or UUID to follow with NVML.
    #[arg(long, value_name = "N|UUID")]
    pub gpu: Option<String>,
    /// CA certificate (PEM) for a TLS connection to Triton.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Server name to verify instead of the host in --triton.
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct TuiArgs {
    /// Session file (default: the built-in demo session).
    pub session: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Colour theme: default, light, high-contrast, colorblind, or a user theme.
    #[arg(long)]
    pub theme: Option<String>,
    /// Record snapshots to the data directory from the start.
    #[arg(long)]
    pub record: bool,
    /// Serve Perseus's own figures for Prometheus at http://ADDR/metrics (a bare PORT listens on
    /// 127.0.0.1; another interface only when named, e.g. 0.0.0.0:9464).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Session file.
    pub session: PathBuf,
    /// Measured duration (default: the session's, else 60s; at most 7 days).
    #[arg(long, value_parser = parse_run_duration)]
    pub duration: Option<Duration>,
    /// Warm-up before measuring, not counted (default 5s; at most 1 day).
    #[arg(long, value_parser = parse_warmup)]
    pub warmup: Option<Duration>,
    /// Write the result as JSON (schema perseus.run.v1); '-' for stdout.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per tenant; '-' for stdout.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Append snapshots to a recording in the data directory.
    #[arg(long)]
    pub record: bool,
    /// Serve Perseus's own figures for Prometheus at http://ADDR/metrics (a bare PORT listens on
    /// 127.0.0.1; another interface only when named, e.g. 0.0.0.0:9464).
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Session file whose tenants are probed one at a time.
    pub session: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Ignore cached peaks and measure again.
    #[arg(long)]
    pub fresh: bool,
    /// Length of one measurement window.
    #[arg(long, default_value = "3s", value_parser = parse_window)]
    pub window: Duration,
    /// First rate tried (req/s); the search doubles it until the SLA breaks, then bisects.
    #[arg(long, default_value_t = 10.0)]
    pub start: f64,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A recording written by --record.
    pub recording: PathBuf,
    #[arg(long)]
    pub theme: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A recording written by --record.
    pub recording: PathBuf,
    /// CSV file to write ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {}

#[derive(Debug, Args)]
#[command(
    after_help = "Install, e.g.: perseus completions bash > ~/.local/share/bash-completion/completions/perseus\n\
                        perseus completions man > ~/.local/share/man/man1/perseus.1"
)]
pub struct CompletionsArgs {
    /// The shell to complete for, or `man` for a roff man page.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// What `perseus completions` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page, perseus(1), in roff.
    Man,
}

/// Durations as humans write them: `30s`, `1m 30s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("'{s}' is not a duration ({e}); e.g. 30s, 2m"))
}

/// A duration within the same bound a session file has (`session::limits`).
fn bounded(s: &str, max: Duration) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > max {
        return Err(format!(
            "'{s}' is longer than the limit of {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

fn parse_metrics_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    crate::exporter::parse_listen(s).map_err(|e| e.to_string())
}

fn parse_run_duration(s: &str) -> Result<Duration, String> {
    bounded(s, limits::MAX_DURATION)
}

fn parse_warmup(s: &str) -> Result<Duration, String> {
    bounded(s, limits::MAX_WARMUP)
}

fn parse_window(s: &str) -> Result<Duration, String> {
    bounded(s, limits::MAX_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "perseus",
            "run",
            "s.toml",
            "--duration",
            "10s",
            "--json",
            "out.json",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Run(r)) => {
                assert_eq!(r.duration, Some(Duration::from_secs(10)));
                assert_eq!(r.json, Some(PathBuf::from("out.json")));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert!(Cli::try_parse_from(["perseus", "run", "s.toml", "--duration", "ten"]).is_err());
        for (flag, over) in [("--duration", "8days"), ("--warmup", "500000000000y")] {
            let e = Cli::try_parse_from(["perseus", "run", "s.toml", flag, over]).unwrap_err();
            assert!(
                e.to_string().contains("longer than the limit"),
                "{flag}: {e}"
            );
        }
        assert!(Cli::try_parse_from(["perseus", "run", "s.toml", "--duration", "7days"]).is_ok());
    }

    #[test]
    fn plan_flags_parse() {
        let cli = Cli::try_parse_from([
            "perseus",
            "plan",
            "s.toml",
            "--gpus",
            "t4,l4",
            "--prices",
            "aws",
            "--headroom",
            "25%",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Plan(p)) => {
                assert_eq!(p.gpus, Some(vec!["t4".to_string(), "l4".to_string()]));
                assert_eq!(p.prices, Some(vec!["aws".to_string()]));
                assert_eq!(p.headroom, Some(0.25));
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(parse_headroom("0.2"), Ok(0.2));
        assert!(parse_headroom("20").unwrap_err().contains("ambiguous"));
        assert!(parse_headroom("-5%").is_err());
        assert!(parse_headroom("lots").is_err());
    }

    #[test]
    fn metrics_listen_is_loopback_for_a_bare_port() {
        let addr = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Some(Command::Run(r))) => r.metrics_listen.map(|a| a.to_string()),
            Ok(Some(Command::Tui(t))) => t.metrics_listen.map(|a| a.to_string()),
            other => panic!("parsed as {other:?}"),
        };
        let run = ["perseus", "run", "s.toml", "--metrics-listen"];
        assert_eq!(
            addr(&[&run[..], &["9464"]].concat()).as_deref(),
            Some("127.0.0.1:9464")
        );
        assert_eq!(
            addr(&["perseus", "tui", "--metrics-listen", "0.0.0.0:9464"]).as_deref(),
            Some("0.0.0.0:9464")
        );
        assert_eq!(addr(&["perseus", "run", "s.toml"]), None);
        let e = Cli::try_parse_from([&run[..], &["example.com:80"]].concat()).unwrap_err();
        assert!(
            e.to_string()
                .contains("'example.com:80' is not a listen address"),
            "{e}"
        );
    }
}
