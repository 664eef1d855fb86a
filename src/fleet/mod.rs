//! A multi-target run: one engine per target, one start instant, one command channel.
//!
//! Each target keeps everything a single-target run has — its connection with its own
//! reconnect and backoff, its tenants' statistics, telemetry, price, cost and capacity — because
//! each is an ordinary [`engine`](crate::engine) run. A target that dies therefore stops nobody
//! else, and reconnects on its own when it returns. This module only starts them together, routes
//! each [`Command`] to the engine that owns the tenant it names, and publishes the combined
//! [`FleetView`] on a watch channel of its own, so that no engine ever waits on a consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::engine::{self, EngineConfig, EngineHandle, FleetPlace};
use crate::vocab::command::{Command, StagedSetup};
use crate::vocab::fleet::{FleetTarget, FleetView, TENANT_ID_STRIDE};
use crate::vocab::snapshot::{Snapshot, TenantId};

/// One target of the fleet: its name and its engine's configuration.
pub struct Member {
    pub name: String,
    pub cfg: EngineConfig,
}

/// A running fleet.
pub struct FleetHandle {
    /// The targets' names, in session order.
    pub names: Vec<String>,
    /// Each target's own snapshots, for consumers that follow one target (the exporter).
    pub snapshots: Vec<watch::Receiver<Arc<Snapshot>>>,
    /// Each target's own command channel.
    pub engines: Vec<mpsc::Sender<Command>>,
    /// The combined view, republished at the fastest target's tick.
    pub view: watch::Receiver<Arc<FleetView>>,
    /// Routed to the engine that owns the tenant named; commands naming no tenant go to all.
    pub commands: mpsc::Sender<Command>,
    done: Vec<JoinHandle<Arc<Snapshot>>>,
}

/// Starts every member's engine on the current tokio runtime.
pub fn start(members: Vec<Member>) -> std::io::Result<FleetHandle> {
    let started = Instant::now();
    let tick = members
        .iter()
        .map(|m| m.cfg.spec.tick)
        .min()
        .unwrap_or(Duration::from_millis(250));
    let mut names = Vec::new();
    let mut handles: Vec<EngineHandle> = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        let place = FleetPlace {
            first_tenant_id: i as TenantId * TENANT_ID_STRIDE,
            started,
        };
        names.push(m.name);
        handles.push(engine::start_in_fleet(m.cfg, place)?);
    }
    let snapshots: Vec<_> = handles.iter().map(|h| h.snapshots.clone()).collect();
    let engines: Vec<_> = handles.iter().map(|h| h.commands.clone()).collect();
    let (view_tx, view_rx) = watch::channel(Arc::new(combine(&names, &snapshots)));
    tokio::spawn(publish(names.clone(), snapshots.clone(), view_tx, tick));
    let commands = router(engines.clone());
    Ok(FleetHandle {
        names,
        snapshots,
        engines,
        view: view_rx,
        commands,
        done: handles.into_iter().map(|h| h.done).collect(),
    })
}

impl FleetHandle {
    /// Each target's name with its own snapshots, in session order: what the exporter follows.
    pub fn named_snapshots(&self) -> Vec<(String, watch::Receiver<Arc<Snapshot>>)> {
        self.names
            .iter()
            .cloned()
            .zip(self.snapshots.iter().cloned())
            .collect()
    }

