//! What-if: edits staged on a copy of the setup instead of sent, each one answered by the engine
//! with a prediction (in the snapshot's `whatif`), then applied all at once or discarded.
//!
//! The edit actions stay the same keys and the same code: while a staging is open, the command an
//! action would send is applied to the staged copy here instead, and what goes out is the staged
//! setup to predict.

use super::{App, Outgoing};
use crate::vocab::command::{BatchingChange, Command, StagedSetup};
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{NoticeLevel, Snapshot, TenantId, TenantView};
use crate::vocab::spec::{Load, TenantSpec};

impl App {
    /// Opens a staging from the live setup, or discards the open one.
    pub(super) fn toggle_staging(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        if self.staged.take().is_some() {
            self.say(snap, NoticeLevel::Info, "what-if discarded");
            return Some(Outgoing::Live(Command::WhatIf(None)));
        }
        // A what-if is one target's: in a fleet, the selected tenant's (ids name their target).
        let target = self.selected_tenant(snap).map(|t| FleetView::owner(t.id));
        let tenants = snap
            .tenants
            .iter()
            .filter(|t| target.is_none_or(|n| FleetView::owner(t.id) == n))
            .map(|t| (Some(t.id), spec_of(self, t)))
            .collect();
        self.stage_counter += 1;
        self.staged = Some(StagedSetup {
            stage: self.stage_counter,
            tenants,
        });
        self.say(
            snap,
            NoticeLevel::Info,
            "what-if: edits are staged, not applied (A applies, W discards)",
        );
        self.staged_out()
    }

    /// Applies the staging as it stands, in one command the engine carries out within one tick.
    pub(super) fn apply_staging(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        let Some(staged) = self.staged.take() else {
            self.say(
                snap,
                NoticeLevel::Info,
                "nothing staged (W stages a what-if)",
            );
            return None;
        };
        Some(Outgoing::Live(Command::ApplyStaged {
            stage: staged.stage,
        }))
    }

    /// While staging, an edit command changes the staged copy and the staging goes out to be
    /// predicted; anything else (and every command outside a staging) passes through.
    pub(super) fn divert(&mut self, out: Option<Outgoing>) -> Option<Outgoing> {
        let Some(staged) = &mut self.staged else {
            return out;
        };
        let Some(Outgoing::Live(cmd)) = &out else {
            return out;
        };
        match cmd.clone() {
            Command::SetRate { tenant, per_s } => {
                if let Some(spec) = staged_tenant(staged, tenant)
                    && let Load::Rate { per_s: r, .. } = &mut spec.load
                {
                    *r = per_s;
                }
            }
            Command::SetConcurrency { tenant, n } => {
                if let Some(spec) = staged_tenant(staged, tenant) {
                    spec.load = Load::Concurrency(n);
                }
            }
            Command::Reconfigure {
                tenant,
                instances,
                dynamic_batching,
            } => {
                if let Some(spec) = staged_tenant(staged, tenant) {
                    if instances.is_some() {
                        spec.instances = instances;
                    }
                    match dynamic_batching {
                        BatchingChange::Keep => {}
                        BatchingChange::Off => spec.dynamic_batching = None,
                        BatchingChange::Set(db) => spec.dynamic_batching = Some(db),
                    }
                }
            }
            Command::AddTenant(spec) => staged.tenants.push((None, *spec)),
            Command::RemoveTenant { tenant } => {
                staged.tenants.retain(|(t, _)| *t != Some(tenant));
            }
            _ => return out,
        }
        self.stage_counter += 1;
        if let Some(s) = &mut self.staged {
            s.stage = self.stage_counter;
        }
        self.staged_out()
    }

    fn staged_out(&self) -> Option<Outgoing> {
        self.staged
            .clone()
            .map(|s| Outgoing::Live(Command::WhatIf(Some(s))))
    }

    /// The staged spec of a live tenant, while staging.
    pub(super) fn staged_spec(&self, t: &TenantView) -> Option<&TenantSpec> {
        self.staged.as_ref().and_then(|s| {
            s.tenants
                .iter()
                .find(|(id, _)| *id == Some(t.id))
                .map(|(_, spec)| spec)
        })
    }
}

/// A live tenant as a spec to stage: its load as last set, its server config as read back.
fn spec_of(app: &App, t: &TenantView) -> TenantSpec {
    TenantSpec {
        load: app.effective_load(t),
        batch: t.batch,
        sla: t.sla,
        instances: t.instances,
        dynamic_batching: t.dynamic_batching.clone(),
        ..super::default_tenant(&t.model)
    }
}

fn staged_tenant(s: &mut StagedSetup, id: TenantId) -> Option<&mut TenantSpec> {
    s.tenants
        .iter_mut()
        .find(|(t, _)| *t == Some(id))
        .map(|(_, spec)| spec)
}
