//! The run: commands in, snapshots out.
//!
//! The engine owns the target connection, one driver per tenant, the statistics poller and the
//! cost/SLA computation. Its loop never awaits the server: every RPC runs in its own task and reports
//! back as an [`Event`], so a slow or dead server can delay figures but never the tick.

pub mod hooks;
mod setup;
mod tenant;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::cost::{self, FrontierAxis, ResolvedPrice, TenantLoad};
use crate::engine::hooks::{GpuTelemetry, Persistence, ServerModel, SnapshotSink, TargetKnowledge};
use crate::engine::tenant::Tenant;
use crate::loadgen::{ArrivalProcess, Clock, ClosedLoop, TenantShared};
use crate::measure::TenantMeter;
use crate::proto::ModelInferRequest;
use crate::triton::{ConnectOptions, ModelStats, TritonClient};
use crate::vocab::command::Command;
use crate::vocab::snapshot::{
    ConnState, Connection, History, Notice, NoticeLevel, Phase, RepoModel, Snapshot, TargetInfo,
    TenantId,
};
use crate::vocab::spec::{Load, RunSpec};

pub use setup::{load_config_json, server_model};

/// Notices kept in a snapshot.
const MAX_NOTICES: usize = 20;
/// Repository refresh period.
const REPO_EVERY: Duration = Duration::from_secs(2);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    Connected(Vec<TritonClient>, Option<String>),
    ConnectFailed(String),
    Live,
    TenantReady {
        id: TenantId,
        request: Box<ModelInferRequest>,
        server: ServerModel,
    },
    TenantFailed {
        id: TenantId,
        error: String,
        connection: bool,
    },
    Peak {
        id: TenantId,
        peak: crate::vocab::snapshot::SoloPeak,
    },
    Stats(Instant, Result<Vec<ModelStats>, String>),
    Repo(Vec<RepoModel>),
    Unloaded(String, Result<(), String>),
}

/// Starts a run on the current tokio runtime.
pub fn start(cfg: EngineConfig) -> std::io::Result<EngineHandle> {
    let clock = Clock::start(tokio::runtime::Handle::current())?;
    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let tick_s = cfg.spec.tick.as_secs_f64();
    let history = History::for_tick(tick_s);
    let mut engine = Engine::new(cfg, clock, ev_tx, history);
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
    clock: Clock,
    events: mpsc::Sender<Event>,
    started: Instant,
    measuring_since: Option<Instant>,
    warmup_until: Option<Instant>,
    phase: Phase,
    conn: Connection,
    clients: Option<Arc<Vec<TritonClient>>>,
    reconnecting: bool,
    tenants: Vec<Tenant>,
    next_id: TenantId,
    window: Duration,
    notices: VecDeque<Notice>,
    repository: Vec<RepoModel>,
    last_repo: Option<Instant>,
    stats_in_flight: bool,
    history: History,
    seq: u64,
    recorder: Option<Box<dyn SnapshotSink>>,
    server_version: Option<String>,
}

