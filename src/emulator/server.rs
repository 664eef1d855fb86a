//! Starting and stopping the emulator: the same server runs standalone (`perseus emulate`, fixed
//! loopback ports, until Ctrl-C) and embedded in-process (ephemeral ports, stopped by its owner).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CatalogError};
use crate::emulator::grpc::GrpcFront;
use crate::emulator::grpc_framed::FramedInfer;
use crate::emulator::realtime::SchedulingError;
use crate::emulator::service::Core;
use crate::emulator::ticking::{self, TickingListener};
use crate::emulator::{http, metrics};
use crate::proto::grpc_inference_service_server::GrpcInferenceServiceServer;

/// Models loaded at start when the configuration names none (those the catalog has for the GPU).
pub const DEFAULT_MODELS: &[&str] = &["simple", "resnet50", "mobilenet_v2"];
/// Large enough for a batch of big images; Triton accepts messages of any size.
const MAX_MESSAGE_BYTES: usize = 1 << 30;
/// HTTP/2 windows and frame size for megabyte tensors (the protocol's 64 KiB windows and 16 KiB
/// frames cost a window update and a wake-up every few frames of one image).
const STREAM_WINDOW_BYTES: u32 = 8 << 20;
const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// HTTP/2's largest frame, so that a request of up to 16 MiB (Inception-v3's 1.1 MB image, a batch
/// of several) arrives in one piece that [`FramedInfer`] decodes in place.
const MAX_FRAME_BYTES: u32 = (1 << 24) - 1;
/// How long shutdown waits for open connections (e.g. a client's stream) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Bounds that keep an emulator under overload or abuse from growing without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// What admitted, unanswered inference requests may hold in all (tensors plus a fixed charge per
    /// request); beyond it requests are refused with UNAVAILABLE.
    pub max_queued_bytes: u64,
    /// Requests one gRPC connection may have open at once (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS).
    /// A client flooding faster than the server's CPU can answer otherwise piles up streams and
    /// their buffers in front of the handlers, where no admission check sees them; past the limit
    /// the client's HTTP/2 layer waits instead.
    pub max_streams_per_connection: u32,
    /// How long a connection may take to send a request head (HTTP/1) or its HTTP/2 preface and
    /// first frame (gRPC) before it is closed.
    pub head_timeout: Duration,
    /// gRPC served as first shipped: HTTP/2's default windows and frames, and every request through
    /// tonic's receive buffer. Not a bound: kept so that the client-cost benchmark's baseline
    /// measures both ends of the transport as they were.
    pub legacy_grpc: bool,
}

impl Default for ServeLimits {
    /// 1 GiB holds the load generator's default in-flight bound (1,024 requests) of ResNet-50-sized
    /// images (0.6 MB each) with room, so a saturating probe queues rather than fails, while a
    /// flood of larger tensors still stops at a fixed size; 4,096 streams are four tenants at the load
    /// generator's default in-flight bound; 10 s is far beyond what any client on a working network
    /// takes to send a head.
    fn default() -> ServeLimits {
        ServeLimits {
            max_queued_bytes: 1 << 30,
            max_streams_per_connection: 4096,
            head_timeout: Duration::from_secs(10),
            legacy_grpc: false,
        }
    }
}

/// What to emulate and where to serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmulatorConfig {
    /// Catalog GPU name (case-insensitive), e.g. "t4", "h100".
    pub gpu: String,
    /// Catalog profile (e.g. "perseus2019"); `None` is the default ("current") profile.
    pub profile: Option<String>,
    /// Loaded at start; empty means [`DEFAULT_MODELS`].
    pub models: Vec<String>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    /// User catalog overrides (`None`: the embedded catalog only).
    pub catalog_dir: Option<PathBuf>,
    pub limits: ServeLimits,
}

impl EmulatorConfig {
    /// Triton's default ports on loopback, as `perseus emulate` serves by default.
    pub fn standalone(gpu: &str) -> EmulatorConfig {
        EmulatorConfig {
            grpc: SocketAddr::from((Ipv4Addr::LOCALHOST, 8001)),
            http: SocketAddr::from((Ipv4Addr::LOCALHOST, 8000)),
            metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, 8002)),
            ..EmulatorConfig::embedded(gpu)
        }
    }

    /// Ephemeral loopback ports, for the emulator embedded in the dashboard, tests and benchmarks.
    pub fn embedded(gpu: &str) -> EmulatorConfig {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        EmulatorConfig {
            gpu: gpu.to_string(),
            profile: None,
            models: Vec::new(),
            grpc: any,
            http: any,
            metrics: any,
            catalog_dir: None,
            limits: ServeLimits::default(),
        }
    }
}

