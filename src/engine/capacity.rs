//! Live capacity and the dashboard's what-if, computed off the tick.
//!
//! The tick only compares the setup with the one last asked about (a few small clones); when it
//! changed, the setup generation moves on and a search starts on a blocking thread through
//! [`TargetKnowledge::capacity`](crate::engine::hooks::TargetKnowledge::capacity). A result comes
//! back as an event tagged with the generation it was computed for, and the snapshot shows it only
//! while that generation is current, so a capacity for yesterday's rates is never shown as today's.
//! One search runs at a time; a change during it starts the next one when it returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cost::{self, ResolvedPrice};
use crate::engine::hooks::CapacityQuery;
use crate::engine::{Engine, Event};
use crate::vocab::capacity::{CapacityEstimate, CapacityState, CapacityView, WhatIfView};
use crate::vocab::command::{BatchingChange, Command, StagedSetup};
use crate::vocab::snapshot::{FrontierView, NoticeLevel, TenantId, TenantView};
use crate::vocab::spec::{Load, TenantSpec};

/// How often an unchanged interactive setup is searched again, so that figures the search reads
/// but the setup key does not (a GPU model reloaded from a changed catalog) catch up. Headless runs
/// search only on change: their CPU belongs to the load generator.
const RECHECK: Duration = Duration::from_secs(15);

/// What the engine knows about capacity between ticks.
#[derive(Default)]
pub(super) struct CapacityTracker {
    generation: u64,
    /// The live query last asked about and the tenants it covers, in its order.
    asked: Option<(CapacityQuery, Vec<TenantId>)>,
    running: bool,
    result: Option<(u64, CapacityEstimate)>,
    computed_at: Option<Instant>,
    staged: Option<StagedSetup>,
    whatif_running: bool,
    whatif: Option<(u64, CapacityEstimate)>,
}

impl Engine {
    /// The live mix as the server runs it: every tenant that is sending, with the instances and
    /// batching read back from the server where it has answered.
    fn live_query(&self) -> (CapacityQuery, Vec<TenantId>) {
        let mut ids = Vec::new();
        let mut tenants = Vec::new();
        for t in self.tenants.iter().filter(|t| !t.paused) {
            let mut spec = t.spec.clone();
            if let Some(server) = &t.server {
                spec.instances = Some(server.instances.max(1));
                spec.dynamic_batching = server.dynamic_batching.clone();
            }
            ids.push(t.id);
            tenants.push(spec);
        }
        let gpu_name = self
            .cfg
            .target
            .gpu
            .clone()
            .or_else(|| self.cfg.telemetry.view().name);
        (CapacityQuery { tenants, gpu_name }, ids)
    }

    /// On the tick: a new generation when the setup changed, and a search when one is due.
    pub(super) fn refresh_capacity(&mut self, now: Instant) {
        let (query, ids) = self.live_query();
        // Until every tenant's model is set up, the server's configuration is still to be read
        // back and the search would be redone at once; meanwhile the CPU goes to the set-up.
        let settled = self
            .tenants
            .iter()
            .all(|t| t.paused || t.server.is_some() || t.setup_error.is_some());
        let tracker = &mut self.capacity;
        let changed = tracker
            .asked
            .as_ref()
            .is_none_or(|(q, i)| *q != query || *i != ids);
        if changed {
            tracker.generation += 1;
            tracker.asked = Some((query.clone(), ids));
        }
        let stale = tracker
            .result
            .as_ref()
            .is_none_or(|(g, _)| *g != tracker.generation);
        let due = !self.cfg.headless
            && tracker
                .computed_at
                .is_some_and(|at| now.duration_since(at) >= RECHECK);
        // A headless run's CPU belongs to its load generator: it searches once the run is over.
        if self.cfg.headless {
            return;
        }
        if !settled || tracker.running || !(stale || due) || query.tenants.is_empty() {
            return;
        }
        tracker.running = true;
        let generation = tracker.generation;
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let tx = self.events.clone();
        tokio::spawn(async move {
            let estimate = tokio::task::spawn_blocking(move || knowledge.capacity(&query))
                .await
                .unwrap_or_else(|e| CapacityEstimate::Unknown {
                    reason: format!("the capacity search stopped: {e}"),
                });
            let _ = tx
                .send(Event::Capacity {
                    generation,
                    estimate,
                })
                .await;
        });
    }

