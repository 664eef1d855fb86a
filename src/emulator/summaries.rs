//! Triton's latency summaries (`nv_inference_*_summary_us`, which Triton serves with
//! `--metrics-config summary_latencies=true`): per model, the quantiles of each request's server-side
//! durations over the last minute, with a running count and sum.
//!
//! They are the one server-side latency *distribution* Triton publishes (ModelStatistics has only
//! sums), so a client can tell its own share of a tail from the server's. Quantiles follow
//! prometheus-cpp's time window, which Triton uses: observations age out after 60 s, in 5 steps of
//! 12 s, and a quantile with nothing in its window reads NaN.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use hdrhistogram::Histogram;

use crate::emulator::metrics::escape;
use crate::emulator::sim::{Completion, Nanos};

/// prometheus-cpp's default window, as Triton builds its summaries.
const MAX_AGE_NS: Nanos = 60_000_000_000;
const AGE_BUCKETS: usize = 5;
const SLICE_NS: Nanos = MAX_AGE_NS / AGE_BUCKETS as Nanos;

/// Which of a completion's durations a family takes, in ns.
type Duration = fn(&Completion) -> u64;

/// Triton's default `summary_quantiles`.
pub(crate) const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// The families in Triton's order, with its help texts (the compute ones say "Cumulative" in
/// Triton's own output too), and which of a completion's durations each takes, in ns.
const FAMILIES: [(&str, &str, Duration); 5] = [
    (
        "nv_inference_request_summary_us",
        "Summary of inference request duration in microseconds (includes cached requests)",
        |c| c.finished_at.saturating_sub(c.arrived),
    ),
    (
        "nv_inference_queue_summary_us",
        "Summary of inference queuing duration in microseconds (includes cached requests)",
        |c| c.queue_ns,
    ),
    (
        "nv_inference_compute_input_summary_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        |c| c.compute_input_ns,
    ),
    (
        "nv_inference_compute_infer_summary_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        |c| c.compute_infer_ns,
    ),
    (
        "nv_inference_compute_output_summary_us",
        "Cumulative inference compute output duration in microseconds (does not include cached requests)",
        |c| c.compute_output_ns,
    ),
];

/// One model's summary of one duration.
#[derive(Debug, Clone)]
struct Summary {
    count: u64,
    sum_us: f64,
    /// Observations by the 12 s slice they fell in: (slice index, histogram), newest last.
    slices: Vec<(u64, Histogram<u64>)>,
}

impl Summary {
    fn new() -> Summary {
        Summary {
            count: 0,
            sum_us: 0.0,
            slices: Vec::with_capacity(AGE_BUCKETS + 1),
        }
    }

    fn observe(&mut self, at: Nanos, micros: u64) {
        self.count += 1;
        self.sum_us += micros as f64;
        let slice = at / SLICE_NS;
        if self.slices.last().is_none_or(|(s, _)| *s != slice) {
            self.slices.push((slice, histogram()));
            let keep = self.slices.len().saturating_sub(AGE_BUCKETS);
            self.slices.drain(..keep);
        }
        // Auto-resizing, so `record` grows to fit; saturating only guards the impossible error.
        if let Some((_, h)) = self.slices.last_mut()
            && h.record(micros).is_err()
        {
            h.saturating_record(micros);
        }
    }

    /// The quantiles over the window ending at `now`: NaN each where the window holds nothing.
    fn quantiles(&self, now: Nanos) -> [f64; QUANTILES.len()] {
        let newest = now / SLICE_NS;
        let mut window = histogram();
        for (slice, h) in &self.slices {
            if newest.saturating_sub(*slice) < AGE_BUCKETS as u64 {
                let _ = window.add(h);
            }
        }
        QUANTILES.map(|q| {
            if window.is_empty() {
                f64::NAN
            } else {
                window.value_at_quantile(q) as f64
            }
        })
    }
}

/// Two significant figures: a summary's quantiles are estimates to a percent or so in
/// prometheus-cpp as well, and 25 histograms per model stay small.
fn histogram() -> Histogram<u64> {
    Histogram::new(2).expect("2 significant figures is a valid histogram precision")
}

/// Every model's summaries, as the metrics endpoint renders them.
#[derive(Debug, Default)]
pub(crate) struct Summaries {
    models: Mutex<BTreeMap<String, [Summary; FAMILIES.len()]>>,
}

impl Summaries {
    /// Records a request of `model` that completed successfully.
    pub(crate) fn observe(&self, model: &str, c: &Completion) {
        let mut models = self.lock();
        let entry = match models.get_mut(model) {
            Some(e) => e,
            None => models
                .entry(model.to_string())
                .or_insert_with(|| std::array::from_fn(|_| Summary::new())),
        };
        for (summary, (_, _, field)) in entry.iter_mut().zip(FAMILIES) {
            // Triton reports whole microseconds.
            summary.observe(c.finished_at, field(c) / 1000);
        }
    }

