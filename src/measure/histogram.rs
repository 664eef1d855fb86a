//! A latency histogram with fixed bounds that never panics on a wild value.
//!
//! HdrHistogram rejects (or silently clamps) values beyond its bounds. A load generator that falls
//! an hour behind is exactly the situation a dashboard must still describe, so values above the
//! bound are clamped *and counted*: the clamped count travels with the histogram through merges and
//! resets, and callers can say "n requests took longer than the histogram can hold".

use std::time::Duration;

use hdrhistogram::{Counter, Histogram};

use crate::vocab::quantiles::Quantiles;
use crate::vocab::snapshot::Percentiles;

/// Lowest value the histogram discerns, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Highest value the histogram holds, in microseconds (one hour); larger values are clamped to it
/// and counted as saturated.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Three significant figures: every recorded value is known to within 0.1%.
pub const SIGNIFICANT_FIGURES: u8 = 3;

/// Latencies at microsecond resolution with bounds 1 µs ..= 1 h and 3 significant figures.
///
/// The counter type is a parameter because per-tick interval histograms (many of them, in the
/// sliding window) are half the size with `u32` counters, while run totals keep `u64`.
#[derive(Debug, Clone)]
pub struct LatencyHistogram<C: Counter = u64> {
    hist: Histogram<C>,
    saturated: u64,
}

impl<C: Counter> Default for LatencyHistogram<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C: Counter> LatencyHistogram<C> {
    pub fn new() -> Self {
        // The bounds are constants that satisfy HdrHistogram's rules (low >= 1, high >= 2 * low,
        // sigfig <= 5), so construction cannot fail.
        let hist = Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { hist, saturated: 0 }
    }

    /// Records one latency; O(1), no allocation.
    pub fn record(&mut self, latency: Duration) {
        let us = duration_us(latency);
        if us > HIGHEST_US {
            self.saturated += 1;
        }
        self.hist.saturating_record(us.min(HIGHEST_US));
    }

    /// Adds every value of `other` (same counter type: a straight bucket-wise sum).
    pub fn merge(&mut self, other: &Self) {
        if self.hist.add(&other.hist).is_err() {
            // Unreachable with identical bounds; fall back to a value-wise copy rather than lose data.
            self.merge_values(other);
            return;
        }
        self.saturated += other.saturated;
    }

    /// Adds every value of a histogram with a different counter type (interval into totals).
    pub fn merge_from<D: Counter>(&mut self, other: &LatencyHistogram<D>) {
        self.merge_values(other);
    }

    fn merge_values<D: Counter>(&mut self, other: &LatencyHistogram<D>) {
        for v in other.hist.iter_recorded() {
            let value = v.value_iterated_to();
            let mut remaining = v.count_at_value().as_u64();
            while remaining > 0 {
                // Widening (the only use: intervals into totals) converts in one go; a narrower
                // counter takes the count in chunks it can hold and saturates per bucket.
                let (n, taken) = largest_count::<C>(remaining);
                self.hist.saturating_record_n(value, n);
                remaining -= taken;
            }
        }
        self.saturated += other.saturated;
    }

    /// Removes `other`'s values, which must have been merged in before (window expiry).
    /// Returns false when they were not all present, leaving `self` unspecified; the caller
    /// rebuilds from its parts.
    pub(crate) fn subtract(&mut self, other: &Self) -> bool {
        if self.hist.subtract(&other.hist).is_err() {
            return false;
        }
        match self.saturated.checked_sub(other.saturated) {
            Some(s) => {
                self.saturated = s;
                true
            }
            None => false,
        }
    }

    /// Number of recorded latencies (saturated ones included).
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Latencies that exceeded [`HIGHEST_US`] and were recorded as exactly one hour.
    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// Recorded latencies at or below `limit`, to within the histogram's 0.1% resolution: a value
    /// in the same bucket as `limit` counts as at or below it.
    pub fn count_at_or_below(&self, limit: Duration) -> u64 {
        let us = duration_us(limit);
        if us >= HIGHEST_US {
            return self.count();
        }
        self.hist.count_between(0, us)
    }

