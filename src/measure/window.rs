//! The sliding window: per-tick interval figures kept in a bounded ring and combined into one
//! running aggregate, so reading the window costs nothing and memory never grows with run time.
//!
//! Each tick the meter hands over the interval that just closed. It is added to the newest slot and
//! to the aggregate; slots that fall out of the window are subtracted from the aggregate and their
//! storage is reused. A slot normally holds one tick; when a long window would need more than
//! [`MAX_SLOTS`] slots, each slot holds several consecutive ticks instead, trading window-edge
//! granularity for bounded memory (each slot is two ~94 KB histograms).

use std::collections::VecDeque;
use std::time::Duration;

use crate::measure::histogram::LatencyHistogram;

/// Most slots a window keeps (see the module doc).
pub const MAX_SLOTS: u32 = 20;

/// What one tick (or several, in a coarse slot) of one tenant produced.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Latency from the intended send time.
    pub latency: LatencyHistogram<u32>,
    /// Latency from the actual send time.
    pub service: LatencyHistogram<u32>,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub late: u64,
    /// Successful completions whose latency from intended send met the SLA latency.
    pub ok_within_sla: u64,
    /// Arrivals the generator dispatched (sent at once, queued for a slot, or dropped).
    pub arrivals: u64,
    /// Arrivals dispatched more than [`crate::measure::client::CLIENT_LAG`] behind schedule.
    pub behind: u64,
    /// The most any arrival was dispatched behind its intended time.
    pub lag_max: Duration,
    /// Errors by status name; entries are kept (at zero) across resets so a code allocates once.
    pub error_codes: Vec<(Box<str>, u64)>,
    /// Wall time covered.
    pub span: Duration,
    /// Engine ticks covered.
    pub ticks: u32,
}

impl Interval {
    pub(crate) fn count_error(&mut self, code: &str) {
        self.errors += 1;
        match self.error_codes.iter_mut().find(|(c, _)| &**c == code) {
            Some((_, n)) => *n += 1,
            None => self.error_codes.push((code.into(), 1)),
        }
    }

    /// Adds `other` into `self` (histograms, counters, codes, span).
    pub(crate) fn absorb(&mut self, other: &Interval) {
        self.latency.merge(&other.latency);
        self.service.merge(&other.service);
        self.sent += other.sent;
        self.ok += other.ok;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.late += other.late;
        self.ok_within_sla += other.ok_within_sla;
        self.arrivals += other.arrivals;
        self.behind += other.behind;
        self.lag_max = self.lag_max.max(other.lag_max);
        for (code, n) in &other.error_codes {
            if *n == 0 {
                continue;
            }
            match self.error_codes.iter_mut().find(|(c, _)| c == code) {
                Some((_, m)) => *m += n,
                None => self.error_codes.push((code.clone(), *n)),
            }
        }
        self.span += other.span;
        self.ticks += other.ticks;
    }

    /// Removes `other`, previously absorbed. False when the histograms disagree (never expected).
    fn remove(&mut self, other: &Interval) -> bool {
        let ok = self.latency.subtract(&other.latency) & self.service.subtract(&other.service);
        self.sent = self.sent.saturating_sub(other.sent);
        self.ok = self.ok.saturating_sub(other.ok);
        self.errors = self.errors.saturating_sub(other.errors);
        self.dropped = self.dropped.saturating_sub(other.dropped);
        self.late = self.late.saturating_sub(other.late);
        self.ok_within_sla = self.ok_within_sla.saturating_sub(other.ok_within_sla);
        self.arrivals = self.arrivals.saturating_sub(other.arrivals);
        self.behind = self.behind.saturating_sub(other.behind);
        // A maximum cannot be subtracted: the window recomputes it from the slots it keeps.
        for (code, n) in &other.error_codes {
            if let Some((_, m)) = self.error_codes.iter_mut().find(|(c, _)| c == code) {
                *m = m.saturating_sub(*n);
            }
        }
        self.span = self.span.saturating_sub(other.span);
        self.ticks = self.ticks.saturating_sub(other.ticks);
        ok
    }

