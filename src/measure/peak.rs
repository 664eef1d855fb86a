//! The solo-peak search that `perseus probe` drives against a real server, as a pure state machine.
//!
//! PERSEUS's method: raise one model's rate alone until throughput stops rising or the SLA breaks.
//! Each rate is held until its figures are stable — perf_analyzer's rule, three consecutive windows
//! within 10% of each other — then judged. The ramp multiplies the rate; once a rate fails, a
//! bisection between the last passing and the first failing rate narrows the peak to a set
//! resolution. The driver owns time and the server: it sets the proposed rate, measures windows,
//! and feeds them in; nothing here sleeps or does I/O, so tests drive it with a synthetic server.

/// Tuning of the search; the defaults follow perf_analyzer and PERSEUS.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakSearchConfig {
    /// First rate tried, requests per second.
    pub start_per_s: f64,
    /// Ramp factor between passing rates.
    pub growth: f64,
    /// Consecutive windows that must agree before a rate is judged.
    pub stable_windows: usize,
    /// Largest relative spread (max − min) / mean among those windows, for throughput and latency.
    pub stability: f64,
    /// Windows after which a rate is judged even if never stable (the verdict notes it).
    pub max_windows: usize,
    /// A rate passes only if achieved ≥ `keep_up` × offered: an open-loop server that falls behind
    /// builds a queue, whatever its latency in the window says.
    pub keep_up: f64,
    /// Throughput "stops rising" when a ramp step gains less than this fraction.
    pub plateau_gain: f64,
    /// Bisection ends when the bracket is narrower than this fraction of its lower end.
    pub resolution: f64,
    /// Highest rate the search will propose.
    pub max_per_s: f64,
    /// A window whose latency exceeds the SLA by this factor fails its rate at once.
    pub hopeless_factor: f64,
}

impl Default for PeakSearchConfig {
    fn default() -> Self {
        PeakSearchConfig {
            start_per_s: 10.0,
            growth: 2.0,
            stable_windows: 3,
            stability: 0.10,
            max_windows: 10,
            keep_up: 0.95,
            plateau_gain: 0.05,
            resolution: 0.02,
            max_per_s: 100_000.0,
            hopeless_factor: 2.0,
        }
    }
}

/// One measured window at the proposed rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeWindow {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    /// Latency at the SLA's percentile, from the intended send time.
    pub latency_ms: f64,
    pub errors: u64,
    pub dropped: u64,
}

/// The verdict on one rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepResult {
    pub rate_per_s: f64,
    /// Means over the judged windows.
    pub achieved_per_s: f64,
    pub latency_ms: f64,
    pub windows: usize,
    pub stable: bool,
    pub passed: bool,
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeakReason {
    /// A higher rate broke the SLA (or fell behind); the peak is the highest passing rate.
    SlaBroken,
    /// Throughput stopped rising while the SLA still held.
    ThroughputPlateau,
    /// The rate ceiling passed; the true peak is higher.
    RateCeiling,
    /// Not even the lowest rate tried met the SLA.
    NeverMet,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeakOutcome {
    /// Achieved throughput at the highest passing rate; `None` when no rate passed.
    pub peak_per_s: Option<f64>,
    pub reason: PeakReason,
    pub steps: Vec<StepResult>,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq)]
pub enum PeakStep {
    /// Run (or keep running) the model alone at this rate and report the next window.
    Measure {
        per_s: f64,
    },
    Done(PeakOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Ramp,
    Bisect { lo: f64, hi: f64 },
    Done,
}

/// The search state; see the module doc.
#[derive(Debug, Clone)]
pub struct PeakSearch {
    cfg: PeakSearchConfig,
    sla_latency_ms: f64,
    phase: Phase,
    rate: f64,
    windows: Vec<ProbeWindow>,
    steps: Vec<StepResult>,
    best: Option<StepResult>,
    reason: Option<PeakReason>,
}

impl PeakSearch {
    pub fn new(sla_latency_ms: f64, cfg: PeakSearchConfig) -> PeakSearch {
        let rate = cfg.start_per_s.min(cfg.max_per_s).max(f64::MIN_POSITIVE);
        PeakSearch {
            cfg,
            sla_latency_ms,
            phase: Phase::Ramp,
            rate,
            windows: Vec::new(),
            steps: Vec::new(),
            best: None,
            reason: None,
        }
    }

    /// The current instruction (the first is to measure at the start rate).
    pub fn next_step(&self) -> PeakStep {
        match self.phase {
            Phase::Done => PeakStep::Done(self.outcome()),
            _ => PeakStep::Measure { per_s: self.rate },
        }
    }

    /// Feeds one window measured at the proposed rate and returns the next instruction.
    pub fn observe(&mut self, window: ProbeWindow) -> PeakStep {
        if self.phase == Phase::Done {
            return self.next_step();
        }
        self.windows.push(window);
        if let Some(step) = self.judge() {
            self.windows.clear();
            self.steps.push(step);
            self.advance(step);
        }
        self.next_step()
    }

