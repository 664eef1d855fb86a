//! One tenant's measurements: what the load generator records, and the window and run figures the
//! engine reads each tick (DESIGN §4).
//!
//! # Recording from many tasks
//!
//! The load generator completes requests on many tokio tasks. Each [`TenantRecorder`] (cheap to
//! clone) shares one `std::sync::Mutex` around the tenant's *live* interval: a record locks it,
//! bumps a histogram bucket or a counter (O(1), no allocation; the first error of a new status
//! name allocates its name once per run) and unlocks, holding the lock for tens of nanoseconds.
//! At each tick the engine swaps the live interval with an empty spare under the same lock (O(1):
//! a few pointers move), then folds the closed interval into the window and the totals with the
//! lock released, so recorders never wait on histogram arithmetic. Per-task buffers were the
//! alternative; they multiply memory by the task count (two ~94 KB histograms each) and need a
//! gather step, to save an uncontended lock that costs less than the request's own bookkeeping.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::measure::client::{ClientFigures, LagTrend, assess, saturated};
use crate::measure::histogram::LatencyHistogram;
use crate::measure::peak::ProbeWindow;
use crate::measure::window::{Interval, Window, WindowError};
use crate::vocab::quantiles::RECORDED_QUANTILES;
use crate::vocab::snapshot::{LATENCY_BUCKET_BOUNDS_US, LatencyBuckets, Totals, WindowStats};
use crate::vocab::spec::Sla;

/// A meter that cannot be built from its settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeterError {
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("SLA latency must be a positive number of milliseconds, got {0}")]
    SlaLatency(f64),
    #[error("SLA percentile must be between 0 and 100 (exclusive), got {0}")]
    SlaPercentile(f64),
}

mod recorder;

use recorder::Live;
pub use recorder::TenantRecorder;

/// Run totals: the same figures as an interval, with wide counters and named error codes.
#[derive(Debug, Clone, Default)]
struct Cumulative {
    latency: LatencyHistogram<u64>,
    service: LatencyHistogram<u64>,
    lateness: LatencyHistogram<u64>,
    sent: u64,
    ok: u64,
    errors: u64,
    dropped: u64,
    late: u64,
    ok_within_sla: u64,
    arrivals: u64,
    behind: u64,
    lag_max: Duration,
    /// The generator was seen falling behind at some tick of the period.
    fell_behind: bool,
    errors_by_code: BTreeMap<String, u64>,
    /// Prometheus buckets, fed from each interval once as it is absorbed.
    latency_buckets: Vec<u64>,
    latency_sum_us: f64,
    service_buckets: Vec<u64>,
    service_sum_us: f64,
}

impl Cumulative {
    fn absorb(&mut self, i: &Interval) {
        self.latency.merge_from(&i.latency);
        self.service.merge_from(&i.service);
        self.latency_sum_us += i
            .latency
            .add_to_buckets(&LATENCY_BUCKET_BOUNDS_US, &mut self.latency_buckets);
        self.service_sum_us += i
            .service
            .add_to_buckets(&LATENCY_BUCKET_BOUNDS_US, &mut self.service_buckets);
        self.sent += i.sent;
        self.ok += i.ok;
        self.errors += i.errors;
        self.dropped += i.dropped;
        self.late += i.late;
        self.ok_within_sla += i.ok_within_sla;
        self.arrivals += i.arrivals;
        self.behind += i.behind;
        self.lag_max = self.lag_max.max(i.lag_max);
        for (code, n) in &i.error_codes {
            if *n > 0 {
                *self.errors_by_code.entry(code.to_string()).or_default() += n;
            }
        }
    }
}

/// What the client-bound rule needs over a span beyond the meter's own figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpanContext {
    /// Process CPU over the span as a share of the usable cores, when known.
    pub cpu_share: Option<f64>,
    /// The server's own time per request over the span, in ms, when its statistics say.
    pub server_ms: Option<f64>,
}

