//! A multi-target run on the dashboard: which target the selection is on, and the one snapshot
//! the app's key handling reads.
//!
//! The panels keep drawing one [`Snapshot`] (the selected tenant's target), so only the tenant
//! table and the header need to know about the fleet; the app keeps its single-snapshot logic by
//! reading a snapshot of the selected target whose tenant list is the whole fleet's, which works
//! because tenant ids are unique across the fleet.

use std::sync::Arc;

use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{Snapshot, TenantId};

/// The index of the target the selection is on: the owner of `selected` where that tenant is
/// still in the fleet, else the first target holding any tenant, else the first target.
pub fn selected_target(fleet: &FleetView, selected: Option<TenantId>) -> usize {
    let holds = |i: usize, id: TenantId| {
        fleet
            .targets
            .get(i)
            .is_some_and(|t| t.snapshot.tenants.iter().any(|x| x.id == id))
    };
    if let Some(id) = selected
        && holds(FleetView::owner(id), id)
    {
        return FleetView::owner(id);
    }
    fleet
        .targets
        .iter()
        .position(|t| !t.snapshot.tenants.is_empty())
        .unwrap_or(0)
}

/// The selected target's snapshot with every target's tenants, in session order: what the app
/// moves its selection over and edits. `None` for a fleet without targets.
pub fn app_snapshot(fleet: &FleetView, selected: Option<TenantId>) -> Option<Arc<Snapshot>> {
    let focus = fleet.targets.get(selected_target(fleet, selected))?;
    let mut snap = (*focus.snapshot).clone();
    snap.tenants = fleet
        .targets
        .iter()
        .flat_map(|t| t.snapshot.tenants.iter().cloned())
        .collect();
    Some(Arc::new(snap))
}

/// One row of the grouped tenant table: a target's header, or a tenant by its place in the
/// target's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRow {
    Target(usize),
    Tenant { target: usize, index: usize },
}

/// The grouped table's rows in order: each target's header, then its tenants.
pub fn table_rows(fleet: &FleetView) -> Vec<TableRow> {
    let mut rows = Vec::new();
    for (t, target) in fleet.targets.iter().enumerate() {
        rows.push(TableRow::Target(t));
        rows.extend(
            (0..target.snapshot.tenants.len()).map(|index| TableRow::Tenant { target: t, index }),
        );
    }
    rows
}

/// The tenant id a grouped-table row shows, if it is a tenant's.
pub fn row_tenant(fleet: &FleetView, row: TableRow) -> Option<TenantId> {
    match row {
        TableRow::Target(_) => None,
        TableRow::Tenant { target, index } => fleet
            .targets
            .get(target)
            .and_then(|t| t.snapshot.tenants.get(index))
            .map(|t| t.id),
    }
}