    /// A verdict once the windows allow one.
    fn judge(&self) -> Option<StepResult> {
        let last = self.windows.last()?;
        if last.errors > 0
            || last.dropped > 0
            || last.latency_ms > self.sla_latency_ms * self.cfg.hopeless_factor
        {
            return Some(StepResult {
                rate_per_s: self.rate,
                achieved_per_s: last.achieved_per_s,
                latency_ms: last.latency_ms,
                windows: self.windows.len(),
                stable: false,
                passed: false,
            });
        }
        let n = self.cfg.stable_windows.max(1);
        if self.windows.len() < n {
            return None;
        }
        let recent = &self.windows[self.windows.len() - n..];
        let stable = spread(recent.iter().map(|w| w.achieved_per_s)) <= self.cfg.stability
            && spread(recent.iter().map(|w| w.latency_ms)) <= self.cfg.stability;
        if !stable && self.windows.len() < self.cfg.max_windows.max(n) {
            return None;
        }
        let mean = |f: fn(&ProbeWindow) -> f64| recent.iter().map(f).sum::<f64>() / n as f64;
        let achieved = mean(|w| w.achieved_per_s);
        let offered = mean(|w| w.offered_per_s);
        let worst_latency = recent.iter().map(|w| w.latency_ms).fold(0.0, f64::max);
        let passed = worst_latency <= self.sla_latency_ms && achieved >= self.cfg.keep_up * offered;
        Some(StepResult {
            rate_per_s: self.rate,
            achieved_per_s: achieved,
            latency_ms: mean(|w| w.latency_ms),
            windows: self.windows.len(),
            stable,
            passed,
        })
    }

    fn advance(&mut self, step: StepResult) {
        match self.phase {
            Phase::Ramp => self.advance_ramp(step),
            Phase::Bisect { lo, hi } => {
                if step.passed {
                    self.record_pass(step);
                    self.bisect(step.rate_per_s, hi);
                } else {
                    self.bisect(lo, step.rate_per_s);
                }
            }
            Phase::Done => {}
        }
    }

    fn advance_ramp(&mut self, step: StepResult) {
        if !step.passed {
            self.reason = Some(PeakReason::SlaBroken);
            let lo = self.best.map_or(0.0, |b| b.rate_per_s);
            self.bisect(lo, step.rate_per_s);
            return;
        }
        let plateau = self.best.is_some_and(|b| {
            step.achieved_per_s < b.achieved_per_s * (1.0 + self.cfg.plateau_gain)
        });
        if plateau {
            // More offered load bought no throughput: the peak lies below this rate.
            self.reason = Some(PeakReason::ThroughputPlateau);
            let lo = self.best.map_or(0.0, |b| b.rate_per_s);
            self.bisect(lo, step.rate_per_s);
            return;
        }
        self.record_pass(step);
        if step.rate_per_s >= self.cfg.max_per_s {
            self.reason = Some(PeakReason::RateCeiling);
            self.phase = Phase::Done;
            return;
        }
        self.rate = (step.rate_per_s * self.cfg.growth.max(1.01)).min(self.cfg.max_per_s);
    }

    fn record_pass(&mut self, step: StepResult) {
        if self
            .best
            .is_none_or(|b| step.achieved_per_s >= b.achieved_per_s)
        {
            self.best = Some(step);
        }
    }

    /// Proposes the middle of (lo, hi), or ends when the bracket is narrow enough.
    fn bisect(&mut self, lo: f64, hi: f64) {
        // With no passing rate yet the bracket is (0, hi): stop once hi is a small fraction of the
        // start rate (a fixed floor; one relative to hi would shrink with it forever).
        let floor = self.cfg.start_per_s * self.cfg.resolution;
        let narrow = if lo > 0.0 {
            hi - lo <= self.cfg.resolution * lo
        } else {
            hi <= floor
        };
        if narrow {
            if self.best.is_none() {
                self.reason = Some(PeakReason::NeverMet);
            }
            self.phase = Phase::Done;
            return;
        }
        self.phase = Phase::Bisect { lo, hi };
        self.rate = (lo + hi) / 2.0;
    }