/// A tenant's meter: the live interval (shared with recorders), the sliding window and the totals.
#[derive(Debug)]
pub struct TenantMeter {
    sla: Sla,
    recorder: TenantRecorder,
    spare: Interval,
    spare_before: Interval,
    spare_lateness: LatencyHistogram<u32>,
    window: Window,
    totals: Cumulative,
    in_flight: u32,
    last_tick: Instant,
    lag_trend: LagTrend,
    /// The latest tick's verdict of [`LagTrend`].
    falling_behind: bool,
    /// A copy of the recorders' first message per error code, refreshed at each tick.
    first_messages: BTreeMap<String, String>,
}

impl TenantMeter {
    /// A meter whose window spans `window` in ticks of `tick`, starting its first interval at `now`.
    pub fn new(
        sla: Sla,
        window: Duration,
        tick: Duration,
        now: Instant,
    ) -> Result<Self, MeterError> {
        if !(sla.latency_ms.is_finite() && sla.latency_ms > 0.0) {
            return Err(MeterError::SlaLatency(sla.latency_ms));
        }
        if !(sla.percentile > 0.0 && sla.percentile < 100.0) {
            return Err(MeterError::SlaPercentile(sla.percentile));
        }
        Ok(TenantMeter {
            sla,
            recorder: TenantRecorder {
                live: Arc::new(Mutex::new(Live::default())),
                sla_latency: Duration::from_secs_f64(sla.latency_ms / 1000.0),
            },
            spare: Interval::default(),
            spare_before: Interval::default(),
            spare_lateness: LatencyHistogram::default(),
            window: Window::new(window, tick)?,
            totals: Cumulative::default(),
            in_flight: 0,
            last_tick: now,
            first_messages: BTreeMap::new(),
            lag_trend: LagTrend::default(),
            falling_behind: false,
        })
    }

    pub fn sla(&self) -> Sla {
        self.sla
    }

    /// A handle for load-generator tasks.
    pub fn recorder(&self) -> TenantRecorder {
        self.recorder.clone()
    }

    pub fn record_sent(&self, sent_at: Instant) {
        self.recorder.record_sent(sent_at);
    }
    pub fn record_late(&self, sent_at: Instant) {
        self.recorder.record_late(sent_at);
    }
    pub fn record_ok(
        &self,
        sent_at: Instant,
        intended_latency: Duration,
        service_latency: Duration,
    ) {
        self.recorder
            .record_ok(sent_at, intended_latency, service_latency);
    }
    pub fn record_error(&self, sent_at: Instant, code: &str) {
        self.recorder.record_error(sent_at, code);
    }
    pub fn record_drop(&self, arrived_at: Instant) {
        self.recorder.record_drop(arrived_at);
    }

    /// Closes the live interval at `now` and folds it into the window and the totals.
    pub fn tick(&mut self, now: Instant) {
        let span = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        self.tick_elapsed(span);
    }

    /// As [`tick`](Self::tick), for a caller that measures the interval itself (virtual time).
    pub fn tick_elapsed(&mut self, span: Duration) {
        self.spare.clear();
        self.spare_before.clear();
        self.spare_lateness.reset();
        let first_messages = &mut self.first_messages;
        self.in_flight = self.recorder.with(|live| {
            std::mem::swap(&mut live.interval, &mut self.spare);
            std::mem::swap(&mut live.before, &mut self.spare_before);
            std::mem::swap(&mut live.lateness, &mut self.spare_lateness);
            // Codes are only ever added, so a count that differs means something new to copy.
            if live.first_messages.len() != first_messages.len() {
                first_messages.clone_from(&live.first_messages);
            }
            live.in_flight
        });
        self.totals.absorb(&self.spare);
        self.totals.lateness.merge_from(&self.spare_lateness);
        let lag = self.spare.lag_max.max(self.spare_before.lag_max);
        self.falling_behind = self.lag_trend.push(lag);
        self.totals.fell_behind |= self.falling_behind;
        if !self.spare_before.is_empty() {
            self.spare.absorb(&self.spare_before);
        }
        self.spare.span = span;
        self.spare.ticks = 1;
        self.window.push(&self.spare);
    }

    /// Changes the sliding window (e.g. the TUI's window command).
    pub fn set_window(&mut self, window: Duration) -> Result<(), MeterError> {
        Ok(self.window.set_window(window)?)
    }