/// The flags of `perseus emulate`, ready to flatten into the CLI (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct EmulateArgs {
    /// GPU to emulate (a name from `perseus catalog`: t4, p4, v100, a10g, l4, a100-40gb, h100, …)
    #[arg(long, default_value = "t4")]
    pub gpu: String,
    /// Calibration profile (e.g. perseus2019); default: the current one
    #[arg(long)]
    pub profile: Option<String>,
    /// Models to load at start, comma-separated (default: simple, resnet50, mobilenet_v2)
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// gRPC address (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// HTTP/REST address
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub http_listen: SocketAddr,
    /// Prometheus metrics address (served at /metrics)
    #[arg(long, default_value = "127.0.0.1:8002")]
    pub metrics_listen: SocketAddr,
    /// Directory with catalog overrides (*.toml)
    #[arg(long)]
    pub catalog_dir: Option<PathBuf>,
}

impl From<EmulateArgs> for EmulatorConfig {
    fn from(args: EmulateArgs) -> EmulatorConfig {
        EmulatorConfig {
            gpu: args.gpu,
            profile: args.profile,
            models: args.models,
            grpc: args.listen,
            http: args.http_listen,
            metrics: args.metrics_listen,
            catalog_dir: args.catalog_dir,
            limits: ServeLimits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot read the catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("unknown GPU '{name}'; the catalog has: {known}")]
    UnknownGpu { name: String, known: String },
    #[error("unknown profile '{profile}' for GPU {gpu}; the catalog has: {known}")]
    UnknownProfile {
        profile: String,
        gpu: String,
        known: String,
    },
    #[error("cannot load model '{model}' at start: {reason}")]
    Load { model: String, reason: String },
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the emulator's clock: {0}")]
    Clock(std::io::Error),
    #[error("cannot wait for a shutdown signal: {0}")]
    Signal(std::io::Error),
}

/// Entry point of the emulator.
pub struct Emulator;

/// A started emulator. Dropping it stops the servers too; [`RunningEmulator::shutdown`] also waits.
pub struct RunningEmulator {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Display name of the emulated GPU (e.g. "NVIDIA T4").
    pub gpu: String,
    core: Arc<Core>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Loads the catalog, the GPU and the start-up models, then binds and serves all three listeners.
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        let catalog = Catalog::load(config.catalog_dir.as_deref())?;
        let gpu = catalog
            .gpu(&config.gpu)
            .ok_or_else(|| EmulatorError::UnknownGpu {
                name: config.gpu.clone(),
                known: catalog
                    .gpus
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if let Some(profile) = &config.profile {
            let mut known: Vec<&str> = catalog
                .profiles
                .iter()
                .filter(|p| p.gpu.eq_ignore_ascii_case(&gpu.name))
                .map(|p| p.profile.as_str())
                .collect();
            known.sort_unstable();
            known.dedup();
            if !known.contains(&profile.as_str()) {
                return Err(EmulatorError::UnknownProfile {
                    profile: profile.clone(),
                    gpu: gpu.name.clone(),
                    known: known.join(", "),
                });
            }
        }
        let core = Arc::new(
            Core::new(
                &catalog,
                gpu,
                config.profile.as_deref(),
                config.limits.max_queued_bytes,
            )
            .map_err(EmulatorError::Clock)?,
        );

        let available = core.available();
        let models: Vec<String> = if config.models.is_empty() {
            DEFAULT_MODELS
                .iter()
                .filter(|m| available.iter().any(|a| a == *m))
                .map(|m| (*m).into())
                .collect()
        } else {
            config.models.clone()
        };
        for model in &models {
            core.load(model, None).map_err(|e| EmulatorError::Load {
                model: model.clone(),
                reason: e.message,
            })?;
        }

        let bind = |what: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| EmulatorError::Bind { what, addr, source })
        };
        let grpc_listener = bind("gRPC", config.grpc).await?;
        let http_listener = bind("HTTP", config.http).await?;
        let metrics_listener = bind("metrics", config.metrics).await?;
        let local = |what: &'static str, l: &TcpListener, addr: SocketAddr| {
            l.local_addr()
                .map_err(|source| EmulatorError::Bind { what, addr, source })
        };
        let grpc_addr = local("gRPC", &grpc_listener, config.grpc)?;
        let http_addr = local("HTTP", &http_listener, config.http)?;
        let metrics_addr = local("metrics", &metrics_listener, config.metrics)?;