    /// At the end of a headless run: the capacity of the setup as it stands, computed now that
    /// nothing else needs the CPU. Returns whether there is a new result to publish.
    pub(super) async fn settle_capacity(&mut self) -> bool {
        if !self.cfg.headless {
            return false;
        }
        self.refresh_capacity(Instant::now());
        let Some((query, _)) = self.capacity.asked.clone() else {
            return false;
        };
        if query.tenants.is_empty() {
            return false;
        }
        let generation = self.capacity.generation;
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let estimate = tokio::task::spawn_blocking(move || knowledge.capacity(&query))
            .await
            .unwrap_or_else(|e| CapacityEstimate::Unknown {
                reason: format!("the capacity search stopped: {e}"),
            });
        self.on_capacity(generation, estimate);
        true
    }

    pub(super) fn on_capacity(&mut self, generation: u64, estimate: CapacityEstimate) {
        let tracker = &mut self.capacity;
        tracker.running = false;
        tracker.computed_at = Some(Instant::now());
        if generation == tracker.generation {
            tracker.result = Some((generation, estimate));
        }
    }

    /// Stages a setup to predict (or drops the staging) and starts its search.
    pub(super) fn stage(&mut self, staged: Option<StagedSetup>) {
        self.capacity.staged = staged;
        self.spawn_whatif();
    }

    fn spawn_whatif(&mut self) {
        let tracker = &mut self.capacity;
        let Some(staged) = &tracker.staged else {
            tracker.whatif = None;
            return;
        };
        let answered = tracker
            .whatif
            .as_ref()
            .is_some_and(|(s, _)| *s == staged.stage);
        if tracker.whatif_running || answered {
            return;
        }
        let stage = staged.stage;
        let tenants: Vec<TenantSpec> = staged.tenants.iter().map(|(_, t)| t.clone()).collect();
        let query = CapacityQuery {
            tenants,
            gpu_name: tracker.asked.as_ref().and_then(|(q, _)| q.gpu_name.clone()),
        };
        tracker.whatif_running = true;
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let tx = self.events.clone();
        tokio::spawn(async move {
            let estimate = if query.tenants.is_empty() {
                CapacityEstimate::Unknown {
                    reason: "the staged setup has no tenant".to_string(),
                }
            } else {
                tokio::task::spawn_blocking(move || knowledge.capacity(&query))
                    .await
                    .unwrap_or_else(|e| CapacityEstimate::Unknown {
                        reason: format!("the what-if search stopped: {e}"),
                    })
            };
            let _ = tx.send(Event::WhatIf { stage, estimate }).await;
        });
    }

    /// Applies the staging of `stage` at once: every difference from the live setup becomes the
    /// command the dashboard would have sent for it, all within this tick.
    pub(super) fn apply_staged(&mut self, stage: u64) {
        let staged = match self.capacity.staged.take() {
            Some(s) if s.stage == stage => s,
            other => {
                self.capacity.staged = other;
                self.notice(
                    NoticeLevel::Warn,
                    "the what-if changed before it was applied; nothing was applied",
                );
                return;
            }
        };
        self.capacity.whatif = None;
        let mut commands = Vec::new();
        for t in &self.tenants {
            let Some((_, spec)) = staged.tenants.iter().find(|(id, _)| *id == Some(t.id)) else {
                commands.push(Command::RemoveTenant { tenant: t.id });
                continue;
            };
            match (&t.spec.load, &spec.load) {
                (Load::Rate { per_s: a, .. }, Load::Rate { per_s: b, .. }) if a != b => {
                    commands.push(Command::SetRate {
                        tenant: t.id,
                        per_s: *b,
                    });
                }
                (Load::Concurrency(a), Load::Concurrency(b)) if a != b => {
                    commands.push(Command::SetConcurrency {
                        tenant: t.id,
                        n: *b,
                    });
                }
                _ => {}
            }
            let server = t.server.clone().unwrap_or_default();
            let instances = spec.instances.filter(|n| *n != server.instances);
            let batching = if spec.dynamic_batching == server.dynamic_batching {
                BatchingChange::Keep
            } else {
                match &spec.dynamic_batching {
                    Some(db) => BatchingChange::Set(db.clone()),
                    None => BatchingChange::Off,
                }
            };
            if instances.is_some() || batching != BatchingChange::Keep {
                commands.push(Command::Reconfigure {
                    tenant: t.id,
                    instances,
                    dynamic_batching: batching,
                });
            }
        }
        for (id, spec) in staged.tenants {
            if id.is_none() {
                commands.push(Command::AddTenant(Box::new(spec)));
            }
        }
        let n = commands.len();
        for c in commands {
            self.apply(c);
        }
        self.notice(NoticeLevel::Info, format!("what-if applied ({n} changes)"));
    }

