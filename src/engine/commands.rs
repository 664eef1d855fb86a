//! What the TUI and replay ask of a running engine; each command is applied within one tick and
//! its failures become notices (the sender never waits on the server).

use crate::engine::Engine;
use crate::engine::tenant::Tenant;
use crate::vocab::command::{BatchingChange, Command};
use crate::vocab::snapshot::{NoticeLevel, TenantId};
use crate::vocab::spec::{Load, RunSpec};

impl Engine {
    pub(super) fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::SetRate { tenant, per_s } => self.set_rate(tenant, per_s),
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
            } => self.reconfigure(tenant, instances, dynamic_batching),
            Command::SetWindow(w) => self.set_window(w),
            Command::SaveSession { path } => {
                let spec = self.current_spec();
                match self.cfg.persistence.save_session(&spec, path) {
                    Ok(p) => self.notice(NoticeLevel::Info, format!("saved {}", p.display())),
                    Err(e) => self.notice(NoticeLevel::Error, format!("saving failed: {e}")),
                }
            }
            Command::SetRecording(on) => self.set_recording(on),
            Command::WhatIf(staged) => self.stage(staged),
            Command::ApplyStaged { stage } => self.apply_staged(stage),
            Command::Stop => {}
        }
    }

    fn set_rate(&mut self, tenant: TenantId, per_s: f64) {
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

    /// Changes a model's instances and batching, for every tenant of that model (they share the
    /// server's configuration), and sets each up again so the server reloads it.
    fn reconfigure(&mut self, tenant: TenantId, instances: Option<u32>, batching: BatchingChange) {
        if let Some(why) = self.no_model_control() {
            self.notice(
                NoticeLevel::Warn,
                format!("instances and batching are fixed: {why}"),
            );
            return;
        }
        let Some(t) = self.tenant_mut(tenant) else {
            return;
        };
        let current = t.server.clone().unwrap_or_default();
        let instances = Some(instances.unwrap_or(current.instances).max(1));
        let dynamic_batching = match batching {
            BatchingChange::Keep => current.dynamic_batching,
            BatchingChange::Off => None,
            BatchingChange::Set(db) => Some(db),
        };
        let model = t.spec.model.clone();
        let ids: Vec<TenantId> = self
            .tenants
            .iter_mut()
            .filter(|o| o.spec.model == model)
            .map(|o| {
                o.spec.instances = instances;
                o.spec.dynamic_batching = dynamic_batching.clone();
                o.id
            })
            .collect();
        for id in ids {
            self.spawn_setup(id);
        }
    }

    fn set_window(&mut self, window: std::time::Duration) {
        self.window = window.max(self.cfg.spec.tick);
        self.cpu.set_window(self.window);
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

    /// The setup as it stands now, for saving and for recording headers.
    pub(super) fn current_spec(&self) -> RunSpec {
        let mut spec = self.cfg.spec.clone();
        spec.window = self.window;
        spec.tenants = self.tenants.iter().map(|t| t.spec.clone()).collect();
        spec
    }
}