impl Engine {
    fn new(cfg: EngineConfig, clock: Clock, events: mpsc::Sender<Event>, history: History) -> Self {
        let tenants: Vec<Tenant> = cfg
            .spec
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| Tenant::new(i as TenantId, t.clone()))
            .collect();
        let next_id = tenants.len() as TenantId;
        let window = cfg.spec.window;
        Engine {
            cfg,
            clock,
            events,
            started: Instant::now(),
            measuring_since: None,
            warmup_until: None,
            phase: Phase::Connecting,
            conn: Connection {
                state: ConnState::Connecting,
                last_error: None,
                retries: 0,
            },
            clients: None,
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
            recorder: None,
            server_version: None,
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
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(Command::Stop) | None => break,
                    Some(cmd) => self.apply(cmd),
                },
                Some(ev) = events.recv() => self.on_event(ev),
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.on_tick(now);
                    let snap = Arc::new(self.snapshot(now));
                    self.record(&snap);
                    snapshots.send_replace(Arc::clone(&snap));
                    if self.phase == Phase::Finished {
                        return snap;
                    }
                }
            }
        }
        self.stop_all();
        self.phase = Phase::Finished;
        let snap = Arc::new(self.snapshot(Instant::now()));
        self.record(&snap);
        snapshots.send_replace(Arc::clone(&snap));
        snap
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

    fn spawn_connect(&mut self, delay: Duration) {
        let opts = self.cfg.connect.clone();
        let n = self.cfg.connections.max(1);
        let tx = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let ev = match TritonClient::pool(&opts, n).await {
                Ok(clients) => match clients[0].server_live().await {
                    Ok(true) => {
                        let version = clients[0].server_metadata().await.ok().map(|m| m.version);
                        Event::Connected(clients, version)
                    }
                    Ok(false) => Event::ConnectFailed("server is not live".into()),
                    Err(e) => Event::ConnectFailed(e.to_string()),
                },
                Err(e) => Event::ConnectFailed(e.to_string()),
            };
            let _ = tx.send(ev).await;
        });
    }

    /// Polls liveness with backoff until the server answers again.
    fn spawn_reconnect(&mut self) {
        if self.reconnecting {
            return;
        }
        let Some(client) = self.clients.as_ref().and_then(|c| c.first().cloned()) else {
            return;
        };
        self.reconnecting = true;
        let tx = self.events.clone();
        tokio::spawn(async move {
            let mut backoff = BACKOFF_MIN;
            loop {
                tokio::time::sleep(backoff).await;
                match client.server_live().await {
                    Ok(true) => {
                        let _ = tx.send(Event::Live).await;
                        return;
                    }
                    Ok(false) => {
                        let _ = tx
                            .send(Event::ConnectFailed("server is not live".into()))
                            .await;
                    }
                    Err(e) => {
                        if tx.send(Event::ConnectFailed(e.to_string())).await.is_err() {
                            return;
                        }
                    }
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
    }

    fn disconnected(&mut self, error: String) {
        if self.conn.state != ConnState::Disconnected {
            self.notice(NoticeLevel::Error, format!("lost the server: {error}"));
        }
        self.conn.state = ConnState::Disconnected;
        self.conn.last_error = Some(error);
        self.spawn_reconnect();
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected(clients, version) => {
                self.clients = Some(Arc::new(clients));
                self.server_version = version;
                self.conn.state = ConnState::Connected;
                self.conn.retries = 0;
                self.notice(
                    NoticeLevel::Info,
                    format!("connected to {}", self.cfg.target.address),
                );
                let ids: Vec<TenantId> = self.tenants.iter().map(|t| t.id).collect();
                for id in ids {
                    self.spawn_setup(id);
                }
                self.refresh_repository(Instant::now());
            }
            Event::ConnectFailed(error) => {
                self.conn.retries += 1;
                self.conn.last_error = Some(error.clone());
                if self.clients.is_none() {
                    // Never connected yet: keep trying with backoff, saying why.
                    self.conn.state = ConnState::Connecting;
                    let delay = (BACKOFF_MIN * 2u32.saturating_pow(self.conn.retries.min(5)))
                        .min(BACKOFF_MAX);
                    self.spawn_connect(delay);
                } else {
                    self.conn.state = ConnState::Disconnected;
                }
            }
            Event::Live => {
                self.reconnecting = false;
                self.conn.state = ConnState::Connected;
                self.conn.retries = 0;
                self.notice(NoticeLevel::Info, "server is back");
                // A restarted server may have lost its models or reset its statistics.
                let ids: Vec<TenantId> = self.tenants.iter().map(|t| t.id).collect();
                for id in ids {
                    if let Some(t) = self.tenant_mut(id) {
                        t.clear_stats();
                    }
                    self.spawn_setup(id);
                }
            }
            Event::TenantReady {
                id,
                request,
                server,
            } => self.tenant_ready(id, *request, server),
            Event::TenantFailed {
                id,
                error,
                connection,
            } => {
                if let Some(t) = self.tenant_mut(id) {
                    t.setting_up = false;
                    t.setup_error = Some(error.clone());
                }
                if connection {
                    self.disconnected(error);
                } else {
                    self.notice(NoticeLevel::Error, error);
                }
            }
            Event::Peak { id, peak } => {
                if let Some(t) = self.tenant_mut(id) {
                    t.peak = peak;
                }
            }
            Event::Stats(at, result) => {
                self.stats_in_flight = false;
                match result {
                    Ok(all) => {
                        let window = self.window;
                        for t in &mut self.tenants {
                            if let Some(s) = all.iter().find(|s| s.name == t.spec.model) {
                                t.push_stats(at, s.clone(), window);
                            }
                        }
                    }
                    Err(e) => tracing::debug!("statistics: {e}"),
                }
            }
            Event::Repo(models) => self.repository = models,
            Event::Unloaded(model, result) => match result {
                Ok(()) => self.notice(NoticeLevel::Info, format!("unloaded '{model}'")),
                Err(e) => self.notice(NoticeLevel::Warn, format!("unloading '{model}': {e}")),
            },
        }
    }

    fn tenant_mut(&mut self, id: TenantId) -> Option<&mut Tenant> {
        self.tenants.iter_mut().find(|t| t.id == id)
    }

    fn spawn_setup(&mut self, id: TenantId) {
        let Some(clients) = self.clients.clone() else {
            return;
        };
        let model_control = self.cfg.target.model_control;
        let Some(t) = self.tenant_mut(id) else {
            return;
        };
        if t.setting_up {
            return;
        }
        t.setting_up = true;
        let spec = t.spec.clone();
        let tx = self.events.clone();
        tokio::spawn(async move {
            let ev =
                match setup::setup_tenant(&clients[0], &spec, model_control, u64::from(id)).await {
                    Ok((request, server)) => Event::TenantReady {
                        id,
                        request: Box::new(request),
                        server,
                    },
                    Err(error) => {
                        let connection = clients[0].server_live().await.is_err();
                        Event::TenantFailed {
                            id,
                            error,
                            connection,
                        }
                    }
                };
            let _ = tx.send(ev).await;
        });
    }

    fn tenant_ready(&mut self, id: TenantId, request: ModelInferRequest, server: ServerModel) {
        let Some(clients) = self.clients.clone() else {
            return;
        };
        let window = self.window;
        let tick = self.cfg.spec.tick;
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let Some(idx) = self.tenants.iter().position(|t| t.id == id) else {
            return;
        };
        let t = &mut self.tenants[idx];
        t.setting_up = false;
        t.setup_error = None;
        let peak_needed = t.server.as_ref() != Some(&server) || t.peak.per_s.is_none();
        t.server = Some(server.clone());
        match &t.shared {
            Some(shared) => {
                // Reconnected or reconfigured: same meters, fresh request and connections.
                shared.replace_template(request);
                shared.replace_clients(clients);
            }
            None => {
                let meter = match TenantMeter::new(t.spec.sla, window, tick, Instant::now()) {
                    Ok(m) => m,
                    Err(e) => {
                        let msg = format!("{}: {e}", t.spec.model);
                        t.setup_error = Some(msg.clone());
                        self.notice(NoticeLevel::Error, msg);
                        return;
                    }
                };
                let shared = Arc::new(TenantShared::new(
                    id,
                    t.spec.model.clone(),
                    request,
                    clients,
                    t.spec.max_in_flight,
                    t.spec.deadline,
                    meter.recorder(),
                ));
                t.meter = Some(meter);
                shared.set_paused(t.paused);
                match &t.spec.load {
                    Load::Rate { per_s, arrival } => {
                        let seed = 0x5eed_0000 + u64::from(id);
                        self.clock.add(
                            Arc::clone(&shared),
                            ArrivalProcess::new(arrival, *per_s, seed),
                        );
                    }
                    Load::Concurrency(n) => {
                        t.closed = Some(ClosedLoop::start(Arc::clone(&shared), *n));
                    }
                }
                t.shared = Some(shared);
            }
        }
        if peak_needed {
            let spec = t.spec.clone();
            let tx = self.events.clone();
            tokio::spawn(async move {
                let peak = tokio::task::spawn_blocking(move || knowledge.solo_peak(&spec, &server))
                    .await
                    .unwrap_or(crate::vocab::snapshot::SoloPeak::UNKNOWN);
                let _ = tx.send(Event::Peak { id, peak }).await;
            });
        }
        if self.phase == Phase::Connecting && self.tenants.iter().all(|t| t.shared.is_some()) {
            self.begin_measuring_or_warmup(Instant::now());
        }
    }

    fn begin_measuring_or_warmup(&mut self, now: Instant) {
        if self.cfg.headless && !self.cfg.spec.warmup.is_zero() {
            self.phase = Phase::WarmingUp;
            self.warmup_until = Some(now + self.cfg.spec.warmup);
        } else {
            self.start_measuring(now);
        }
    }

    fn start_measuring(&mut self, now: Instant) {
        self.phase = Phase::Measuring;
        self.measuring_since = Some(now);
        for t in &mut self.tenants {
            t.mark_measure_start();
            if let Some(m) = &mut t.meter {
                m.start_measuring(now);
            }
        }
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
        for t in &mut self.tenants {
            if let Some(m) = &mut t.meter {
                m.tick(now);
            }
        }
        // A run whose tenants cannot all be set up still measures the ones that can.
        if self.phase == Phase::Connecting
            && self.clients.is_some()
            && !self.tenants.is_empty()
            && self.tenants.iter().all(|t| !t.setting_up)
            && self.tenants.iter().any(|t| t.shared.is_some())
        {
            self.begin_measuring_or_warmup(now);
        }
        if self.phase == Phase::WarmingUp && self.warmup_until.is_some_and(|w| now >= w) {
            self.start_measuring(now);
        }
        if self.cfg.headless
            && self.phase == Phase::Measuring
            && self
                .measuring_since
                .is_some_and(|s| now.duration_since(s) >= self.cfg.spec.duration)
        {
            self.stop_all();
            self.phase = Phase::Finished;
        }
        if self.conn.state == ConnState::Connected {
            self.poll_stats(now);
            self.refresh_repository(now);
        }
    }

    fn poll_stats(&mut self, at: Instant) {
        if self.stats_in_flight {
            return;
        }
        let Some(client) = self.clients.as_ref().and_then(|c| c.first().cloned()) else {
            return;
        };
        self.stats_in_flight = true;
        let tx = self.events.clone();
        let timeout = self.cfg.spec.tick * 4;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, client.statistics(None)).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("statistics timed out".to_string()),
            };
            let _ = tx.send(Event::Stats(at, result)).await;
        });
    }

    fn refresh_repository(&mut self, now: Instant) {
        if self
            .last_repo
            .is_some_and(|t| now.duration_since(t) < REPO_EVERY)
        {
            return;
        }
        self.last_repo = Some(now);
        let Some(client) = self.clients.as_ref().and_then(|c| c.first().cloned()) else {
            return;
        };
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let gpu = self.cfg.telemetry.view();
        let free = match (gpu.memory_total_bytes, gpu.memory_used_bytes) {
            (Some(t), Some(u)) => Some((t.value - u.value).max(0.0) as u64),
            _ => None,
        };
        let tx = self.events.clone();
        tokio::spawn(async move {
            if let Ok(index) = client.repository_index(false).await {
                let models = index
                    .into_iter()
                    .map(|m| {
                        let loaded = m.state == "READY";
                        let memory_bytes = knowledge.model_memory(&m.name);
                        let fits = match (loaded, memory_bytes, free) {
                            (true, _, _) => Some(true),
                            (false, Some(need), Some(free)) => Some(need <= free),
                            _ => None,
                        };
                        RepoModel {
                            name: m.name,
                            state: m.state,
                            loaded,
                            memory_bytes,
                            fits,
                        }
                    })
                    .collect();
                let _ = tx.send(Event::Repo(models)).await;
            }
        });
    }

    fn stop_all(&mut self) {
        for t in &mut self.tenants {
            self.clock.remove(t.id);
            t.closed = None;
            if let Some(s) = &t.shared {
                s.set_paused(true);
            }
        }
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::SetRate { tenant, per_s } => {
                if !per_s.is_finite() || per_s <= 0.0 {
                    self.notice(
                        NoticeLevel::Warn,
                        format!("rate must be above zero, got {per_s}"),
                    );
                    return;
                }
                let Some(t) = self.tenant_mut(tenant) else {
                    return;
                };
                if let Load::Rate { per_s: r, .. } = &mut t.spec.load {
                    *r = per_s;
                    self.clock.set_rate(tenant, per_s);
                } else {
                    self.notice(
                        NoticeLevel::Warn,
                        "a closed-loop tenant has a concurrency, not a rate",
                    );
                }
            }
            Command::SetConcurrency { tenant, n } => {
                let Some(t) = self.tenant_mut(tenant) else {
                    return;
                };
                if let Load::Concurrency(c) = &mut t.spec.load {
                    *c = n;
                    if let Some(cl) = &t.closed {
                        cl.set_concurrency(n);
                    }
                }
            }
            Command::Pause { tenant } => self.set_paused(tenant, true),
            Command::Resume { tenant } => self.set_paused(tenant, false),
            Command::AddTenant(spec) => {
                let id = self.next_id;
                self.next_id += 1;
                self.notice(NoticeLevel::Info, format!("adding {}", spec.model));
                self.tenants.push(Tenant::new(id, *spec));
                self.spawn_setup(id);
            }
            Command::RemoveTenant { tenant } => self.remove_tenant(tenant),
            Command::Reconfigure {
                tenant,
                instances,
                dynamic_batching,
            } => {
                if !self.cfg.target.model_control {
                    self.notice(
                        NoticeLevel::Warn,
                        "the server does not allow model control: instances and batching are fixed",
                    );
                    return;
                }
                let Some(t) = self.tenant_mut(tenant) else {
                    return;
                };
                let current = t.server.clone().unwrap_or_default();
                t.spec.instances = Some(instances.unwrap_or(current.instances).max(1));
                t.spec.dynamic_batching = match dynamic_batching {
                    Some(db) => db,
                    None => current.dynamic_batching,
                };
                let model = t.spec.model.clone();
                // Every tenant of this model shares the server's configuration.
                let spec_i = t.spec.instances;
                let spec_db = t.spec.dynamic_batching.clone();
                let ids: Vec<TenantId> = self
                    .tenants
                    .iter_mut()
                    .filter(|o| o.spec.model == model)
                    .map(|o| {
                        o.spec.instances = spec_i;
                        o.spec.dynamic_batching = spec_db.clone();
                        o.id
                    })
                    .collect();
                for id in ids {
                    self.spawn_setup(id);
                }
            }
            Command::SetWindow(w) => {
                self.window = w.max(self.cfg.spec.tick);
                let mut failed = None;
                for t in &mut self.tenants {
                    if let Some(m) = &mut t.meter
                        && let Err(e) = m.set_window(self.window)
                    {
                        failed = Some(e.to_string());
                    }
                }
                if let Some(e) = failed {
                    self.notice(NoticeLevel::Warn, format!("window: {e}"));
                }
            }
            Command::SaveSession { path } => {
                let spec = self.current_spec();
                match self.cfg.persistence.save_session(&spec, path) {
                    Ok(p) => self.notice(NoticeLevel::Info, format!("saved {}", p.display())),
                    Err(e) => self.notice(NoticeLevel::Error, format!("saving failed: {e}")),
                }
            }
            Command::SetRecording(on) => self.set_recording(on),
            Command::Stop => {}
        }
    }

    fn set_paused(&mut self, tenant: Option<TenantId>, paused: bool) {
        for t in &mut self.tenants {
            if tenant.is_some_and(|id| id != t.id) {
                continue;
            }
            t.paused = paused;
            if let Some(s) = &t.shared {
                s.set_paused(paused);
            }
            if !paused {
                // The pause is not made up for: arrivals resume from now.
                self.clock.reanchor(t.id);
                if let Some(cl) = &t.closed {
                    cl.wake();
                }
            }
        }
    }

    fn remove_tenant(&mut self, id: TenantId) {
        let Some(idx) = self.tenants.iter().position(|t| t.id == id) else {
            return;
        };
        let t = self.tenants.remove(idx);
        self.clock.remove(id);
        if let Some(s) = &t.shared {
            s.set_paused(true);
        }
        let model = t.spec.model.clone();
        self.notice(NoticeLevel::Info, format!("removed {model}"));
        let still_used = self.tenants.iter().any(|o| o.spec.model == model);
        if self.cfg.target.model_control
            && !still_used
            && let Some(client) = self.clients.as_ref().and_then(|c| c.first().cloned())
        {
            let tx = self.events.clone();
            tokio::spawn(async move {
                let r = client
                    .unload_model(&model, false)
                    .await
                    .map_err(|e| e.to_string());
                let _ = tx.send(Event::Unloaded(model, r)).await;
            });
        }
    }

    fn set_recording(&mut self, on: bool) {
        if on == self.recorder.is_some() {
            return;
        }
        if on {
            match self.cfg.persistence.start_recording(&self.current_spec()) {
                Ok(sink) => {
                    self.notice(NoticeLevel::Info, format!("recording to {}", sink.path()));
                    self.recorder = Some(sink);
                }
                Err(e) => self.notice(NoticeLevel::Error, format!("cannot record: {e}")),
            }
        } else if let Some(sink) = self.recorder.take() {
            self.notice(
                NoticeLevel::Info,
                format!("recording saved: {}", sink.path()),
            );
        }
    }

    fn record(&mut self, snap: &Snapshot) {
        if let Some(sink) = &mut self.recorder
            && let Err(e) = sink.write(snap)
        {
            self.recorder = None;
            self.notice(NoticeLevel::Error, format!("recording stopped: {e}"));
        }
    }

    /// The setup as it stands now, for saving and for recording headers.
    fn current_spec(&self) -> RunSpec {
        let mut spec = self.cfg.spec.clone();
        spec.window = self.window;
        spec.tenants = self.tenants.iter().map(|t| t.spec.clone()).collect();
        spec
    }

    fn snapshot(&mut self, now: Instant) -> Snapshot {
        let window_s = self.window.as_secs_f64();
        let measured_s = self
            .measuring_since
            .map(|s| now.duration_since(s).as_secs_f64())
            .unwrap_or(0.0);
        let tenants: Vec<_> = self.tenants.iter().map(|t| t.view(measured_s)).collect();
        let gpu = self.cfg.telemetry.view();
        let (cost, frontier) = live_cost(self.cfg.price.as_ref(), &tenants);
        let mut target = self.cfg.target.clone();
        if target.server_version.is_none() {
            target.server_version = self.server_version.clone();
        }
        if target.gpu.is_none() {
            target.gpu = gpu.name.clone();
        }
        let mut snap = Snapshot {
            seq: self.seq,
            elapsed_s: now.duration_since(self.started).as_secs_f64(),
            measured_s,
            phase: self.phase,
            session: self.cfg.spec.name.clone(),
            target,
            connection: self.conn.clone(),
            paused: !self.tenants.is_empty() && self.tenants.iter().all(|t| t.paused),
            window_s,
            tick_s: self.cfg.spec.tick.as_secs_f64(),
            tenants,
            gpu,
            cost,
            frontier,
            notices: self.notices.iter().cloned().collect(),
            recording: self.recorder.as_ref().map(|r| r.path()),
            replay: None,
            repository: self.repository.clone(),
            history: Arc::new(History::default()),
        };
        self.seq += 1;
        self.history.push(&snap);
        snap.history = Arc::new(self.history.clone());
        snap
    }
}

/// The cost panel and the frontier from the window's figures.
fn live_cost(
    price: Option<&ResolvedPrice>,
    tenants: &[crate::vocab::snapshot::TenantView],
) -> (
    Option<crate::vocab::snapshot::CostView>,
    Option<crate::vocab::snapshot::FrontierView>,
) {
    let loads: Vec<TenantLoad> = tenants
        .iter()
        .map(|t| TenantLoad {
            achieved_per_s: t.window.achieved_per_s,
            goodput_per_s: t.window.goodput_per_s,
            solo_peak: t.solo_peak,
        })
        .collect();
    let cost = price.map(|p| cost::cost_view(p, &loads));
    let frontier = match tenants {
        [x, y] => cost::frontier_view(&axis(x), &axis(y)),
        _ => None,
    };
    (cost, frontier)
}

fn axis(t: &crate::vocab::snapshot::TenantView) -> FrontierAxis<'_> {
    FrontierAxis {
        tenant: t.id,
        model: &t.model,
        solo_peak: t.solo_peak,
        achieved_per_s: t.window.achieved_per_s,
    }
}