    /// Adds every value into `counts`, one entry per bucket of the ascending `bounds_us` plus one
    /// for values above the last bound, and returns the values' sum in µs. A value counts at or
    /// below a bound as in [`count_at_or_below`](Self::count_at_or_below): when its 0.1% bucket
    /// starts at or below it. `counts` shorter than `bounds_us.len() + 1` is grown.
    pub fn add_to_buckets(&self, bounds_us: &[u64], counts: &mut Vec<u64>) -> f64 {
        if counts.len() < bounds_us.len() + 1 {
            counts.resize(bounds_us.len() + 1, 0);
        }
        let mut sum_us = 0.0;
        for v in self.hist.iter_recorded() {
            let value = v.value_iterated_to();
            let n = v.count_at_value().as_u64();
            let low = self.hist.lowest_equivalent(value);
            let i = bounds_us.partition_point(|b| *b < low);
            counts[i] += n;
            sum_us += self.hist.median_equivalent(value) as f64 * n as f64;
        }
        sum_us
    }

    /// The latency at a percentile (0–100], or zero for an empty histogram.
    pub fn value_at_percentile(&self, percentile: f64) -> Duration {
        if self.hist.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.hist.value_at_percentile(percentile.clamp(0.0, 100.0)))
    }

    /// Summary in milliseconds; all zeros when empty (the contract type has no "missing" value).
    pub fn percentiles(&self) -> Percentiles {
        if self.hist.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            mean: self.hist.mean() / 1000.0,
            p50: ms(self.hist.value_at_quantile(0.50)),
            p90: ms(self.hist.value_at_quantile(0.90)),
            p95: ms(self.hist.value_at_quantile(0.95)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            max: ms(self.hist.max()),
        }
    }

    /// The values at ascending quantiles `qs` (each in [0, 1]), in one pass over the buckets:
    /// quantile 0 is the least value, 1 the greatest. Empty when nothing was recorded.
    pub fn quantiles(&self, qs: &[f64]) -> Quantiles {
        let n = self.hist.len();
        if n == 0 {
            return Quantiles::default();
        }
        let mut ms = Vec::with_capacity(qs.len());
        let mut wanted = qs
            .iter()
            .map(|q| ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1));
        let mut next = wanted.next();
        let mut seen = 0u64;
        for v in self.hist.iter_recorded() {
            seen += v.count_at_value().as_u64();
            while next.is_some_and(|rank| rank <= seen) {
                ms.push(self.hist.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0);
                next = wanted.next();
            }
        }
        // Ranks past the count (rounding) read as the greatest value.
        while ms.len() < qs.len() {
            ms.push(self.hist.max() as f64 / 1000.0);
        }
        Quantiles { q: qs.to_vec(), ms }
    }

    /// Forgets every value, keeping the allocation.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.saturated = 0;
    }
}

/// The largest chunk of `count` that counter type `C` can hold, as (counter, amount taken).
fn largest_count<C: Counter>(count: u64) -> (C, u64) {
    if let Some(c) = C::from_u64(count) {
        return (c, count);
    }
    for cap in [u64::from(u32::MAX), u64::from(u16::MAX), u64::from(u8::MAX)] {
        if let Some(c) = C::from_u64(cap.min(count)) {
            return (c, cap.min(count));
        }
    }
    (C::one(), 1)
}