    pub(super) fn on_whatif(&mut self, stage: u64, estimate: CapacityEstimate) {
        self.capacity.whatif_running = false;
        if self
            .capacity
            .staged
            .as_ref()
            .is_some_and(|s| s.stage == stage)
        {
            self.capacity.whatif = Some((stage, estimate));
        } else {
            // The staging moved on while this one was computed: answer the latest.
            self.spawn_whatif();
        }
    }

    /// The snapshot's capacity: the result for the current generation with what it is worth
    /// there, or `Computing` while there is none.
    pub(super) fn capacity_view(
        &self,
        price: Option<&ResolvedPrice>,
        tenants: &[TenantView],
    ) -> CapacityView {
        let tracker = &self.capacity;
        let generation = tracker.generation;
        let ids = tracker
            .asked
            .as_ref()
            .map(|(_, ids)| ids.as_slice())
            .unwrap_or(&[]);
        let state = match &tracker.result {
            _ if ids.is_empty() => CapacityState::Unknown {
                reason: "no tenant is sending".to_string(),
            },
            Some((g, CapacityEstimate::Known(p))) if *g == generation => {
                let mut prediction = p.clone();
                for (t, id) in prediction.tenants.iter_mut().zip(ids) {
                    t.tenant = Some(*id);
                }
                let peaks: Vec<_> = ids
                    .iter()
                    .map(|id| {
                        tenants
                            .iter()
                            .find(|t| t.id == *id)
                            .map_or(crate::vocab::snapshot::SoloPeak::UNKNOWN, |t| t.solo_peak)
                    })
                    .collect();
                CapacityState::Known(cost::capacity_figures(price, prediction, &peaks))
            }
            Some((g, CapacityEstimate::Unknown { reason })) if *g == generation => {
                CapacityState::Unknown {
                    reason: reason.clone(),
                }
            }
            _ => CapacityState::Computing,
        };
        CapacityView { generation, state }
    }

    pub(super) fn whatif_view(&self) -> Option<WhatIfView> {
        let staged = self.capacity.staged.as_ref()?;
        let estimate = match &self.capacity.whatif {
            Some((stage, e)) if *stage == staged.stage => {
                let mut e = e.clone();
                if let CapacityEstimate::Known(p) = &mut e {
                    for (t, (id, _)) in p.tenants.iter_mut().zip(&staged.tenants) {
                        t.tenant = *id;
                    }
                }
                Some(e)
            }
            _ => None,
        };
        Some(WhatIfView {
            stage: staged.stage,
            estimate,
        })
    }
}

/// Puts the capacity point on the frontier: the two tenants' rates at capacity, on the ray through
/// their operating point.
pub(super) fn place_capacity_point(frontier: &mut FrontierView, capacity: &CapacityView) {
    let Some(f) = capacity.figures() else {
        return;
    };
    let rate = |id: TenantId| {
        f.prediction
            .tenants
            .iter()
            .find(|t| t.tenant == Some(id))
            .map(|t| t.at_capacity.rate_per_s)
    };
    frontier.capacity_point = rate(frontier.x.0).zip(rate(frontier.y.0));
}