    /// Begins the measured period (end of warm-up): the run totals start afresh and count only
    /// requests sent from now on, whenever they complete, so `ok + errors ≤ sent` always holds.
    /// Records of earlier sends still feed the live window.
    ///
    /// The boundary is the later of `at` and the moment the live interval is locked: a send timed
    /// just after `at` but recorded before the lock is then on the warm-up side with its completion.
    pub fn start_measuring(&mut self, at: Instant) {
        self.totals = Cumulative::default();
        self.recorder.with(|live| {
            let from = at.max(Instant::now());
            live.before.absorb(&live.interval);
            live.interval.clear();
            live.lateness.reset();
            live.measure_from = Some(from);
        });
    }

    /// Wall time the window's data covers now: its nominal length once full, less at start-up.
    pub fn window_span(&self) -> Duration {
        self.window.aggregate().span
    }

    /// Latencies clamped at the histogram bound, over the run totals.
    pub fn saturated(&self) -> u64 {
        self.totals.latency.saturated()
    }

    /// The window's figures. Rates divide by the time the window's data actually covers, so the
    /// first seconds of a run are not understated.
    pub fn window_stats(&self) -> WindowStats {
        let w = self.window.aggregate();
        let span_s = w.span.as_secs_f64();
        let verdict = sla_verdict(
            &self.sla,
            Counts {
                ok: w.ok,
                ok_within_sla: w.ok_within_sla,
                errors: w.errors,
                dropped: w.dropped,
            },
        );
        WindowStats {
            offered_per_s: per_s(w.sent + w.dropped, span_s),
            achieved_per_s: per_s(w.ok, span_s),
            latency_ms: w.latency.percentiles(),
            service_latency_ms: w.service.percentiles(),
            attainment: verdict.attainment,
            sla_met: verdict.met,
            goodput_per_s: per_s(w.ok_within_sla, span_s),
            errors: w.errors,
            dropped: w.dropped,
            late: w.late,
            in_flight: self.in_flight,
            client_bound: None,
            saturated: None,
        }
    }

    /// The client-bound rule's inputs over the window; the caller adds the process's CPU.
    pub fn window_client(&self) -> ClientFigures {
        let w = self.window.aggregate();
        ClientFigures {
            arrivals: w.arrivals,
            behind: w.behind,
            dropped: w.dropped,
            lag_max: w.lag_max,
            falling_behind: self.falling_behind,
            ..ClientFigures::default()
        }
    }

    /// The client-bound rule's inputs over the measured period.
    pub fn totals_client(&self) -> ClientFigures {
        let t = &self.totals;
        ClientFigures {
            arrivals: t.arrivals,
            behind: t.behind,
            dropped: t.dropped,
            lag_max: t.lag_max,
            falling_behind: t.fell_behind,
            ..ClientFigures::default()
        }
    }

    /// Window figures and measured totals, each with its client-bound and saturation verdicts,
    /// given what the meter cannot see over each span (the process's CPU, the server's time).
    pub fn stats_with_client(
        &self,
        measured_s: f64,
        window: SpanContext,
        measured: SpanContext,
        cores: u32,
    ) -> (WindowStats, Totals) {
        let mut w = self.window_stats();
        let wf = ClientFigures {
            cpu_share: window.cpu_share,
            server_ms: window.server_ms,
            service_ms: w.service_latency_ms.mean,
            cores,
            ..self.window_client()
        };
        w.client_bound = assess(&wf);
        w.saturated = saturated(&wf);
        let mut t = self.totals(measured_s);
        let tf = ClientFigures {
            cpu_share: measured.cpu_share,
            server_ms: measured.server_ms,
            service_ms: t.service_latency_ms.mean,
            cores,
            ..self.totals_client()
        };
        t.client_bound = assess(&tf);
        t.saturated = saturated(&tf);
        (w, t)
    }

    /// Forgets the window's data (a probe does this after changing the rate, so the next window
    /// holds only the new rate's requests).
    pub fn clear_window(&mut self) {
        self.window.clear();
    }

