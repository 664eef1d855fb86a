//! A tenant's life in the engine (set up on the server, driven, paused, removed) and the run's
//! phases (connecting, warming up, measuring, finished).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::error::SetupError;
use crate::engine::hooks::ServerModel;
use crate::engine::{Engine, Event, setup};
use crate::loadgen::{ArrivalProcess, ClosedLoop, TenantShared};
use crate::measure::TenantMeter;
use crate::proto::ModelInferRequest;
use crate::triton::shm::TenantRegions;
use crate::vocab::snapshot::{NoticeLevel, Phase, SoloPeak, TenantId};
use crate::vocab::spec::{Load, Transport};

/// The longest a finished headless run waits for its in-flight requests.
const MAX_DRAIN: Duration = Duration::from_secs(15);

impl Engine {
    pub(super) fn spawn_setup(&mut self, id: TenantId) {
        let Some(link) = self.link.clone() else {
            return;
        };
        let model_control = self.model_control();
        let shm = self.cfg.connect.transport == Transport::Shm;
        let Some(t) = self.tenant_mut(id) else {
            return;
        };
        if t.setting_up {
            return;
        }
        t.setting_up = true;
        // A set-up under way has no failure yet; an old one would read as this one's outcome.
        t.setup_error = None;
        let spec = t.spec.clone();
        let tx = self.events.clone();
        tokio::spawn(async move {
            let control = link.control.as_ref();
            let ready = setup::setup_tenant(control, &spec, model_control, u64::from(id)).await;
            let ready = match (ready, link.requests.first()) {
                (Ok(prepared), Some(client)) if shm => {
                    let tag = format!("t{}", u64::from(id));
                    match crate::triton::shm::attach(client, &tag, &prepared.request).await {
                        Ok((request, regions)) => Ok((
                            request,
                            prepared.server,
                            prepared.notes,
                            Some(Box::new(regions)),
                        )),
                        Err(error) => Err(SetupError::SharedMemory {
                            model: spec.model.clone(),
                            error,
                        }),
                    }
                }
                (ready, _) => ready.map(|p| (p.request, p.server, p.notes, None)),
            };
            let ev = match ready {
                Ok((request, server, notes, regions)) => Event::TenantReady {
                    id,
                    request: Box::new(request),
                    server,
                    notes,
                    regions,
                },
                Err(error) => {
                    // A server that went away mid-setup is a lost connection, not a bad tenant.
                    let connection =
                        error.triton().is_some() && control.server_live().await.is_err();
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

    pub(super) fn tenant_failed(&mut self, id: TenantId, error: SetupError, connection: bool) {
        let text = error.to_string();
        if let Some(t) = self.tenant_mut(id) {
            t.setting_up = false;
            t.setup_error = Some(text.clone());
        }
        if connection {
            self.disconnected(text);
        } else {
            self.notice(NoticeLevel::Error, text);
        }
    }

    pub(super) fn tenant_ready(
        &mut self,
        id: TenantId,
        request: ModelInferRequest,
        server: ServerModel,
        regions: Option<TenantRegions>,
    ) {
        let Some(clients) = self.link.as_ref().map(|l| Arc::clone(&l.requests)) else {
            return;
        };
        let (window, tick) = (self.window, self.cfg.spec.tick);
        let Some(idx) = self.tenants.iter().position(|t| t.id == id) else {
            return;
        };
        let t = &mut self.tenants[idx];
        t.setting_up = false;
        t.setup_error = None;
        let peak_needed = t.server.as_ref() != Some(&server) || t.peak.per_s.is_none();
        t.server = Some(server.clone());
        if let Some(old) = std::mem::replace(&mut t.shm, regions) {
            tokio::spawn(old.release());
        }
        if let Some(shared) = &t.shared {
            // Reconnected or reconfigured: same meters, fresh request and connections.
            shared.replace_template(request);
            shared.replace_clients(clients);
        } else {
            let meter = match TenantMeter::new(t.spec.sla, window, tick, Instant::now()) {
                Ok(m) => m,
                Err(error) => {
                    let model = t.spec.model.clone();
                    self.tenant_failed(id, SetupError::Meter { model, error }, false);
                    return;
                }
            };
            let shared = Arc::new(
                TenantShared::new(
                    id,
                    t.spec.model.clone(),
                    request,
                    clients,
                    t.spec.max_in_flight,
                    t.spec.deadline,
                    meter.recorder(),
                )
                .with_run_budget(Arc::clone(&self.run_bytes)),
            );
            t.meter = Some(meter);
            shared.set_paused(t.paused);
            t.shared = Some(shared);
            // The run's first tenants start together once all are set up (see `start_loads`);
            // one added to a running engine starts at once.
            if self.phase != Phase::Connecting {
                self.start_load(idx);
            }
        }
        if peak_needed {
            self.spawn_peak(idx, server);
        }
        if self.phase == Phase::Connecting && self.tenants.iter().all(|t| t.shared.is_some()) {
            self.begin_measuring_or_warmup(Instant::now());
        }
    }

    /// Starts tenant `idx`'s arrivals (or its closed loop), once.
    fn start_load(&mut self, idx: usize) {
        let t = &mut self.tenants[idx];
        if t.driving {
            return;
        }
        let Some(shared) = t.shared.clone() else {
            return;
        };
        t.driving = true;
        match &t.spec.load {
            Load::Rate { per_s, arrival } => {
                let seed = 0x5eed_0000 + u64::from(t.id);
                self.clock
                    .add(shared, ArrivalProcess::new(arrival, *per_s, seed));
            }
            Load::Concurrency(n) => {
                t.closed = Some(ClosedLoop::start(shared, *n));
            }
        }
    }

    /// Starts every set-up tenant's load at one moment: the arrival sequences of all tenants then
    /// share one origin, which the warm-up and the measured period are counted from, as `perseus
    /// predict` counts them from its time zero. Tenants started one by one as each set-up ended
    /// would each see the measured period at another place in their sequence (a burst in or out).
    fn start_loads(&mut self) {
        for idx in 0..self.tenants.len() {
            self.start_load(idx);
        }
    }

    /// The next moment the run changes phase on its own (end of warm-up, end of the measured
    /// period), so the engine can wake for it exactly rather than at the next tick.
    pub(super) fn phase_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::WarmingUp => self.warmup_until,
            Phase::Measuring if self.cfg.headless && self.measure_end.is_none() => self
                .measuring_since
                .and_then(|s| s.checked_add(self.cfg.spec.duration)),
            _ => None,
        }
    }

    /// Computes the tenant's solo peak off the runtime (a virtual-time search may take a while).
    fn spawn_peak(&mut self, idx: usize, server: ServerModel) {
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let (id, spec) = (self.tenants[idx].id, self.tenants[idx].spec.clone());
        let tx = self.events.clone();
        tokio::spawn(async move {
            let peak = tokio::task::spawn_blocking(move || knowledge.solo_peak(&spec, &server))
                .await
                .unwrap_or(SoloPeak::UNKNOWN);
            let _ = tx.send(Event::Peak { id, peak }).await;
        });
    }

    /// Moves the run on from connecting, warming up or measuring as time and set-up allow.
    pub(super) fn advance_phase(&mut self, now: Instant) {
        // A run whose tenants cannot all be set up still measures the ones that can.
        if self.phase == Phase::Connecting
            && self.link.is_some()
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
            && self.measure_end.is_none()
            && self
                .measuring_since
                .is_some_and(|s| now.duration_since(s) >= self.cfg.spec.duration)
        {
            // The measured period is over: no new arrivals, but the requests it sent still count
            // when they complete (DESIGN §4), so the run drains them before it finishes.
            self.stop_all();
            self.measure_end = Some(now);
            self.drain_until = Some(now + self.drain_limit());
        }
        if self.phase == Phase::Measuring
            && self.measure_end.is_some()
            && (self.drained() || self.drain_until.is_some_and(|d| now >= d))
        {
            // Completions recorded since this tick's interval closed belong in the totals too.
            for t in &mut self.tenants {
                if let Some(m) = &mut t.meter {
                    m.tick(now);
                }
            }
            self.phase = Phase::Finished;
        }
    }

    /// How long a finished run waits for its last requests: their deadline (each request expires
    /// by then), within [`MAX_DRAIN`].
    fn drain_limit(&self) -> Duration {
        self.tenants
            .iter()
            .map(|t| t.spec.deadline)
            .max()
            .unwrap_or(Duration::ZERO)
            .min(MAX_DRAIN)
    }

    /// No tenant has a request in flight or waiting for a slot.
    fn drained(&self) -> bool {
        self.tenants
            .iter()
            .filter_map(|t| t.shared.as_ref())
            .all(|s| s.in_flight() == 0 && s.backlog() == 0)
    }

    fn begin_measuring_or_warmup(&mut self, now: Instant) {
        self.start_loads();
        if self.cfg.headless && !self.cfg.spec.warmup.is_zero() {
            self.phase = Phase::WarmingUp;
            self.warmup_until = now.checked_add(self.cfg.spec.warmup);
            if self.warmup_until.is_none() {
                self.start_measuring(now);
            }
        } else {
            self.start_measuring(now);
        }
    }

    fn start_measuring(&mut self, now: Instant) {
        self.phase = Phase::Measuring;
        self.measuring_since = Some(now);
        self.cpu.mark();
        for t in &mut self.tenants {
            t.mark_measure_start();
            if let Some(m) = &mut t.meter {
                m.start_measuring(now);
            }
        }
    }

    pub(super) fn stop_all(&mut self) {
        for t in &mut self.tenants {
            self.clock.remove(t.id);
            t.closed = None;
            if let Some(s) = &t.shared {
                s.set_paused(true);
            }
        }
    }

    pub(super) fn set_paused(&mut self, tenant: Option<TenantId>, paused: bool) {
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

    /// Unregisters every tenant's shared memory regions at the end of a run, so a long-lived server
    /// does not keep them; bounded in time, since a server that is gone has dropped them anyway.
    pub(super) async fn release_shared_memory(&mut self) {
        let all: Vec<TenantRegions> = self
            .tenants
            .iter_mut()
            .filter_map(|t| t.shm.take())
            .collect();
        let releases = futures::future::join_all(all.into_iter().map(TenantRegions::release));
        let _ = tokio::time::timeout(Duration::from_secs(2), releases).await;
    }

    pub(super) fn remove_tenant(&mut self, id: TenantId) {
        let Some(idx) = self.tenants.iter().position(|t| t.id == id) else {
            return;
        };
        let mut t = self.tenants.remove(idx);
        self.clock.remove(id);
        if let Some(s) = &t.shared {
            s.set_paused(true);
        }
        if let Some(regions) = t.shm.take() {
            tokio::spawn(regions.release());
        }
        let model = t.spec.model.clone();
        self.notice(NoticeLevel::Info, format!("removed {model}"));
        let still_used = self.tenants.iter().any(|o| o.spec.model == model);
        if self.model_control()
            && !still_used
            && let Some(control) = self.link.as_ref().map(|l| Arc::clone(&l.control))
        {
            let tx = self.events.clone();
            tokio::spawn(async move {
                let r = control.unload_model(&model).await;
                let _ = tx.send(Event::Unloaded(model, r)).await;
            });
        }
    }
}
