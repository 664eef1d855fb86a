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
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::measure::client::{CLIENT_LAG, ClientFigures, LagTrend, assess};
use crate::measure::histogram::LatencyHistogram;
use crate::measure::peak::ProbeWindow;
use crate::measure::window::{Interval, Window, WindowError};
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

#[derive(Debug, Default)]
struct Live {
    /// Records of requests sent in the measured period (or before one began): window and totals.
    interval: Interval,
    /// Records of requests sent before the measured period began that resolved after: they belong
    /// in the live window but never in the run's totals (DESIGN §4, warm-up).
    before: Interval,
    in_flight: u32,
    /// When the measured period began; `None` while no period has begun.
    measure_from: Option<Instant>,
    /// The first message seen for each error code, over the whole run: what the server said is
    /// what the user can act on, and the first one is where the trouble began.
    first_messages: BTreeMap<String, String>,
}

impl Live {
    /// The interval a record of a request sent (or, for a drop, arriving) at `at` belongs in.
    fn bucket(&mut self, at: Instant) -> &mut Interval {
        if self.measure_from.is_some_and(|from| at < from) {
            &mut self.before
        } else {
            &mut self.interval
        }
    }
}

/// The recording side of a [`TenantMeter`], for load-generator tasks.
#[derive(Debug, Clone)]
pub struct TenantRecorder {
    live: Arc<Mutex<Live>>,
    sla_latency: Duration,
}

impl TenantRecorder {
    fn with<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        // A panic elsewhere while holding this lock cannot leave the counters in a state worse
        // than "one record missing", so a poisoned lock is used as is.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut live)
    }

    /// A request went out at `sent_at`. Every `record_ok`/`record_error` must follow one
    /// `record_sent` and carry the same `sent_at`, which decides the period it counts in.
    pub fn record_sent(&self, sent_at: Instant) {
        self.with(|l| {
            l.bucket(sent_at).sent += 1;
            l.in_flight = l.in_flight.saturating_add(1);
        });
    }

    /// The request sent at `sent_at` went out later than its intended send time.
    pub fn record_late(&self, sent_at: Instant) {
        self.with(|l| l.bucket(sent_at).late += 1);
    }

    /// A successful completion of the request sent at `sent_at`: latency from the intended send
    /// time and from the actual send.
    pub fn record_ok(
        &self,
        sent_at: Instant,
        intended_latency: Duration,
        service_latency: Duration,
    ) {
        let within = intended_latency <= self.sla_latency;
        self.with(|l| {
            let i = l.bucket(sent_at);
            i.latency.record(intended_latency);
            i.service.record(service_latency);
            i.ok += 1;
            i.ok_within_sla += u64::from(within);
            l.in_flight = l.in_flight.saturating_sub(1);
        });
    }

    /// A failed request sent at `sent_at` (a deadline expiry is an error too), by status name.
    pub fn record_error(&self, sent_at: Instant, code: &str) {
        self.with(|l| {
            l.bucket(sent_at).count_error(code);
            l.in_flight = l.in_flight.saturating_sub(1);
        });
    }

    /// As [`Self::record_error`], keeping `message()` when it is the first error of this code. The
    /// message is built only then, so a storm of one error costs nothing more than counting it.
    pub fn record_error_message(
        &self,
        sent_at: Instant,
        code: &str,
        message: impl FnOnce() -> String,
    ) {
        self.with(|l| {
            l.bucket(sent_at).count_error(code);
            l.in_flight = l.in_flight.saturating_sub(1);
            if !l.first_messages.contains_key(code) {
                l.first_messages
                    .insert(code.to_string(), bounded(message()));
            }
        });
    }

    /// The generator dispatched the arrival intended for `intended` `lag` after that time
    /// (zero for a closed loop). What happens to it next is recorded as a send or a drop.
    pub fn record_dispatch(&self, intended: Instant, lag: Duration) {
        let behind = lag > CLIENT_LAG;
        self.with(|l| {
            let i = l.bucket(intended);
            i.arrivals += 1;
            i.behind += u64::from(behind);
            i.lag_max = i.lag_max.max(lag);
        });
    }

    /// An arrival at `arrived_at` that found the in-flight bound reached and was never sent.
    pub fn record_drop(&self, arrived_at: Instant) {
        self.with(|l| l.bucket(arrived_at).dropped += 1);
    }
}