    /// Waits for every engine to end and returns each target's final snapshot, in session order.
    /// An engine that panicked is an error naming its target.
    pub async fn finish(self) -> Result<Vec<Arc<Snapshot>>, FleetError> {
        let mut last = Vec::new();
        for (name, done) in self.names.iter().zip(self.done) {
            let snap = done.await.map_err(|e| FleetError::EngineFailed {
                target: name.clone(),
                message: e.to_string(),
            })?;
            last.push(snap);
        }
        Ok(last)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the engine of target '{target}' stopped unexpectedly: {message}")]
    EngineFailed { target: String, message: String },
}

fn combine(names: &[String], snapshots: &[watch::Receiver<Arc<Snapshot>>]) -> FleetView {
    FleetView::new(
        names
            .iter()
            .zip(snapshots)
            .map(|(name, rx)| FleetTarget {
                name: name.clone(),
                snapshot: Arc::clone(&rx.borrow()),
            })
            .collect(),
    )
}

/// Republishes the combined view each tick while any engine runs; the borrows are released at
/// once, so an engine's next send never waits here.
async fn publish(
    names: Vec<String>,
    snapshots: Vec<watch::Receiver<Arc<Snapshot>>>,
    view: watch::Sender<Arc<FleetView>>,
    tick: Duration,
) {
    let mut every = tokio::time::interval(tick);
    every.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let running = snapshots.iter().any(|rx| rx.has_changed().is_ok());
        view.send_replace(Arc::new(combine(&names, &snapshots)));
        if !running || view.is_closed() {
            return;
        }
    }
}

/// The engine indices a command goes to.
fn destinations(cmd: &Command, engines: usize) -> Vec<usize> {
    let owner = |id: TenantId| vec![FleetView::owner(id).min(engines.saturating_sub(1))];
    match cmd {
        Command::SetRate { tenant, .. }
        | Command::SetConcurrency { tenant, .. }
        | Command::RemoveTenant { tenant }
        | Command::Reconfigure { tenant, .. }
        | Command::Pause {
            tenant: Some(tenant),
        }
        | Command::Resume {
            tenant: Some(tenant),
        } => owner(*tenant),
        Command::WhatIf(Some(StagedSetup { tenants, .. })) => {
            match tenants.iter().find_map(|(id, _)| *id) {
                Some(id) => owner(id),
                None => vec![0],
            }
        }
        // A command that names no live tenant goes to the first target; a save, like a
        // recording, is each target's own.
        Command::AddTenant(_) | Command::ApplyStaged { .. } => vec![0],
        _ => (0..engines).collect(),
    }
}

/// Starts the fleet's command router over `engines` (in session order) on the current tokio
/// runtime; public so that a consumer's routing can be tested against the real router.
pub fn router(engines: Vec<mpsc::Sender<Command>>) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(route(rx, engines));
    tx
}

async fn route(mut commands: mpsc::Receiver<Command>, engines: Vec<mpsc::Sender<Command>>) {
    while let Some(cmd) = commands.recv().await {
        for i in destinations(&cmd, engines.len()) {
            if let Some(engine) = engines.get(i) {
                // An engine that has ended takes no more commands; the others still do.
                let _ = engine.send(cmd.clone()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::spec::{Load, Sla};

    #[test]
    fn commands_go_to_the_target_that_owns_the_tenant_and_the_rest_to_all() {
        let b = TENANT_ID_STRIDE + 3;
        assert_eq!(
            destinations(
                &Command::SetRate {
                    tenant: b,
                    per_s: 1.0
                },
                3
            ),
            [1]
        );
        assert_eq!(destinations(&Command::Pause { tenant: Some(2) }, 3), [0]);
        assert_eq!(destinations(&Command::Pause { tenant: None }, 3), [0, 1, 2]);
        assert_eq!(destinations(&Command::Stop, 2), [0, 1]);
        let staged = StagedSetup {
            stage: 1,
            tenants: vec![(
                Some(2 * TENANT_ID_STRIDE),
                crate::vocab::spec::TenantSpec {
                    model: "simple".into(),
                    load: Load::Concurrency(1),
                    batch: 1,
                    sla: Sla {
                        latency_ms: 1.0,
                        percentile: 95.0,
                    },
                    instances: None,
                    dynamic_batching: None,
                    data: Default::default(),
                    max_in_flight: 1,
                    deadline: Duration::from_secs(1),
                    inputs: Vec::new(),
                },
            )],
        };
        assert_eq!(destinations(&Command::WhatIf(Some(staged)), 3), [2]);
    }
}
