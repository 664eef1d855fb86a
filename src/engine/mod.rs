//! The run: commands in, snapshots out.
//!
//! The engine owns the target connection, one driver per tenant, the statistics poller and the
//! cost/SLA computation. Its loop never awaits the server: every RPC runs in its own task and reports
//! back as an [`Event`], so a slow or dead server can delay figures but never the tick. The recording
//! is written on a task of its own too, fed by a bounded channel, so a slow disk cannot either.
//!
//! The parts: [`connection`] (connect, backoff, reconnect), [`lifecycle`] (a tenant from set-up to
//! removal, and the run's phases), [`commands`] (what the TUI and replay ask), [`polling`] (server
//! statistics and the repository), [`recording`], and [`assemble`] (the snapshot and its cost).
//! The server is reached through [`server::ServerControl`], so each part is tested against a fake.

mod assemble;
mod capacity;
mod commands;
mod connection;
pub mod error;
pub mod hooks;
mod lifecycle;
mod polling;
mod recording;
pub mod server;
mod setup;
mod tenant;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::cost::ResolvedPrice;
use crate::engine::hooks::{GpuTelemetry, Persistence, ServerModel, TargetKnowledge};
use crate::engine::server::{Connector, Link, TritonConnector};
use crate::engine::tenant::Tenant;
use crate::loadgen::driver::MAX_RUN_IN_FLIGHT_BYTES;
use crate::loadgen::{ByteBudget, Clock};
use crate::measure::CpuMeter;
use crate::proto::ModelInferRequest;
use crate::triton::shm::TenantRegions;
use crate::triton::{ConnectOptions, ModelStats, TritonError};
use crate::vocab::command::Command;
use crate::vocab::snapshot::{
    ConnState, Connection, History, Notice, NoticeLevel, Phase, RepoModel, Snapshot, SoloPeak,
    TargetInfo, TenantId,
};
use crate::vocab::spec::RunSpec;

pub use error::{ConnectError, PersistError, PollError, SetupError};
pub use setup::{load_config_json, server_model};

/// Notices kept in a snapshot.
const MAX_NOTICES: usize = 20;

/// Everything a run needs; built by the app from a session, flags and the target.
pub struct EngineConfig {
    pub spec: RunSpec,
    pub target: TargetInfo,
    pub connect: ConnectOptions,
    /// HTTP/2 connections shared by the tenants' requests.
    pub connections: usize,
    /// Headless runs have a warm-up and end after `spec.duration`; the TUI runs until stopped.
    pub headless: bool,
    pub price: Option<ResolvedPrice>,
    pub knowledge: Arc<dyn TargetKnowledge>,
    pub telemetry: Arc<dyn GpuTelemetry>,
    pub persistence: Arc<dyn Persistence>,
    /// Start recording at once (`--record`).
    pub record: bool,
}

/// A running engine.
pub struct EngineHandle {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub commands: mpsc::Sender<Command>,
    /// Resolves to the final snapshot when the run ends.
    pub done: JoinHandle<Arc<Snapshot>>,
}

