//! Actions that change a tenant: its load (rate or concurrency), pausing, and the server-side
//! config (instances, dynamic batching). Each checks what the target allows first, so a refusal
//! is a notice on screen rather than a command the engine would reject a tick later.

use super::{App, MAX_CONCURRENCY, MAX_INSTANCES, MAX_RATE, Outgoing};
use crate::vocab::command::{BatchingChange, Command};
use crate::vocab::snapshot::{NoticeLevel, Snapshot, TenantId};
use crate::vocab::spec::{DynamicBatching, Load};

impl App {
    /// One step up or down for the selected tenant: the rate by the current step, or concurrency
    /// by one; nothing is sent when the value is already at its bound.
    pub(super) fn nudge_load(&mut self, snap: &Snapshot, up: bool) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        let load = match self.effective_load(t) {
            Load::Rate { per_s, arrival } => {
                let step = self.step();
                let next = if up {
                    (per_s + step).min(MAX_RATE)
                } else {
                    // Never below 1/s by stepping, but a rate already under 1/s may stay there.
                    (per_s - step).max(1.0_f64.min(per_s))
                };
                if next == per_s {
                    return None;
                }
                Load::Rate {
                    per_s: next,
                    arrival,
                }
            }
            Load::Concurrency(n) => {
                let next = if up {
                    (n + 1).min(MAX_CONCURRENCY)
                } else {
                    n.saturating_sub(1).max(1)
                };
                if next == n {
                    return None;
                }
                Load::Concurrency(next)
            }
        };
        let id = t.id;
        self.set_load(snap, id, load)
    }

    /// Sends the load and remembers it as pending, so the next key press builds on it.
    pub(super) fn set_load(
        &mut self,
        snap: &Snapshot,
        id: TenantId,
        load: Load,
    ) -> Option<Outgoing> {
        let command = match &load {
            Load::Rate { per_s, .. } => Command::SetRate {
                tenant: id,
                per_s: *per_s,
            },
            Load::Concurrency(n) => Command::SetConcurrency { tenant: id, n: *n },
        };
        // A staged edit is not on its way to the run, so it is not pending there.
        if self.staged.is_none() {
            self.remember(snap, id, Some(load), None);
        }
        Some(Outgoing::Live(command))
    }

    /// Pauses the selected tenant, or resumes it when it is (or was just asked to be) paused.
    pub(super) fn toggle_pause(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        let id = t.id;
        let paused = self.effective_paused(t);
        self.remember(snap, id, None, Some(!paused));
        Some(Outgoing::Live(if paused {
            Command::Resume { tenant: Some(id) }
        } else {
            Command::Pause { tenant: Some(id) }
        }))
    }

    /// Resumes every tenant when all are paused, else pauses them all.
    pub(super) fn toggle_pause_all(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        // "All paused" as the user sees it, pending edits included.
        let all = !snap.tenants.is_empty() && snap.tenants.iter().all(|t| self.effective_paused(t));
        let ids: Vec<_> = snap.tenants.iter().map(|t| t.id).collect();
        for id in ids {
            self.remember(snap, id, None, Some(!all));
        }
        Some(Outgoing::Live(if all {
            Command::Resume { tenant: None }
        } else {
            Command::Pause { tenant: None }
        }))
    }

    /// One instance more or fewer for the selected tenant's model, where the server allows it.
    pub(super) fn step_instances(&mut self, snap: &Snapshot, up: bool) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        let staged = self.staged_spec(t).and_then(|s| s.instances);
        let (id, current) = (t.id, staged.or(t.instances));
        if !snap.target.model_control {
            self.say(
                snap,
                NoticeLevel::Warn,
                "instances are fixed: the server offers no model control (Triton's model repository extension)",
            );
            return None;
        }
        let Some(n) = current else {
            self.say(
                snap,
                NoticeLevel::Warn,
                "instance count unknown: the server has not reported this model's config",
            );
            return None;
        };
        let next = if up {
            (n + 1).min(MAX_INSTANCES)
        } else {
            n.saturating_sub(1).max(1)
        };
        if next == n {
            return None;
        }
        Some(Outgoing::Live(Command::Reconfigure {
            tenant: id,
            instances: Some(next),
            dynamic_batching: BatchingChange::Keep,
        }))
    }

    /// Turns dynamic batching on (with Triton's defaults) or off for the selected tenant's model.
    pub(super) fn toggle_batching(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        let batching = match self.staged_spec(t) {
            Some(s) => &s.dynamic_batching,
            None => &t.dynamic_batching,
        };
        let (id, on, max_batch) = (t.id, batching.is_some(), t.max_batch);
        if !snap.target.model_control {
            self.say(
                snap,
                NoticeLevel::Warn,
                "batching is fixed: the server offers no model control (Triton's model repository extension)",
            );
            return None;
        }
        if !on && max_batch == Some(0) {
            self.say(
                snap,
                NoticeLevel::Warn,
                "this model has max_batch_size 0: it cannot batch",
            );
            return None;
        }
        let batching = if on {
            BatchingChange::Off
        } else {
            BatchingChange::Set(DynamicBatching::default())
        };
        Some(Outgoing::Live(Command::Reconfigure {
            tenant: id,
            instances: None,
            dynamic_batching: batching,
        }))
    }
}
