//! Assembling the tick's snapshot: tenant views, GPU figures, the cost panel and the frontier.
//!
//! The history (chart series) is shared, not copied: the engine holds it in an `Arc` and every
//! snapshot points at the same one. Pushing this tick's points copies it only when a consumer still
//! holds the previous snapshot, and that copy is cheap (a series shares its full blocks, see
//! [`crate::vocab::snapshot::Series`]).

use std::sync::Arc;
use std::time::Instant;

use crate::cost::{self, FrontierAxis, ResolvedPrice, TenantLoad};
use crate::engine::Engine;
use crate::measure::ClientFigures;
use crate::vocab::snapshot::{
    ClientBound, ClientView, CostView, FrontierView, History, Snapshot, TenantView,
};

impl Engine {
    pub(super) fn snapshot(&mut self, now: Instant) -> Snapshot {
        let window_s = self.window.as_secs_f64();
        let measured_s = self
            .measuring_since
            .map(|s| {
                self.measure_end
                    .unwrap_or(now)
                    .duration_since(s)
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        let tenants: Vec<_> = self
            .tenants
            .iter()
            .map(|t| t.view(measured_s, &self.cpu))
            .collect();
        let client = self.client_view(&tenants);
        let gpu = self.cfg.telemetry.view();
        let (cost, mut frontier) = live_cost(self.cfg.price.as_ref(), &tenants);
        let capacity = self.capacity_view(self.cfg.price.as_ref(), &tenants);
        if let Some(f) = &mut frontier {
            super::capacity::place_capacity_point(f, &capacity);
        }
        let mut target = self.cfg.target.clone();
        if target.server_version.is_none() {
            target.server_version = self.server_version.clone();
        }
        target.model_control = self.model_control();
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
            capacity: Some(capacity),
            whatif: self.whatif_view(),
            notices: self.notices.iter().cloned().collect(),
            recording: self.recording.as_ref().map(|r| r.path().to_string()),
            recording_error: self.recording_error.clone(),
            replay: None,
            client,
            repository: self.repository.clone(),
            history: Arc::new(History::default()),
        };
        self.seq += 1;
        Arc::make_mut(&mut self.history).push(&snap);
        snap.history = Arc::clone(&self.history);
        snap
    }
}

impl Engine {
    /// The run's client-bound verdict: the union of its tenants' (a tenant that is not driven,
    /// such as a paused one, has no say), and "out of CPU" whenever the process is.
    fn client_view(&self, tenants: &[TenantView]) -> ClientView {
        let driven = || tenants.iter().filter(|t| !t.paused);
        let cores = self.cpu.cores();
        let cpu_flag = |share: Option<f64>| {
            crate::measure::client::assess(&ClientFigures {
                cpu_share: share,
                cores,
                ..ClientFigures::default()
            })
        };
        let window_cpu = cpu_flag(self.cpu.window_share());
        let totals_cpu = if self.measuring_since.is_some() {
            cpu_flag(self.cpu.measured_share())
        } else {
            None
        };
        ClientView {
            window: ClientBound::merge(
                driven()
                    .filter_map(|t| t.window.client_bound.as_ref())
                    .chain(window_cpu.as_ref()),
            ),
            totals: ClientBound::merge(
                tenants
                    .iter()
                    .filter_map(|t| t.totals.client_bound.as_ref())
                    .chain(totals_cpu.as_ref()),
            ),
            cpu_share: self.cpu.window_share(),
            cores,
        }
    }
}

/// The cost panel and the frontier from the window's figures.
fn live_cost(
    price: Option<&ResolvedPrice>,
    tenants: &[TenantView],
) -> (Option<CostView>, Option<FrontierView>) {
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

fn axis(t: &TenantView) -> FrontierAxis<'_> {
    FrontierAxis {
        tenant: t.id,
        model: &t.model,
        solo_peak: t.solo_peak,
        achieved_per_s: t.window.achieved_per_s,
    }
}

#[cfg(test)]
mod tests {
    use crate::vocab::snapshot::Series;

    #[test]
    fn a_series_clone_shares_points_and_stays_as_it_was() {
        let mut s = Series::with_capacity(150);
        for i in 0..200 {
            s.push(f64::from(i), f64::from(i) * 2.0);
        }
        // The ring keeps the newest 150, across block boundaries, oldest first.
        assert_eq!(s.len(), 150);
        assert_eq!(s.iter().next(), Some((50.0, 100.0)));
        assert_eq!(s.last(), Some((199.0, 398.0)));
        assert_eq!(s.iter().rev().nth(1), Some((198.0, 396.0)));
        let published = s.clone();
        for i in 200..300 {
            s.push(f64::from(i), 0.0);
        }
        // What was published does not move when the engine pushes on.
        assert_eq!(published.len(), 150);
        assert_eq!(published.iter().next(), Some((50.0, 100.0)));
        assert_eq!(published.last(), Some((199.0, 398.0)));
        assert_eq!(s.iter().next(), Some((150.0, 300.0)));
        assert_eq!(s.last(), Some((299.0, 0.0)));
        let expected: Vec<f64> = (150..300).map(f64::from).collect();
        assert_eq!(s.iter().map(|(t, _)| t).collect::<Vec<_>>(), expected);
        assert_ne!(s, published);
        assert_eq!(published, published.clone());
    }
}