/// Results of the engine's background tasks.
enum Event {
    Connected(Link, Option<String>),
    ConnectFailed(ConnectError),
    Live,
    TenantReady {
        id: TenantId,
        request: Box<ModelInferRequest>,
        server: ServerModel,
        /// The tenant's shared memory regions, when its requests refer to them.
        regions: Option<Box<TenantRegions>>,
        /// What the user should know about the set-up (settings the server could not take).
        notes: Vec<String>,
    },
    TenantFailed {
        id: TenantId,
        error: SetupError,
        connection: bool,
    },
    Peak {
        id: TenantId,
        peak: SoloPeak,
    },
    Stats(Instant, Result<Vec<ModelStats>, PollError>),
    Repo(Vec<RepoModel>),
    Unloaded(String, Result<(), TritonError>),
    RecordingFailed(PersistError),
    Capacity {
        generation: u64,
        estimate: crate::vocab::capacity::CapacityEstimate,
    },
    WhatIf {
        stage: u64,
        estimate: crate::vocab::capacity::CapacityEstimate,
    },
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts a run on the current tokio runtime, connecting over gRPC.
pub fn start(cfg: EngineConfig) -> std::io::Result<EngineHandle> {
    let connector = Arc::new(TritonConnector {
        options: cfg.connect.clone(),
        connections: cfg.connections,
    });
    start_with(cfg, connector)
}

/// Where an engine sits among the engines of a multi-target run.
#[derive(Debug, Clone, Copy)]
pub struct FleetPlace {
    /// Its tenants' ids start here, so that an id names one tenant across the whole fleet and a
    /// command can be routed by it.
    pub first_tenant_id: TenantId,
    /// The fleet's start: every engine's elapsed time and notices read from one instant.
    pub started: Instant,
}

/// Starts one target's run of a multi-target session, connecting over gRPC.
pub fn start_in_fleet(cfg: EngineConfig, place: FleetPlace) -> std::io::Result<EngineHandle> {
    let connector = Arc::new(TritonConnector {
        options: cfg.connect.clone(),
        connections: cfg.connections,
    });
    start_placed(cfg, connector, Some(place))
}

/// Starts a run that reaches its server through `connector`.
pub(crate) fn start_with(
    cfg: EngineConfig,
    connector: Arc<dyn Connector>,
) -> std::io::Result<EngineHandle> {
    start_placed(cfg, connector, None)
}

fn start_placed(
    cfg: EngineConfig,
    connector: Arc<dyn Connector>,
    place: Option<FleetPlace>,
) -> std::io::Result<EngineHandle> {
    // The client-cost benchmark's "as first shipped" baseline spawns each send at once.
    let clock = Clock::start(tokio::runtime::Handle::current(), !cfg.connect.legacy_grpc)?;
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let mut engine = Engine::new(cfg, connector, clock, ev_tx, place);
    let first = Arc::new(engine.snapshot(Instant::now()));
    let (snap_tx, snap_rx) = watch::channel(first);
    let done = tokio::spawn(engine.run(cmd_rx, ev_rx, snap_tx));
    Ok(EngineHandle {
        snapshots: snap_rx,
        commands: cmd_tx,
        done,
    })
}

struct Engine {
    cfg: EngineConfig,
    connector: Arc<dyn Connector>,
    clock: Clock,
    events: mpsc::Sender<Event>,
    started: Instant,
    measuring_since: Option<Instant>,
    /// When the measured period ended (headless): arrivals stopped, in-flight requests draining.
    measure_end: Option<Instant>,
    drain_until: Option<Instant>,
    warmup_until: Option<Instant>,
    phase: Phase,
    conn: Connection,
    link: Option<Link>,
    reconnecting: bool,
    tenants: Vec<Tenant>,
    next_id: TenantId,
    window: Duration,
    notices: VecDeque<Notice>,
    repository: Vec<RepoModel>,
    last_repo: Option<Instant>,
    stats_in_flight: bool,
    /// Shared with every snapshot published; see [`assemble`].
    history: Arc<History>,
    seq: u64,
    recording: Option<recording::Recording>,
    recording_error: Option<String>,
    server_version: Option<String>,
    capacity: capacity::CapacityTracker,
    /// The process's CPU use, for the client-bound rule's "out of CPU" criterion.
    cpu: CpuMeter,
    /// The in-flight request bytes all tenants share, so a run that falls behind stays bounded.
    run_bytes: Arc<ByteBudget>,
}

impl Engine {
    fn new(
        cfg: EngineConfig,
        connector: Arc<dyn Connector>,
        clock: Clock,
        events: mpsc::Sender<Event>,
        place: Option<FleetPlace>,
    ) -> Self {
        let first = place.map_or(0, |p| p.first_tenant_id);
        let tenants: Vec<Tenant> = cfg
            .spec
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| Tenant::new(first + i as TenantId, t.clone()))
            .collect();
        let next_id = first + tenants.len() as TenantId;
        let window = cfg.spec.window;
        let history = Arc::new(History::for_tick(cfg.spec.tick.as_secs_f64()));
        Engine {
            cfg,
            connector,
            clock,
            events,
            started: place.map_or_else(Instant::now, |p| p.started),
            measuring_since: None,
            measure_end: None,
            drain_until: None,
            warmup_until: None,
            phase: Phase::Connecting,
            conn: Connection {
                state: ConnState::Connecting,
                last_error: None,
                retries: 0,
            },
            link: None,
            reconnecting: false,
            tenants,
            next_id,
            window,
            notices: VecDeque::new(),
            repository: Vec::new(),
            last_repo: None,
            stats_in_flight: false,
            history,
            seq: 0,
            recording: None,
            recording_error: None,
            server_version: None,
            capacity: capacity::CapacityTracker::default(),
            cpu: CpuMeter::new(window),
            run_bytes: Arc::new(ByteBudget::new(MAX_RUN_IN_FLIGHT_BYTES)),
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::Receiver<Event>,
        snapshots: watch::Sender<Arc<Snapshot>>,
    ) -> Arc<Snapshot> {
        if self.cfg.record {
            self.set_recording(true);
        }
        self.spawn_connect(Duration::ZERO);
        let mut tick = tokio::time::interval(self.cfg.spec.tick);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let deadline = self.phase_deadline();
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(cmd) => self.apply(cmd),
                },
                Some(ev) = events.recv() => self.on_event(ev),
                // The warm-up and the measured period end on time, not at the next tick: a period
                // a tick long too far would count arrivals that a prediction of it does not.
                () = until(deadline) => self.advance_phase(Instant::now()),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.on_tick(now);
                    let snap = self.publish(now, &snapshots);
                    if self.phase == Phase::Finished {
                        return self.finish(snap, &mut events, &snapshots).await;
                    }
                }
            }
        }
        self.stop_all();
        self.phase = Phase::Finished;
        let snap = self.publish(Instant::now(), &snapshots);
        self.finish(snap, &mut events, &snapshots).await
    }

    /// Builds this tick's snapshot, hands it to the recorder and publishes it.
    fn publish(&mut self, now: Instant, snapshots: &watch::Sender<Arc<Snapshot>>) -> Arc<Snapshot> {
        let snap = Arc::new(self.snapshot(now));
        self.record(&snap);
        snapshots.send_replace(Arc::clone(&snap));
        snap
    }

    /// Ends the run: waits for the recording to be written out, and when that failed, publishes a
    /// final snapshot that says so.
    async fn finish(
        &mut self,
        snap: Arc<Snapshot>,
        events: &mut mpsc::Receiver<Event>,
        snapshots: &watch::Sender<Arc<Snapshot>>,
    ) -> Arc<Snapshot> {
        self.release_shared_memory().await;
        let snap = if self.settle_capacity().await {
            self.publish(Instant::now(), snapshots)
        } else {
            snap
        };
        self.close_recording().await;
        let mut failed = false;
        while let Ok(ev) = events.try_recv() {
            if let Event::RecordingFailed(e) = ev {
                self.recording_failed(e);
                failed = true;
            }
        }
        if failed {
            self.publish(Instant::now(), snapshots)
        } else {
            snap
        }
    }

    fn notice(&mut self, level: NoticeLevel, text: impl Into<String>) {
        let text = text.into();
        match level {
            NoticeLevel::Error => tracing::error!("{text}"),
            NoticeLevel::Warn => tracing::warn!("{text}"),
            NoticeLevel::Info => tracing::info!("{text}"),
        }
        if self.notices.len() == MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(Notice {
            at_s: self.started.elapsed().as_secs_f64(),
            level,
            text,
        });
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(link, version) => self.on_connected(link, version),
            Event::ConnectFailed(error) => self.on_connect_failed(error),
            Event::Live => self.on_live(),
            Event::TenantReady {
                id,
                request,
                server,
                regions,
                notes,
            } => {
                for note in notes {
                    self.notice(NoticeLevel::Warn, note);
                }
                self.tenant_ready(id, *request, server, regions.map(|r| *r));
            }
            Event::TenantFailed {
                id,
                error,
                connection,
            } => self.tenant_failed(id, error, connection),
            Event::Peak { id, peak } => {
                if let Some(t) = self.tenant_mut(id) {
                    t.peak = peak;
                }
            }
            Event::Stats(at, result) => self.on_stats(at, result),
            Event::Repo(models) => self.repository = models,
            Event::Unloaded(model, result) => match result {
                Ok(()) => self.notice(NoticeLevel::Info, format!("unloaded '{model}'")),
                Err(e) => self.notice(NoticeLevel::Warn, format!("unloading '{model}': {e}")),
            },
            Event::RecordingFailed(e) => self.recording_failed(e),
            Event::Capacity {
                generation,
                estimate,
            } => self.on_capacity(generation, estimate),
            Event::WhatIf { stage, estimate } => self.on_whatif(stage, estimate),
        }
    }

    fn tenant_mut(&mut self, id: TenantId) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.id == id)
    }

    fn on_tick(&mut self, now: Instant) {
        // Connection losses seen by the request path.
        let lost: Option<String> = self
            .tenants
            .iter()
            .filter_map(|t| t.shared.as_ref().and_then(|s| s.take_connection_lost()))
            .next();
        if let Some(error) = lost {
            self.disconnected(error);
        }
        let mut failing = Vec::new();
        for t in &mut self.tenants {
            if let Some(m) = &mut t.meter {
                m.tick(now);
            }
            failing.extend(t.new_error_notices());
        }
        for text in failing {
            self.notice(NoticeLevel::Error, text);
        }
        self.cpu.sample(now);
        self.advance_phase(now);
        self.refresh_capacity(now);
        if self.conn.state == ConnState::Connected {
            self.poll_stats(now);
            self.refresh_repository(now);
        }
    }
}