    /// Nothing recorded (span and ticks aside).
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == 0
            && self.ok == 0
            && self.errors == 0
            && self.dropped == 0
            && self.late == 0
            && self.arrivals == 0
    }

    /// Zeroes everything, keeping allocations (and error-code names).
    pub(crate) fn clear(&mut self) {
        self.latency.reset();
        self.service.reset();
        self.sent = 0;
        self.ok = 0;
        self.errors = 0;
        self.dropped = 0;
        self.late = 0;
        self.ok_within_sla = 0;
        self.arrivals = 0;
        self.behind = 0;
        self.lag_max = Duration::ZERO;
        for (_, n) in &mut self.error_codes {
            *n = 0;
        }
        self.span = Duration::ZERO;
        self.ticks = 0;
    }
}

/// Window geometry: how many ticks the window spans and how many ticks each slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    window_ticks: u32,
    ticks_per_slot: u32,
}

impl Geometry {
    fn new(window: Duration, tick: Duration) -> Option<Geometry> {
        if tick.is_zero() || window < tick {
            return None;
        }
        let ticks = (window.as_secs_f64() / tick.as_secs_f64()).round();
        let window_ticks = u32::try_from(ticks as u64).ok()?.max(1);
        Some(Geometry {
            window_ticks,
            ticks_per_slot: window_ticks.div_ceil(MAX_SLOTS),
        })
    }
}

/// Error for a window that cannot be built from the given lengths.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("window {window:?} must be at least one tick ({tick:?}) and the tick must be non-zero")]
pub struct WindowError {
    pub window: Duration,
    pub tick: Duration,
}

/// Sliding window over the most recent ticks.
#[derive(Debug, Clone)]
pub struct Window {
    tick: Duration,
    geometry: Geometry,
    /// Oldest first; the back slot is the one being filled.
    slots: VecDeque<Interval>,
    /// Cleared intervals ready for reuse (at most one kept around).
    free: Vec<Interval>,
    aggregate: Interval,
}

impl Window {
    pub fn new(window: Duration, tick: Duration) -> Result<Window, WindowError> {
        let geometry = Geometry::new(window, tick).ok_or(WindowError { window, tick })?;
        Ok(Window {
            tick,
            geometry,
            slots: VecDeque::new(),
            free: Vec::new(),
            aggregate: Interval::default(),
        })
    }

    /// Changes the window length at run time. Data already held is kept: a longer window fills
    /// up as ticks arrive, a shorter one forgets its oldest slots at once.
    pub fn set_window(&mut self, window: Duration) -> Result<(), WindowError> {
        let tick = self.tick;
        self.geometry = Geometry::new(window, tick).ok_or(WindowError { window, tick })?;
        self.evict();
        Ok(())
    }

    /// The nominal window length (a whole number of ticks).
    pub fn length(&self) -> Duration {
        self.tick * self.geometry.window_ticks
    }

    /// Adds the interval that closed at this tick.
    pub fn push(&mut self, closed: &Interval) {
        let full = self
            .slots
            .back()
            .is_none_or(|s| s.ticks >= self.geometry.ticks_per_slot);
        if full {
            let mut slot = self.free.pop().unwrap_or_default();
            slot.clear();
            self.slots.push_back(slot);
        }
        if let Some(back) = self.slots.back_mut() {
            back.absorb(closed);
        }
        self.aggregate.absorb(closed);
        self.evict();
    }

    /// Drops oldest slots until the window spans at most its length in ticks.
    fn evict(&mut self) {
        let mut consistent = true;
        let mut evicted = false;
        while self.aggregate.ticks > self.geometry.window_ticks {
            let Some(old) = self.slots.pop_front() else {
                break;
            };
            consistent &= self.aggregate.remove(&old);
            evicted = true;
            if self.free.is_empty() {
                self.free.push(old);
            }
        }
        if !consistent {
            self.rebuild();
        } else if evicted {
            self.aggregate.lag_max = self
                .slots
                .iter()
                .map(|s| s.lag_max)
                .max()
                .unwrap_or(Duration::ZERO);
        }
    }

    fn rebuild(&mut self) {
        self.aggregate.clear();
        for slot in &self.slots {
            self.aggregate.absorb(slot);
        }
    }

    /// Everything in the window, combined.
    pub fn aggregate(&self) -> &Interval {
        &self.aggregate
    }

    /// Forgets everything (memory is kept for reuse).
    pub fn clear(&mut self) {
        while let Some(slot) = self.slots.pop_front() {
            if self.free.is_empty() {
                self.free.push(slot);
            }
        }
        self.aggregate.clear();
    }

    /// Slots currently held (for memory checks).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(250);