/// Whole microseconds in a duration, saturating at u64::MAX.
fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_run_from_the_least_value_to_the_greatest() {
        let mut h = LatencyHistogram::<u64>::new();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let q = h.quantiles(&[0.0, 0.5, 0.9, 0.999, 1.0]);
        assert_eq!(q.q, vec![0.0, 0.5, 0.9, 0.999, 1.0]);
        assert_eq!(q.ms, vec![0.001, 0.5, 0.9, 0.999, 1.0]);
        assert_eq!(q.validate(), Ok(()));
        assert_eq!(
            LatencyHistogram::<u64>::new().quantiles(&[0.5]),
            Quantiles::default()
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_one_to_hundred_ms() {
        let mut h = LatencyHistogram::<u64>::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        let p = h.percentiles();
        // 100 values 1..=100 ms: the 95th smallest is 95 ms; 0.1% resolution allows ±0.095 ms.
        assert!((p.p95 - 95.0).abs() <= 0.1, "p95 = {}", p.p95);
        assert!((p.p50 - 50.0).abs() <= 0.05, "p50 = {}", p.p50);
        assert!((p.p99 - 99.0).abs() <= 0.1, "p99 = {}", p.p99);
        assert!((p.max - 100.0).abs() <= 0.1, "max = {}", p.max);
        // mean of 1..=100 is 50.5
        assert!((p.mean - 50.5).abs() <= 0.06, "mean = {}", p.mean);
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn values_above_the_bound_are_clamped_and_counted() {
        let mut h = LatencyHistogram::<u32>::new();
        h.record(Duration::from_secs(2 * 3600));
        h.record(Duration::MAX);
        h.record(ms(5));
        assert_eq!(h.count(), 3);
        assert_eq!(h.saturated(), 2);
        let max_ms = h.percentiles().max;
        // clamped to one hour (3,600,000 ms), within 0.1%
        assert!(
            (max_ms - 3_600_000.0).abs() / 3_600_000.0 < 0.001,
            "max = {max_ms}"
        );
    }

    #[test]
    fn count_at_or_below_splits_at_the_limit() {
        let mut h = LatencyHistogram::<u64>::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        assert_eq!(h.count_at_or_below(ms(40)), 40);
        assert_eq!(h.count_at_or_below(Duration::ZERO), 0);
        assert_eq!(h.count_at_or_below(Duration::from_secs(7200)), 100);
    }

    #[test]
    fn merge_same_and_across_counter_types() {
        let mut a = LatencyHistogram::<u32>::new();
        let mut b = LatencyHistogram::<u32>::new();
        for i in 1..=50 {
            a.record(ms(i));
        }
        for i in 51..=100 {
            b.record(ms(i));
        }
        b.record(Duration::from_secs(5000));
        a.merge(&b);
        assert_eq!(a.count(), 101);
        assert_eq!(a.saturated(), 1);

        let mut total = LatencyHistogram::<u64>::new();
        total.merge_from(&a);
        assert_eq!(total.count(), 101);
        assert_eq!(total.saturated(), 1);
        assert_eq!(total.count_at_or_below(ms(50)), 50);
    }

    #[test]
    fn subtract_undoes_merge() {
        let mut a = LatencyHistogram::<u32>::new();
        let mut b = LatencyHistogram::<u32>::new();
        a.record(ms(1));
        b.record(ms(300));
        b.record(Duration::from_secs(4000));
        a.merge(&b);
        assert!(a.subtract(&b));
        assert_eq!(a.count(), 1);
        assert_eq!(a.saturated(), 0);
        assert!((a.percentiles().max - 1.0).abs() < 0.01);
        // subtracting what was never added is refused, not a panic
        assert!(!a.subtract(&b));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut h = LatencyHistogram::<u64>::new();
        h.record(Duration::from_secs(9000));
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.saturated(), 0);
        assert_eq!(h.percentiles(), Percentiles::default());
    }

    #[test]
    fn buckets_split_at_their_bounds_and_keep_every_value() {
        let mut h = LatencyHistogram::<u32>::new();
        for i in 1..=100 {
            h.record(ms(i));
        }
        h.record(Duration::from_secs(7200));
        let bounds = [10_000, 50_000, 100_000];
        let mut counts = Vec::new();
        let sum_us = h.add_to_buckets(&bounds, &mut counts);
        // ≤ 10 ms, (10, 50], (50, 100], above: the clamped hour
        assert_eq!(counts, vec![10, 40, 50, 1]);
        assert_eq!(counts[..2].iter().sum::<u64>(), h.count_at_or_below(ms(50)));
        let want_us = 5050.0 * 1000.0 + 3_600_000_000.0;
        assert!((sum_us - want_us).abs() / want_us < 0.001, "{sum_us}");
        // adding again accumulates
        h.add_to_buckets(&bounds, &mut counts);
        assert_eq!(counts, vec![20, 80, 100, 2]);
    }

    #[test]
    fn narrowing_merge_keeps_every_count() {
        let mut wide = LatencyHistogram::<u64>::new();
        for _ in 0..300 {
            wide.record(ms(7));
        }
        let mut narrow = LatencyHistogram::<u8>::new();
        narrow.merge_from(&wide);
        // 300 does not fit a u8 counter: the bucket saturates at 255 but the total is 300
        assert_eq!(narrow.count(), 300);
    }
}