/// Run totals: the same figures as an interval, with wide counters and named error codes.
#[derive(Debug, Clone, Default)]
struct Cumulative {
    latency: LatencyHistogram<u64>,
    service: LatencyHistogram<u64>,
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

/// A tenant's meter: the live interval (shared with recorders), the sliding window and the totals.
#[derive(Debug)]
pub struct TenantMeter {
    sla: Sla,
    recorder: TenantRecorder,
    spare: Interval,
    spare_before: Interval,
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

/// Longest error message kept: a server may send a whole stack trace, and every snapshot carries it.
const MAX_MESSAGE_CHARS: usize = 500;

fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
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
        let first_messages = &mut self.first_messages;
        self.in_flight = self.recorder.with(|live| {
            std::mem::swap(&mut live.interval, &mut self.spare);
            std::mem::swap(&mut live.before, &mut self.spare_before);
            // Codes are only ever added, so a count that differs means something new to copy.
            if live.first_messages.len() != first_messages.len() {
                first_messages.clone_from(&live.first_messages);
            }
            live.in_flight
        });
        self.totals.absorb(&self.spare);
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

    /// Window figures and measured totals, each with its client-bound verdict, given the
    /// process's CPU share over each span.
    pub fn stats_with_client(
        &self,
        measured_s: f64,
        cpu_window: Option<f64>,
        cpu_measured: Option<f64>,
        cores: u32,
    ) -> (WindowStats, Totals) {
        let mut w = self.window_stats();
        w.client_bound = assess(&ClientFigures {
            cpu_share: cpu_window,
            cores,
            ..self.window_client()
        });
        let mut t = self.totals(measured_s);
        t.client_bound = assess(&ClientFigures {
            cpu_share: cpu_measured,
            cores,
            ..self.totals_client()
        });
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
mod tests {
    use super::*;
    use crate::vocab::snapshot::ClientBoundReason;

    const TICK: Duration = Duration::from_millis(250);

    fn sla(latency_ms: f64, percentile: f64) -> Sla {
        Sla {
            latency_ms,
            percentile,
        }
    }

    fn meter(window_s: u64) -> TenantMeter {
        TenantMeter::new(
            sla(50.0, 95.0),
            Duration::from_secs(window_s),
            TICK,
            Instant::now(),
        )
        .unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A send time for tests with no measured period (every record counts).
    fn at() -> Instant {
        Instant::now()
    }

    #[test]
    fn only_requests_sent_in_the_measured_period_count() {
        // The 3 s warm-up ends at `start`; the server stalls across it, so requests sent in the
        // warm-up complete after it, beside requests sent after it.
        let t0 = Instant::now() + Duration::from_secs(3600);
        let start = t0 + Duration::from_secs(3);
        let mut m = meter(1);
        // Warm-up: 10 sent, 2 completed before the end of warm-up.
        for i in 0..10 {
            m.record_sent(t0 + ms(100 * i));
        }
        m.record_ok(t0, ms(5), ms(5));
        m.record_ok(t0 + ms(100), ms(5), ms(5));
        m.record_drop(t0 + ms(2900));
        m.tick_elapsed(TICK);
        m.start_measuring(start);
        // The stall: a warm-up send is recorded only now (its send time is before the boundary).
        m.record_sent(start - ms(1));
        // After the boundary: 4 sent, the 9 warm-up requests still in flight all complete, one
        // with an error, and 3 of the 4 new ones complete.
        for i in 0..4 {
            m.record_sent(start + ms(10 * i));
        }
        for i in 2..10 {
            m.record_ok(t0 + ms(100 * i), ms(3500), ms(3500));
        }
        m.record_error(start - ms(1), "UNAVAILABLE");
        for i in 0..3 {
            m.record_ok(start + ms(10 * i), ms(5), ms(5));
        }
        m.record_late(start + ms(30));
        m.tick_elapsed(TICK);
        let t = m.totals(0.25);
        assert_eq!((t.sent, t.ok, t.errors, t.dropped, t.late), (4, 3, 0, 0, 1));
        // The Prometheus buckets count exactly the measured completions.
        assert_eq!(t.latency_buckets.counts.iter().sum::<u64>(), t.ok);
        assert_eq!(t.service_latency_buckets.counts.iter().sum::<u64>(), t.ok);
        assert_eq!(t.ok_within_sla, 3);
        assert!((t.latency_buckets.sum_ms - 15.0).abs() < 0.1);
        assert!(t.ok + t.errors <= t.sent);
        assert!((t.achieved_per_s - 12.0).abs() < 1e-9);
        // Only measured requests in the totals' latencies: none of the 3.5 s stalls.
        assert!(t.latency_ms.max < 10.0, "{:?}", t.latency_ms);
        // The live window still shows what happened in it, warm-up sends included.
        let w = m.window_stats();
        assert_eq!(w.errors, 1);
        assert!((w.achieved_per_s - (2.0 + 8.0 + 3.0) / 0.5).abs() < 1e-9);
        assert_eq!(w.in_flight, 1);
    }

    #[test]
    fn window_figures_from_known_inputs() {
        let m = meter(1);
        let rec = m.recorder();
        // 100 requests, latencies 1..=100 ms from intended send, service latency half that.
        for i in 1..=100 {
            rec.record_sent(at());
            rec.record_ok(at(), ms(i), ms(i) / 2);
        }
        let mut m = m;
        for _ in 0..4 {
            m.tick_elapsed(TICK);
        }
        let w = m.window_stats();
        // 100 ok over 1 s of window
        assert!((w.achieved_per_s - 100.0).abs() < 1e-9);
        assert!((w.offered_per_s - 100.0).abs() < 1e-9);
        assert!((w.latency_ms.p95 - 95.0).abs() <= 0.1);
        assert!((w.service_latency_ms.p95 - 47.5).abs() <= 0.05);
        // SLA 50 ms: 50 of 100 within → attainment 0.5, goodput 50/s, p95 = 95 > 50 → missed
        assert_eq!(w.attainment, Some(0.5));
        assert!((w.goodput_per_s - 50.0).abs() < 1e-9);
        assert_eq!(w.sla_met, Some(false));
        assert_eq!(w.in_flight, 0);
    }

    #[test]
    fn errors_and_drops_are_misses() {
        let mut m = meter(1);
        // 8 ok within SLA, 1 timeout, 1 drop: attainment 8 / 10
        for _ in 0..9 {
            m.record_sent(at());
        }
        for _ in 0..8 {
            m.record_ok(at(), ms(10), ms(10));
        }
        m.record_error(at(), "DEADLINE_EXCEEDED");
        m.record_drop(at());
        m.tick_elapsed(TICK);
        let w = m.window_stats();
        assert_eq!(w.attainment, Some(0.8));
        // every completion within 50 ms, but an error and a drop: not met
        assert_eq!(w.sla_met, Some(false));
        assert_eq!(w.errors, 1);
        assert_eq!(w.dropped, 1);
        // offered counts the dropped arrival: (9 sent + 1 dropped) / 0.25 s
        assert!((w.offered_per_s - 40.0).abs() < 1e-9);
        let t = m.totals(0.25);
        assert_eq!(t.errors_by_code.get("DEADLINE_EXCEEDED"), Some(&1));
        assert_eq!(t.attainment, Some(0.8));
    }

    #[test]
    fn met_at_the_percentile_boundary() {
        // p95 ≤ 50 ms needs ⌈0.95 × 20⌉ = 19 of 20 within 50 ms.
        let mut m = meter(1);
        for i in 0..20 {
            m.record_sent(at());
            m.record_ok(at(), if i < 19 { ms(50) } else { ms(400) }, ms(1));
        }
        m.tick_elapsed(TICK);
        assert_eq!(m.window_stats().sla_met, Some(true));
        m.record_sent(at());
        m.record_ok(at(), ms(51), ms(1)); // now 19 of 21 within; ⌈0.95 × 21⌉ = 20 needed
        m.tick_elapsed(TICK);
        assert_eq!(m.window_stats().sla_met, Some(false));
    }

    #[test]
    fn empty_window_has_no_verdict() {
        let mut m = meter(1);
        m.tick_elapsed(TICK);
        let w = m.window_stats();
        assert_eq!(w.attainment, None);
        assert_eq!(w.sla_met, None);
        assert_eq!(w.achieved_per_s, 0.0);
    }

    #[test]
    fn window_forgets_while_totals_keep() {
        let mut m = meter(1); // 4 ticks
        m.record_sent(at());
        m.record_error(at(), "UNAVAILABLE");
        m.tick_elapsed(TICK);
        for _ in 0..4 {
            m.record_sent(at());
            m.record_ok(at(), ms(5), ms(5));
            m.tick_elapsed(TICK);
        }
        let w = m.window_stats();
        assert_eq!(w.errors, 0);
        assert_eq!(w.sla_met, Some(true));
        let t = m.totals(1.25);
        assert_eq!((t.sent, t.ok, t.errors), (5, 4, 1));
        assert_eq!(t.sla_met, Some(false));
        m.start_measuring(Instant::now());
        assert_eq!(m.totals(0.0).sent, 0);
        assert_eq!(m.window_stats().achieved_per_s, 4.0);
    }

    #[test]
    fn in_flight_tracks_sends_and_completions() {
        let mut m = meter(1);
        for _ in 0..5 {
            m.record_sent(at());
        }
        m.record_ok(at(), ms(1), ms(1));
        m.record_error(at(), "UNAVAILABLE");
        m.tick_elapsed(TICK);
        assert_eq!(m.window_stats().in_flight, 3);
    }

    #[test]
    fn early_window_rates_use_covered_time() {
        let mut m = meter(10);
        for _ in 0..50 {
            m.record_sent(at());
            m.record_ok(at(), ms(1), ms(1));
        }
        m.tick_elapsed(TICK);
        // 50 in the first 0.25 s is 200/s, not 5/s over the nominal 10 s window
        assert!((m.window_stats().achieved_per_s - 200.0).abs() < 1e-9);
        assert_eq!(m.window_span(), TICK);
    }

    #[test]
    fn recorders_on_many_threads_lose_nothing() {
        let mut m = meter(1);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let rec = m.recorder();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        rec.record_sent(at());
                        rec.record_ok(at(), ms(i % 100), ms(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        m.tick_elapsed(TICK);
        assert_eq!(m.totals(1.0).ok, 4000);
    }

    #[test]
    fn probe_window_reads_the_sla_percentile_and_clears() {
        let mut m = meter(1);
        for i in 1..=100 {
            m.record_sent(at());
            m.record_ok(at(), ms(i), ms(1));
        }
        m.tick_elapsed(Duration::from_secs(1));
        let p = m.probe_window();
        // SLA percentile 95 → the 95th of 1..=100 ms
        assert!((p.latency_ms - 95.0).abs() <= 0.1, "{}", p.latency_ms);
        assert!((p.achieved_per_s - 100.0).abs() < 1e-9);
        m.clear_window();
        assert_eq!(m.probe_window().achieved_per_s, 0.0);
        // totals are not the window's: clearing the window keeps them
        assert_eq!(m.totals(1.0).ok, 100);
    }

    #[test]
    fn a_generator_that_falls_behind_is_flagged_in_window_and_totals() {
        let mut m = meter(1);
        m.start_measuring(Instant::now());
        let rec = m.recorder();
        // On time: 100 arrivals a tick, the worst 2 ms late.
        for _ in 0..4 {
            for i in 0..100 {
                rec.record_dispatch(at(), ms(i % 3));
            }
            m.tick_elapsed(TICK);
        }
        let (w, t) = m.stats_with_client(1.0, Some(0.3), Some(0.3), 2);
        assert_eq!((w.client_bound, t.client_bound), (None, None));
        // Then every arrival later than the one before, tick after tick.
        for k in 1..=4 {
            for i in 0..100 {
                rec.record_dispatch(at(), ms(10 * k + i / 10));
            }
            m.tick_elapsed(TICK);
        }
        let (w, t) = m.stats_with_client(2.0, Some(0.3), Some(0.3), 2);
        let w = w.client_bound.expect("window flagged");
        assert_eq!(
            w.reasons,
            vec![
                ClientBoundReason::LateSends,
                ClientBoundReason::FallingBehind
            ]
        );
        assert_eq!(w.behind_ms, 49.0);
        let t = t.client_bound.expect("totals flagged");
        assert!(t.reasons.contains(&ClientBoundReason::FallingBehind));
        assert!(
            (t.late_share - 390.0 / 800.0).abs() < 1e-9,
            "{}",
            t.late_share
        );
    }

    #[test]
    fn bad_settings_are_errors() {
        let now = Instant::now();
        let w = Duration::from_secs(1);
        assert!(TenantMeter::new(sla(0.0, 95.0), w, TICK, now).is_err());
        assert!(TenantMeter::new(sla(10.0, 100.0), w, TICK, now).is_err());
        assert!(TenantMeter::new(sla(10.0, 95.0), ms(10), TICK, now).is_err());
    }
}