    fn outcome(&self) -> PeakOutcome {
        PeakOutcome {
            peak_per_s: self.best.map(|b| b.achieved_per_s),
            reason: self.reason.unwrap_or(PeakReason::SlaBroken),
            steps: self.steps.clone(),
        }
    }
}

/// (max − min) / mean; zero for an all-zero set.
fn spread(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (mut min, mut max, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    let mean = if n == 0 { 0.0 } else { sum / n as f64 };
    if mean <= 0.0 { 0.0 } else { (max - min) / mean }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic server: one model with capacity `capacity` req/s and a 5 ms service time whose
    /// p95 grows like an M/M/1 queue's, 5 / (1 − ρ) ms; beyond capacity it falls behind.
    fn mm1(capacity: f64, rate: f64) -> (f64, f64) {
        if rate < capacity {
            (rate, 5.0 / (1.0 - rate / capacity))
        } else {
            (capacity, 10_000.0)
        }
    }

    /// Drives a search against `server` with multiplicative `noise(window index)`.
    fn drive(
        sla_ms: f64,
        cfg: PeakSearchConfig,
        server: impl Fn(f64) -> (f64, f64),
        noise: impl Fn(usize) -> f64,
    ) -> (PeakOutcome, usize) {
        let mut search = PeakSearch::new(sla_ms, cfg);
        let mut step = search.next_step();
        let mut windows = 0;
        loop {
            match step {
                PeakStep::Done(outcome) => return (outcome, windows),
                PeakStep::Measure { per_s } => {
                    let (achieved, p95) = server(per_s);
                    let k = noise(windows);
                    windows += 1;
                    assert!(windows < 1000, "search does not terminate");
                    step = search.observe(ProbeWindow {
                        offered_per_s: per_s,
                        achieved_per_s: achieved * k,
                        latency_ms: p95 * k,
                        errors: 0,
                        dropped: 0,
                    });
                }
            }
        }
    }

    #[test]
    fn finds_the_sla_peak_of_a_queueing_server() {
        // p95 = 5 / (1 − r/256) ≤ 100 ms ⇔ r ≤ 256 × (1 − 5/100) = 243.2 req/s
        let (out, windows) = drive(
            100.0,
            PeakSearchConfig::default(),
            |r| mm1(256.0, r),
            |_| 1.0,
        );
        let peak = out.peak_per_s.unwrap();
        assert!((243.2 * 0.97..=243.2).contains(&peak), "peak {peak}");
        assert_eq!(out.reason, PeakReason::SlaBroken);
        // ramp 10→320 is 6 rates, bisection 160..320 to 2% needs ~6 more, ≥ 3 windows per pass
        assert!(windows < 60, "{windows} windows");
        assert!(out.steps.iter().all(|s| !s.passed || s.stable));
    }

    #[test]
    fn noisy_windows_within_ten_percent_still_converge() {
        // ±3% deterministic noise on throughput and latency
        let noise = |i: usize| 1.0 + 0.03 * ((i as f64) * 1.7).sin();
        let (out, _) = drive(100.0, PeakSearchConfig::default(), |r| mm1(256.0, r), noise);
        let peak = out.peak_per_s.unwrap();
        assert!((peak - 243.2).abs() / 243.2 < 0.06, "peak {peak}");
    }

    #[test]
    fn never_stable_rates_are_judged_after_max_windows() {
        // ±30% swings are never within 10%: each rate takes max_windows windows, yet it ends
        let cfg = PeakSearchConfig {
            max_windows: 6,
            ..PeakSearchConfig::default()
        };
        let noise = |i: usize| if i.is_multiple_of(2) { 0.7 } else { 1.3 };
        let (out, windows) = drive(100.0, cfg, |r| mm1(256.0, r), noise);
        assert!(out.steps.iter().all(|s| !s.stable));
        assert!(out.steps.iter().all(|s| s.windows <= 6));
        assert!(windows <= 6 * out.steps.len());
        assert!(out.peak_per_s.is_some());
    }

    #[test]
    fn a_server_too_slow_for_the_sla_never_meets_it() {
        // 200 ms at any load against a 100 ms SLA
        let (out, _) = drive(100.0, PeakSearchConfig::default(), |r| (r, 200.0), |_| 1.0);
        assert_eq!(out.peak_per_s, None);
        assert_eq!(out.reason, PeakReason::NeverMet);
    }

    #[test]
    fn a_throughput_plateau_under_a_loose_sla_ends_the_ramp() {
        // Closed-loop-like server: throughput saturates at 300/s, latency stays at 20 ms. With
        // the keep-up rule off, only the plateau rule can stop the ramp.
        let cfg = PeakSearchConfig {
            keep_up: 0.0,
            ..PeakSearchConfig::default()
        };
        let (out, _) = drive(750.0, cfg, |r| (r.min(300.0), 20.0), |_| 1.0);
        assert_eq!(out.reason, PeakReason::ThroughputPlateau);
        let peak = out.peak_per_s.unwrap();
        assert!((peak - 300.0).abs() / 300.0 < 0.03, "peak {peak}");
    }

    #[test]
    fn the_rate_ceiling_stops_an_unbounded_server() {
        let cfg = PeakSearchConfig {
            max_per_s: 1000.0,
            ..PeakSearchConfig::default()
        };
        let (out, _) = drive(100.0, cfg, |r| (r, 1.0), |_| 1.0);
        assert_eq!(out.reason, PeakReason::RateCeiling);
        assert_eq!(out.peak_per_s, Some(1000.0));
    }

    #[test]
    fn errors_fail_a_rate_at_once() {
        let mut s = PeakSearch::new(100.0, PeakSearchConfig::default());
        let step = s.observe(ProbeWindow {
            offered_per_s: 10.0,
            achieved_per_s: 9.0,
            latency_ms: 3.0,
            errors: 1,
            dropped: 0,
        });
        // the start rate failed: bisect below it
        assert_eq!(step, PeakStep::Measure { per_s: 5.0 });
    }
}