    /// The window as the solo-peak search reads it: latency at the SLA's own percentile.
    /// A probe reads it once per window length, after `clear_window` at each new rate.
    pub fn probe_window(&self) -> ProbeWindow {
        let w = self.window.aggregate();
        let span_s = w.span.as_secs_f64();
        ProbeWindow {
            offered_per_s: per_s(w.sent + w.dropped, span_s),
            achieved_per_s: per_s(w.ok, span_s),
            latency_ms: w
                .latency
                .value_at_percentile(self.sla.percentile)
                .as_secs_f64()
                * 1000.0,
            errors: w.errors,
            dropped: w.dropped,
        }
    }

    /// The first message seen for each error code, over the whole run (warm-up included).
    pub fn first_messages(&self) -> &BTreeMap<String, String> {
        &self.first_messages
    }

    /// The run's figures since the measured period began (`start_measuring`), over `measured_s` seconds.
    pub fn totals(&self, measured_s: f64) -> Totals {
        let t = &self.totals;
        let verdict = sla_verdict(
            &self.sla,
            Counts {
                ok: t.ok,
                ok_within_sla: t.ok_within_sla,
                errors: t.errors,
                dropped: t.dropped,
            },
        );
        Totals {
            sent: t.sent,
            ok: t.ok,
            errors: t.errors,
            dropped: t.dropped,
            late: t.late,
            errors_by_code: t.errors_by_code.clone(),
            // The message of each code counted here, even when it was first seen in warm-up.
            first_error_by_code: self
                .first_messages
                .iter()
                .filter(|(code, _)| t.errors_by_code.contains_key(*code))
                .map(|(code, message)| (code.clone(), message.clone()))
                .collect(),
            latency_ms: t.latency.percentiles(),
            service_latency_ms: t.service.percentiles(),
            send_lateness_ms: (t.lateness.count() > 0)
                .then(|| t.lateness.quantiles(&RECORDED_QUANTILES)),
            attainment: verdict.attainment,
            sla_met: verdict.met,
            achieved_per_s: per_s(t.ok, measured_s),
            goodput_per_s: per_s(t.ok_within_sla, measured_s),
            // Server-side figures come from the server's statistics, not from this meter.
            server: None,
            ok_within_sla: t.ok_within_sla,
            latency_buckets: LatencyBuckets {
                counts: t.latency_buckets.clone(),
                sum_ms: t.latency_sum_us / 1000.0,
            },
            service_latency_buckets: LatencyBuckets {
                counts: t.service_buckets.clone(),
                sum_ms: t.service_sum_us / 1000.0,
            },
            client_bound: None,
            saturated: None,
        }
    }
}

/// The outcome counts an SLA verdict needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub ok: u64,
    pub ok_within_sla: u64,
    pub errors: u64,
    pub dropped: u64,
}

/// Attainment and met/missed for a set of outcomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlaVerdict {
    /// Within-SLA completions over every resolved request (ok + errors + drops); `None` when none.
    pub attainment: Option<f64>,
    /// The SLA percentile of successful latencies is within the SLA latency, with no errors and
    /// no drops; `None` when nothing resolved.
    pub met: Option<bool>,
}

/// DESIGN §4's SLA rules on outcome counts.
///
/// "The p-th percentile ≤ L" is decided exactly from the within-SLA count rather than from a
/// histogram bucket: the p-th percentile of n values is at most L iff at least ⌈p·n/100⌉ of them
/// are at most L.
pub fn sla_verdict(sla: &Sla, c: Counts) -> SlaVerdict {
    let resolved = c.ok + c.errors + c.dropped;
    if resolved == 0 {
        return SlaVerdict {
            attainment: None,
            met: None,
        };
    }
    // A tiny allowance keeps p·n/100 from rounding up past an exact integer (0.95 is not exact).
    let needed = (sla.percentile * c.ok as f64 / 100.0 - 1e-9)
        .ceil()
        .max(0.0) as u64;
    let percentile_ok = c.ok > 0 && c.ok_within_sla >= needed;
    SlaVerdict {
        attainment: Some(c.ok_within_sla as f64 / resolved as f64),
        met: Some(percentile_ok && c.errors == 0 && c.dropped == 0),
    }
}

fn per_s(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