        let cancel = CancellationToken::new();
        // Compressed requests are accepted, as Triton accepts them; replies go uncompressed, as
        // Triton's do by default (clients advertise gzip and deflate whether or not they want them).
        use tonic::codec::CompressionEncoding::{Deflate, Gzip};
        let service = GrpcInferenceServiceServer::new(GrpcFront { core: core.clone() })
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
            .accept_compressed(Gzip)
            .accept_compressed(Deflate);
        let head_timeout = config.limits.head_timeout;
        let incoming = ticking::incoming(grpc_listener, core.clock.ticker(), head_timeout);
        let stop = cancel.clone();
        let max_streams = config.limits.max_streams_per_connection;
        let mut builder =
            tonic::transport::Server::builder().max_concurrent_streams(Some(max_streams));
        let router = if config.limits.legacy_grpc {
            builder.add_service(service)
        } else {
            // Windows and frames sized for megabyte tensors, as the client's (see `triton::client`):
            // a message in one frame is what lets `FramedInfer` decode it where it was received.
            builder = builder
                .initial_stream_window_size(STREAM_WINDOW_BYTES)
                .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                .max_frame_size(MAX_FRAME_BYTES);
            let front = GrpcFront { core: core.clone() };
            builder.add_service(FramedInfer::new(service, front, MAX_MESSAGE_BYTES))
        };
        let grpc_task = tokio::spawn(async move {
            let served = router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!("emulator gRPC server stopped: {e}");
            }
        });
        let http_task = spawn_axum(
            "HTTP",
            TickingListener::new(http_listener, core.clock.ticker(), head_timeout),
            http::router(core.clone()),
            cancel.clone(),
        );
        // Metrics reads advance the sim themselves, so ticking adds nothing there; the head deadline
        // is what this listener needs.
        let metrics_task = spawn_axum(
            "metrics",
            TickingListener::new(metrics_listener, core.clock.ticker(), head_timeout),
            metrics::router(core.clone()),
            cancel.clone(),
        );

        Ok(RunningEmulator {
            grpc_addr,
            http_addr,
            metrics_addr,
            gpu: core.gpu.display.clone(),
            core,
            cancel,
            tasks: vec![grpc_task, http_task, metrics_task],
        })
    }
}

fn spawn_axum<L>(
    what: &'static str,
    listener: L,
    router: axum::Router,
    cancel: CancellationToken,
) -> JoinHandle<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!("emulator {what} server stopped: {e}");
        }
    })
}

impl RunningEmulator {
    /// The gRPC endpoint as a URL for tonic clients.
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The Prometheus endpoint as a URL.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// Models resident now.
    pub fn loaded_models(&self) -> Vec<String> {
        self.core.loaded()
    }

    /// Lateness of completions against the model's finish times since start (the benchmark's figure).
    pub fn scheduling_error(&self) -> SchedulingError {
        self.core.clock.scheduling_error()
    }

    /// Stops accepting, lets in-flight requests finish (up to a short grace period), then returns.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        // Triton unregisters every region when it stops; the descriptors close with them.
        self.core.shm.unregister("");
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.core.shm.unregister("");
    }
}

/// `perseus emulate`: serves until Ctrl-C or SIGTERM, after printing what it serves where.
pub async fn run_standalone(config: EmulatorConfig) -> Result<(), EmulatorError> {
    let profile = config.profile.clone().unwrap_or_else(|| "current".into());
    let running = Emulator::start(config).await?;
    let loaded = running.loaded_models();
    let available = running.core.available();
    println!(
        "perseus emulator {}: {} (profile {profile})",
        env!("CARGO_PKG_VERSION"),
        running.gpu
    );
    println!("  gRPC     {}", running.grpc_addr);
    println!("  HTTP     http://{}", running.http_addr);
    println!("  metrics  {}", running.metrics_url());
    println!("  loaded   {}", loaded.join(", "));
    println!(
        "  catalog  {} (load more with RepositoryModelLoad)",
        available.join(", ")
    );
    println!("Ctrl-C to stop.");
    wait_for_signal().await?;
    running.shutdown().await;
    println!("perseus emulator stopped");
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(EmulatorError::Signal)?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => ctrl_c.map_err(EmulatorError::Signal),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), EmulatorError> {
    tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
}