    /// The summaries of `models` (the ready ones, in the endpoint's order) in the exposition
    /// format, as prometheus-cpp writes a summary: count, sum, then each quantile. A model with no
    /// request yet has count and sum 0 and NaN quantiles.
    pub(crate) fn render(&self, out: &mut String, models: &[&str], now: Nanos, version: &str) {
        let all = self.lock();
        for (f, (name, help, _)) in FAMILIES.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} summary");
            for model in models {
                let labels = format!("model=\"{}\",version=\"{version}\"", escape(model));
                let (count, sum, quantiles) = match all.get(*model) {
                    Some(s) => (s[f].count, s[f].sum_us, s[f].quantiles(now)),
                    None => (0, 0.0, [f64::NAN; QUANTILES.len()]),
                };
                let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
                let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
                for (q, v) in QUANTILES.iter().zip(quantiles) {
                    let _ = writeln!(out, "{name}{{{labels},quantile=\"{q}\"}} {}", number(v));
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, [Summary; FAMILIES.len()]>> {
        self.models
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The exposition format spells a missing quantile `NaN`, as prometheus-cpp writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::sim::ModelId;

    fn done(at_s: f64, queue_us: u64, infer_us: u64) -> Completion {
        Completion {
            token: 0,
            model: ModelId {
                slot: 0,
                generation: 0,
            },
            batch: 1,
            ok: true,
            queue_ns: queue_us * 1000,
            compute_input_ns: 0,
            compute_infer_ns: infer_us * 1000,
            compute_output_ns: 0,
            arrived: (at_s * 1e9) as Nanos - (queue_us + infer_us) * 1000,
            finished_at: (at_s * 1e9) as Nanos,
        }
    }

    fn value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn quantiles_count_and_sum_follow_the_requests() {
        let s = Summaries::default();
        // 100 requests: queue 1..=100 µs, compute 1000 µs.
        for i in 1..=100u64 {
            s.observe("m", &done(1.0, i, 1000));
        }
        let mut out = String::new();
        s.render(&mut out, &["m", "idle"], 2_000_000_000, "1");
        let req = "nv_inference_request_summary_us";
        assert_eq!(
            value(&out, &format!("{req}_count{{model=\"m\",version=\"1\"}}")),
            100.0
        );
        assert_eq!(
            value(&out, &format!("{req}_sum{{model=\"m\",version=\"1\"}}")),
            (1..=100).map(|i| 1000.0 + i as f64).sum::<f64>()
        );
        let p95 = value(
            &out,
            &format!("{req}{{model=\"m\",version=\"1\",quantile=\"0.95\"}}"),
        );
        assert!((1090.0..=1110.0).contains(&p95), "{p95}");
        let q50 = value(
            &out,
            "nv_inference_queue_summary_us{model=\"m\",version=\"1\",quantile=\"0.5\"}",
        );
        assert!((49.0..=51.0).contains(&q50), "{q50}");
        // A ready model with no request yet: zeros and NaN, as Triton shows it.
        assert_eq!(
            value(
                &out,
                &format!("{req}_count{{model=\"idle\",version=\"1\"}}")
            ),
            0.0
        );
        assert!(out.contains(&format!(
            "{req}{{model=\"idle\",version=\"1\",quantile=\"0.99\"}} NaN"
        )));
        // prometheus-cpp's order: count, sum, then the quantiles.
        let count_at = out.find(&format!("{req}_count{{model=\"m\"")).unwrap();
        let sum_at = out.find(&format!("{req}_sum{{model=\"m\"")).unwrap();
        let q_at = out.find(&format!("{req}{{model=\"m\"")).unwrap();
        assert!(count_at < sum_at && sum_at < q_at);
    }

    #[test]
    fn observations_leave_the_window_after_a_minute() {
        let s = Summaries::default();
        s.observe("m", &done(1.0, 0, 5000));
        s.observe("m", &done(50.0, 0, 100));
        let quantile = |now_s: f64| {
            let mut out = String::new();
            s.render(&mut out, &["m"], (now_s * 1e9) as Nanos, "1");
            value(
                &out,
                "nv_inference_compute_infer_summary_us{model=\"m\",version=\"1\",quantile=\"0.99\"}",
            )
        };
        assert!((4950.0..=5050.0).contains(&quantile(55.0)));
        // At 65 s the first request's 12 s slice (0-12 s) is more than five slices old.
        let late = quantile(65.0);
        assert!((99.0..=101.0).contains(&late), "{late}");
        assert!(quantile(200.0).is_nan());
        // Count and sum keep every request.
        let mut out = String::new();
        s.render(&mut out, &["m"], 200_000_000_000, "1");
        assert_eq!(
            value(
                &out,
                "nv_inference_compute_infer_summary_us_count{model=\"m\",version=\"1\"}"
            ),
            2.0
        );
    }
}
