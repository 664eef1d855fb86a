//! The view of a multi-target run: each target's own [`Snapshot`] under its name, and the fleet
//! line that sums them. A single-target run keeps using its `Snapshot` alone.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::vocab::snapshot::{Snapshot, TenantId};

/// Tenant ids of the fleet's n-th target start at n × this, so that an id names one tenant across
/// the fleet and the target that owns it can be read off the id.
pub const TENANT_ID_STRIDE: TenantId = 1 << 20;

/// Every target's latest snapshot, in session order, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetView {
    pub targets: Vec<FleetTarget>,
    pub line: FleetLine,
}

/// One target of the fleet as its own engine last published it.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetTarget {
    pub name: String,
    pub snapshot: Arc<Snapshot>,
}

/// The fleet line: what the whole fleet costs and does, and its weakest SLA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetLine {
    /// Σ of the targets' prices.
    pub usd_per_hour: f64,
    /// Σ of the tenants' achieved rates, completions per second.
    pub throughput_per_s: f64,
    /// Σ of the tenants' goodput, completions within their SLA per second.
    pub goodput_per_s: f64,
    /// The tenant with the lowest SLA attainment, where any tenant has one.
    pub worst_sla: Option<WorstSla>,
}

/// The tenant whose SLA attainment is lowest in the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorstSla {
    pub target: String,
    pub tenant: String,
    pub attainment: f64,
}

/// Which figures a fleet line sums: the live window (dashboard) or the run's totals (report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Window,
    Totals,
}

impl FleetLine {
    /// Sums `targets`, each a (name, snapshot) pair.
    pub fn of<'a>(targets: impl IntoIterator<Item = (&'a str, &'a Snapshot)>, span: Span) -> Self {
        let mut line = FleetLine::default();
        for (name, snap) in targets {
            line.usd_per_hour += snap.cost.as_ref().map_or(0.0, |c| c.usd_per_hour);
            for t in &snap.tenants {
                let (achieved, goodput, attainment) = match span {
                    Span::Window => (
                        t.window.achieved_per_s,
                        t.window.goodput_per_s,
                        t.window.attainment,
                    ),
                    Span::Totals => (
                        t.totals.achieved_per_s,
                        t.totals.goodput_per_s,
                        t.totals.attainment,
                    ),
                };
                line.throughput_per_s += achieved;
                line.goodput_per_s += goodput;
                let Some(a) = attainment else { continue };
                if line.worst_sla.as_ref().is_none_or(|w| a < w.attainment) {
                    line.worst_sla = Some(WorstSla {
                        target: name.to_string(),
                        tenant: t.model.clone(),
                        attainment: a,
                    });
                }
            }
        }
        line
    }
}

impl FleetView {
    /// The view of these targets, with the fleet line over their live windows.
    pub fn new(targets: Vec<FleetTarget>) -> Self {
        let line = FleetLine::of(
            targets.iter().map(|t| (t.name.as_str(), &*t.snapshot)),
            Span::Window,
        );
        FleetView { targets, line }
    }

    /// The index of the target that owns tenant `id`.
    pub fn owner(id: TenantId) -> usize {
        (id / TENANT_ID_STRIDE) as usize
    }
}