    fn interval(ok: u64, latency_ms: u64) -> Interval {
        let mut i = Interval::default();
        for _ in 0..ok {
            i.latency.record(Duration::from_millis(latency_ms));
            i.service.record(Duration::from_millis(latency_ms));
        }
        i.ok = ok;
        i.sent = ok;
        i.span = TICK;
        i.ticks = 1;
        i
    }

    #[test]
    fn rotation_forgets_ticks_older_than_the_window() {
        // 1 s window at 250 ms ticks = 4 ticks.
        let mut w = Window::new(Duration::from_secs(1), TICK).unwrap();
        for _ in 0..4 {
            w.push(&interval(10, 500));
        }
        assert_eq!(w.aggregate().ok, 40);
        // Four more ticks at 5 ms push every 500 ms value out.
        for _ in 0..4 {
            w.push(&interval(10, 5));
        }
        let agg = w.aggregate();
        assert_eq!(agg.ok, 40);
        assert_eq!(agg.ticks, 4);
        assert_eq!(agg.span, Duration::from_secs(1));
        assert!(
            agg.latency.percentiles().max < 5.1,
            "old 500 ms values still present"
        );
    }

    #[test]
    fn shrinking_forgets_at_once_and_growing_fills_up() {
        let mut w = Window::new(Duration::from_secs(2), TICK).unwrap();
        for i in 0..8 {
            w.push(&interval(i + 1, 10)); // 1+2+…+8 = 36
        }
        assert_eq!(w.aggregate().ok, 36);
        w.set_window(Duration::from_millis(500)).unwrap();
        // only the last two ticks remain: 7 + 8
        assert_eq!(w.aggregate().ok, 15);
        w.set_window(Duration::from_secs(1)).unwrap();
        assert_eq!(w.aggregate().ok, 15);
        w.push(&interval(100, 10));
        w.push(&interval(1000, 10));
        // 4 ticks now: 7 + 8 + 100 + 1000
        assert_eq!(w.aggregate().ok, 1115);
    }

    #[test]
    fn long_windows_use_coarse_slots_and_bounded_memory() {
        // 60 s at 250 ms = 240 ticks; at most MAX_SLOTS slots of ceil(240/20) = 12 ticks each.
        let mut w = Window::new(Duration::from_secs(60), TICK).unwrap();
        for _ in 0..1000 {
            w.push(&interval(1, 10));
        }
        assert!(w.slot_count() <= MAX_SLOTS as usize + 1);
        assert!(w.aggregate().ticks <= 240);
        assert!(w.aggregate().ticks > 240 - 12);
        assert_eq!(w.aggregate().ok, u64::from(w.aggregate().ticks));
    }

    #[test]
    fn error_codes_survive_rotation_per_window() {
        let mut w = Window::new(Duration::from_millis(500), TICK).unwrap();
        let mut e = interval(0, 0);
        e.count_error("UNAVAILABLE");
        e.count_error("DEADLINE_EXCEEDED");
        e.count_error("UNAVAILABLE");
        w.push(&e);
        assert_eq!(w.aggregate().errors, 3);
        w.push(&interval(1, 1));
        w.push(&interval(1, 1));
        assert_eq!(w.aggregate().errors, 0);
        assert!(w.aggregate().error_codes.iter().all(|(_, n)| *n == 0));
    }

    #[test]
    fn the_worst_lag_leaves_the_window_with_its_slot() {
        let mut w = Window::new(Duration::from_millis(500), TICK).unwrap();
        let mut slow = interval(1, 1);
        slow.lag_max = Duration::from_millis(40);
        slow.arrivals = 10;
        slow.behind = 4;
        let mut quick = interval(1, 1);
        quick.lag_max = Duration::from_millis(2);
        quick.arrivals = 10;
        w.push(&slow);
        w.push(&quick);
        assert_eq!(w.aggregate().lag_max, Duration::from_millis(40));
        assert_eq!((w.aggregate().arrivals, w.aggregate().behind), (20, 4));
        w.push(&quick);
        assert_eq!(w.aggregate().lag_max, Duration::from_millis(2));
        assert_eq!((w.aggregate().arrivals, w.aggregate().behind), (20, 0));
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(Window::new(Duration::from_millis(100), TICK).is_err());
        assert!(Window::new(Duration::from_secs(1), Duration::ZERO).is_err());
    }
}
