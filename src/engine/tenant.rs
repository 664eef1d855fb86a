//! One tenant inside the engine: its spec, its driver once set up, and its server-side figures.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::hooks::ServerModel;
use crate::loadgen::{ClosedLoop, TenantShared};
use crate::measure::{CpuMeter, SpanContext, TenantMeter};
use crate::triton::shm::TenantRegions;
use crate::triton::{ModelStats, StatsWindow};
use crate::vocab::snapshot::{ServerWindow, SoloPeak, TenantId, TenantView, Totals, WindowStats};
use crate::vocab::spec::TenantSpec;

pub(crate) struct Tenant {
    pub id: TenantId,
    pub spec: TenantSpec,
    pub shared: Option<Arc<TenantShared>>,
    /// The tenant's measurements; the load generator records through its recorder handle.
    pub meter: Option<TenantMeter>,
    pub closed: Option<ClosedLoop>,
    /// Its arrivals (or closed loop) have been started; they start once, however often it is set up.
    pub driving: bool,
    pub server: Option<ServerModel>,
    /// Shared memory regions the tenant's requests refer to (released when replaced or removed).
    pub shm: Option<TenantRegions>,
    pub peak: SoloPeak,
    pub paused: bool,
    /// A setup is running (so a second one is not started).
    pub setting_up: bool,
    pub setup_error: Option<String>,
    /// Cumulative statistics polls within the window, oldest first.
    stats: VecDeque<(Instant, ModelStats)>,
    pub server_window: Option<ServerWindow>,
    /// The statistics poll taken when measurement began, and the figures since then.
    measure_base: Option<(Instant, ModelStats)>,
    server_totals: Option<ServerWindow>,
    /// Error codes whose first message has been shown as a notice.
    announced_errors: BTreeSet<String>,
}

impl Tenant {
    pub fn new(id: TenantId, spec: TenantSpec) -> Self {
        Tenant {
            id,
            spec,
            shared: None,
            meter: None,
            closed: None,
            driving: false,
            server: None,
            shm: None,
            peak: SoloPeak::UNKNOWN,
            paused: false,
            setting_up: false,
            setup_error: None,
            stats: VecDeque::new(),
            server_window: None,
            measure_base: None,
            server_totals: None,
            announced_errors: BTreeSet::new(),
        }
    }

    /// The first message of each error code not announced yet, as notice texts: the dashboard
    /// shows why requests fail as soon as the first one does, once per code.
    pub fn new_error_notices(&mut self) -> Vec<String> {
        let Some(meter) = &self.meter else {
            return Vec::new();
        };
        let mut texts = Vec::new();
        for (code, message) in meter.first_messages() {
            if self.announced_errors.insert(code.clone()) {
                texts.push(format!(
                    "{}: requests fail with {code}: {message}",
                    self.spec.model
                ));
            }
        }
        texts
    }

    /// Adds a statistics poll and recomputes the server-side window figures from the oldest poll
    /// still inside the window to this one.
    ///
    /// A poll whose totals went back (the server restarted or reloaded the model) starts the window
    /// and the measured totals afresh from itself, rather than diffing across the reset; returns
    /// true then.
    pub fn push_stats(&mut self, at: Instant, stats: ModelStats, window: Duration) -> bool {
        let restarted = self.stats.back().is_some_and(|(t, last)| {
            StatsWindow::diff(last, &stats, at.duration_since(*t)).restarted
        });
        if restarted {
            self.stats.clear();
            if self.measure_base.is_some() {
                self.measure_base = Some((at, stats.clone()));
            }
        }
        while let Some((t, _)) = self.stats.front() {
            if at.duration_since(*t) > window && self.stats.len() > 1 {
                self.stats.pop_front();
            } else {
                break;
            }
        }
        if let Some((t0, base)) = &self.measure_base {
            self.server_totals = server_figures(base, *t0, &stats, at);
        }
        self.stats.push_back((at, stats));
        self.server_window = match (self.stats.front(), self.stats.back()) {
            (Some((t0, first)), Some((t1, last))) => server_figures(first, *t0, last, *t1),
            _ => None,
        };
        restarted
    }

    /// Measurement starts now: server totals count from the latest poll.
    pub fn mark_measure_start(&mut self) {
        self.measure_base = self.stats.back().cloned();
        self.server_totals = None;
    }

    pub fn clear_stats(&mut self) {
        self.stats.clear();
        self.server_window = None;
    }

    /// The tenant's figures, with the client-bound verdicts given the process's CPU.
    pub fn view(&self, measured_s: f64, cpu: &CpuMeter) -> TenantView {
        let (window, totals) = match (&self.meter, &self.shared) {
            (Some(m), Some(shared)) => {
                let span = |cpu_share, server: Option<&ServerWindow>| SpanContext {
                    cpu_share,
                    server_ms: server.and_then(ServerWindow::per_request_ms),
                };
                let (mut w, mut totals) = m.stats_with_client(
                    measured_s,
                    span(cpu.window_share(), self.server_window.as_ref()),
                    span(cpu.measured_share(), self.server_totals.as_ref()),
                    cpu.cores(),
                );
                w.in_flight = shared.in_flight();
                totals.server = self.server_totals;
                (w, totals)
            }
            _ => (WindowStats::default(), Totals::default()),
        };
        // What the server did not report is shown as unknown, not as Perseus's assumption.
        let reported = self.server.as_ref().filter(|s| s.reported);
        TenantView {
            id: self.id,
            model: self.spec.model.clone(),
            load: self.spec.load.clone(),
            paused: self.paused,
            batch: self.spec.batch,
            sla: self.spec.sla,
            instances: reported.map(|s| s.instances),
            dynamic_batching: match (&self.server, reported) {
                (_, Some(s)) => s.dynamic_batching.clone(),
                (Some(_), None) => None,
                (None, _) => self.spec.dynamic_batching.clone(),
            },
            max_batch: reported.map(|s| s.max_batch),
            window,
            totals,
            server: self.server_window,
            solo_peak: self.peak,
            setup_error: self.setup_error.clone(),
        }
    }
}

fn server_figures(
    first: &ModelStats,
    t0: Instant,
    last: &ModelStats,
    t1: Instant,
) -> Option<ServerWindow> {
    if t1 <= t0 {
        return None;
    }
    let w = StatsWindow::diff(first, last, t1.duration_since(t0));
    Some(ServerWindow {
        queue_us: w.queue_us.unwrap_or(0.0),
        compute_input_us: w.compute_input_us.unwrap_or(0.0),
        compute_infer_us: w.compute_infer_us.unwrap_or(0.0),
        compute_output_us: w.compute_output_us.unwrap_or(0.0),
        request_us: (w.delta.success.count > 0)
            .then(|| w.delta.success.ns as f64 / w.delta.success.count as f64 / 1e3),
        avg_batch: w.avg_batch.unwrap_or(0.0),
        inferences_per_s: w.inferences_per_s,
        executions_per_s: w.executions_per_s,
    })
}
