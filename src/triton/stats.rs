//! Triton's cumulative model statistics, and the per-window figures the dashboard shows from them.
//!
//! Triton only ever reports totals since the model was loaded. The engine polls every tick and diffs
//! two polls with [`StatsWindow::diff`]; the totals themselves never reach the screen.

use std::time::Duration;

use crate::proto;

/// A cumulative count and the total time spent on those events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurationStat {
    pub count: u64,
    pub ns: u64,
}

impl From<Option<proto::StatisticDuration>> for DurationStat {
    fn from(stat: Option<proto::StatisticDuration>) -> Self {
        stat.map_or_else(Self::default, |s| Self {
            count: s.count,
            ns: s.ns,
        })
    }
}

impl DurationStat {
    /// `self - earlier`, or `None` when either total went down (the counters were reset).
    fn since(self, earlier: Self) -> Option<Self> {
        Some(Self {
            count: self.count.checked_sub(earlier.count)?,
            ns: self.ns.checked_sub(earlier.ns)?,
        })
    }

    /// Mean duration in µs, or `None` over no events.
    fn mean_us(self) -> Option<f64> {
        (self.count > 0).then(|| self.ns as f64 / self.count as f64 / 1_000.0)
    }
}

/// Executions of one batch size, with the time spent in each of their phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchStat {
    pub batch_size: u64,
    pub compute_input: DurationStat,
    pub compute_infer: DurationStat,
    pub compute_output: DurationStat,
}

impl BatchStat {
    /// How many batches of this size ran; Triton counts each phase once per execution.
    pub fn executions(&self) -> u64 {
        self.compute_infer.count
    }
}

/// One model version's statistics as Triton reports them: totals since the model was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelStats {
    pub name: String,
    pub version: String,
    /// Time of the last inference, milliseconds since the Unix epoch (0: none yet).
    pub last_inference_ms: u64,
    /// Inferences performed: a batch-8 request counts 8.
    pub inference_count: u64,
    /// Model executions: a batch formed from several requests counts once.
    pub execution_count: u64,
    /// Successful requests, with their total end-to-end time inside the server.
    pub success: DurationStat,
    pub fail: DurationStat,
    /// Time requests waited in the scheduler queue.
    pub queue: DurationStat,
    pub compute_input: DurationStat,
    pub compute_infer: DurationStat,
    pub compute_output: DurationStat,
    pub cache_hit: DurationStat,
    pub cache_miss: DurationStat,
    /// Per executed batch size, in the order the server sent them.
    pub batches: Vec<BatchStat>,
}

impl From<proto::ModelStatistics> for ModelStats {
    fn from(stats: proto::ModelStatistics) -> Self {
        let inference = stats.inference_stats.unwrap_or_default();
        Self {
            name: stats.name,
            version: stats.version,
            last_inference_ms: stats.last_inference,
            inference_count: stats.inference_count,
            execution_count: stats.execution_count,
            success: inference.success.into(),
            fail: inference.fail.into(),
            queue: inference.queue.into(),
            compute_input: inference.compute_input.into(),
            compute_infer: inference.compute_infer.into(),
            compute_output: inference.compute_output.into(),
            cache_hit: inference.cache_hit.into(),
            cache_miss: inference.cache_miss.into(),
            batches: stats
                .batch_stats
                .into_iter()
                .map(|b| BatchStat {
                    batch_size: b.batch_size,
                    compute_input: b.compute_input.into(),
                    compute_infer: b.compute_infer.into(),
                    compute_output: b.compute_output.into(),
                })
                .collect(),
        }
    }
}

impl ModelStats {
    /// The change from `earlier` to `self`, or `None` if any total went down or the two are not the
    /// same model version (in both cases the series restarted).
    fn since(&self, earlier: &Self) -> Option<Self> {
        if self.name != earlier.name || self.version != earlier.version {
            return None;
        }
        let mut batches = Vec::with_capacity(self.batches.len());
        for batch in &self.batches {
            let before = earlier
                .batches
                .iter()
                .find(|b| b.batch_size == batch.batch_size)
                .copied()
                .unwrap_or(BatchStat {
                    batch_size: batch.batch_size,
                    ..BatchStat::default()
                });
            batches.push(BatchStat {
                batch_size: batch.batch_size,
                compute_input: batch.compute_input.since(before.compute_input)?,
                compute_infer: batch.compute_infer.since(before.compute_infer)?,
                compute_output: batch.compute_output.since(before.compute_output)?,
            });
        }
        // A batch size that disappeared means its totals were reset to nothing.
        let vanished = earlier.batches.iter().any(|b| {
            b.executions() > 0 && !self.batches.iter().any(|c| c.batch_size == b.batch_size)
        });
        if vanished {
            return None;
        }
        Some(Self {
            name: self.name.clone(),
            version: self.version.clone(),
            last_inference_ms: self.last_inference_ms,
            inference_count: self.inference_count.checked_sub(earlier.inference_count)?,
            execution_count: self.execution_count.checked_sub(earlier.execution_count)?,
            success: self.success.since(earlier.success)?,
            fail: self.fail.since(earlier.fail)?,
            queue: self.queue.since(earlier.queue)?,
            compute_input: self.compute_input.since(earlier.compute_input)?,
            compute_infer: self.compute_infer.since(earlier.compute_infer)?,
            compute_output: self.compute_output.since(earlier.compute_output)?,
            cache_hit: self.cache_hit.since(earlier.cache_hit)?,
            cache_miss: self.cache_miss.since(earlier.cache_miss)?,
            batches,
        })
    }
}

/// What the server did between two statistics polls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatsWindow {
    pub elapsed: Duration,
    /// A total went down between the polls: the server restarted or the model was reloaded, so the
    /// window counts from zero (everything in the later poll) rather than from the earlier poll.
    pub restarted: bool,
    /// The raw change of every total over the window.
    pub delta: ModelStats,
    /// Successful requests per second.
    pub requests_per_s: f64,
    pub failures_per_s: f64,
    /// Inferences per second (a batch-8 request is 8).
    pub inferences_per_s: f64,
    /// Model executions per second.
    pub executions_per_s: f64,
    /// Inferences per execution: how well the dynamic batcher is filling batches. `None` when
    /// nothing ran.
    pub avg_batch: Option<f64>,
    /// Mean per request, µs; `None` when no request completed in the window.
    pub queue_us: Option<f64>,
    pub compute_input_us: Option<f64>,
    pub compute_infer_us: Option<f64>,
    pub compute_output_us: Option<f64>,
}

impl StatsWindow {
    /// Per-window figures from two cumulative polls `elapsed` apart.
    ///
    /// If any total in `cur` is below the one in `prev` (or the two are different model versions),
    /// the counters were reset in between; then `cur` itself is taken as the window's change, as if
    /// `prev` were all zeros, and `restarted` is set. That can under-count the work done before the
    /// reset but never yields negative or wrapped-around figures. A zero `elapsed` gives zero rates.
    pub fn diff(prev: &ModelStats, cur: &ModelStats, elapsed: Duration) -> Self {
        let (delta, restarted) = match cur.since(prev) {
            Some(delta) => (delta, false),
            None => (cur.clone(), true),
        };
        let seconds = elapsed.as_secs_f64();
        let per_s = |n: u64| {
            if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            }
        };
        Self {
            elapsed,
            restarted,
            requests_per_s: per_s(delta.success.count),
            failures_per_s: per_s(delta.fail.count),
            inferences_per_s: per_s(delta.inference_count),
            executions_per_s: per_s(delta.execution_count),
            avg_batch: (delta.execution_count > 0)
                .then(|| delta.inference_count as f64 / delta.execution_count as f64),
            queue_us: delta.queue.mean_us(),
            compute_input_us: delta.compute_input.mean_us(),
            compute_infer_us: delta.compute_infer.mean_us(),
            compute_output_us: delta.compute_output.mean_us(),
            delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Totals after `requests` batch-`batch` requests, each executed alone, with fixed phase times.
    fn after(requests: u64, batch: u64) -> ModelStats {
        let per = |count: u64, us: u64| DurationStat {
            count,
            ns: count * us * 1_000,
        };
        ModelStats {
            name: "resnet50".into(),
            version: "1".into(),
            last_inference_ms: 1_700_000_000_000 + requests,
            inference_count: requests * batch,
            execution_count: requests,
            success: per(requests, 900),
            fail: per(requests / 10, 50),
            queue: per(requests, 100),
            compute_input: per(requests, 20),
            compute_infer: per(requests, 700),
            compute_output: per(requests, 30),
            batches: vec![BatchStat {
                batch_size: batch,
                compute_input: per(requests, 20),
                compute_infer: per(requests, 700),
                compute_output: per(requests, 30),
            }],
            ..ModelStats::default()
        }
    }

    #[test]
    fn window_rates_and_means_come_from_the_change_between_polls() {
        let prev = after(1_000, 4);
        let cur = after(1_500, 4);
        let window = StatsWindow::diff(&prev, &cur, Duration::from_secs(2));
        assert!(!window.restarted);
        assert_eq!(window.delta.success.count, 500);
        assert_eq!(window.requests_per_s, 250.0);
        assert_eq!(window.failures_per_s, 25.0);
        assert_eq!(window.inferences_per_s, 1_000.0);
        assert_eq!(window.executions_per_s, 250.0);
        assert_eq!(window.avg_batch, Some(4.0));
        assert_eq!(window.queue_us, Some(100.0));
        assert_eq!(window.compute_input_us, Some(20.0));
        assert_eq!(window.compute_infer_us, Some(700.0));
        assert_eq!(window.compute_output_us, Some(30.0));
        assert_eq!(window.delta.batches[0].executions(), 500);
    }

    #[test]
    fn means_follow_a_change_in_service_times_not_the_lifetime_average() {
        let prev = after(1_000, 1);
        let mut cur = prev.clone();
        cur.success.count += 10;
        cur.queue.count += 10;
        cur.queue.ns += 10 * 5_000_000; // 5 ms each, against 100 µs before
        let window = StatsWindow::diff(&prev, &cur, Duration::from_secs(1));
        assert_eq!(window.queue_us, Some(5_000.0));
    }

    #[test]
    fn a_counter_that_went_down_restarts_the_window_from_zero() {
        let prev = after(10_000, 8);
        let cur = after(300, 8);
        let window = StatsWindow::diff(&prev, &cur, Duration::from_secs(1));
        assert!(window.restarted);
        assert_eq!(window.delta, cur);
        assert_eq!(window.requests_per_s, 300.0);
        assert_eq!(window.inferences_per_s, 2_400.0);
        assert_eq!(window.avg_batch, Some(8.0));
        assert_eq!(window.queue_us, Some(100.0));
    }

    #[test]
    fn a_single_reset_counter_is_enough_to_detect_a_restart() {
        let prev = after(1_000, 1);
        let mut cur = after(1_200, 1);
        cur.compute_output.ns = prev.compute_output.ns - 1;
        let window = StatsWindow::diff(&prev, &cur, Duration::from_secs(1));
        assert!(window.restarted);
        assert!(
            window
                .compute_output_us
                .is_some_and(|us| us.is_finite() && us >= 0.0)
        );
        assert_eq!(window.requests_per_s, 1_200.0, "counted from zero");
    }

    #[test]
    fn a_vanished_batch_size_or_another_version_is_a_restart() {
        let prev = after(1_000, 4);
        let mut cur = after(1_100, 4);
        cur.batches[0].batch_size = 2;
        assert!(StatsWindow::diff(&prev, &cur, Duration::from_secs(1)).restarted);

        let mut reloaded = after(1_100, 4);
        reloaded.version = "2".into();
        assert!(StatsWindow::diff(&prev, &reloaded, Duration::from_secs(1)).restarted);
    }

    #[test]
    fn a_new_batch_size_counts_from_zero_without_a_restart() {
        let prev = after(1_000, 4);
        let mut cur = after(1_000, 4);
        cur.batches.push(BatchStat {
            batch_size: 8,
            compute_infer: DurationStat {
                count: 3,
                ns: 3_000,
            },
            ..BatchStat::default()
        });
        let window = StatsWindow::diff(&prev, &cur, Duration::from_secs(1));
        assert!(!window.restarted);
        assert_eq!(window.delta.batches[1].executions(), 3);
        assert_eq!(window.delta.batches[0].executions(), 0);
    }

    #[test]
    fn an_idle_window_has_zero_rates_and_no_means() {
        let prev = after(1_000, 4);
        let window = StatsWindow::diff(&prev, &prev.clone(), Duration::from_secs(1));
        assert_eq!(window.requests_per_s, 0.0);
        assert_eq!(window.avg_batch, None);
        assert_eq!(window.queue_us, None);

        let window = StatsWindow::diff(&prev, &after(1_010, 4), Duration::ZERO);
        assert_eq!(window.requests_per_s, 0.0);
        assert!(window.queue_us.is_some());
    }

    #[test]
    fn converts_every_figure_from_the_wire_message() {
        let d = |count, ns| Some(proto::StatisticDuration { count, ns });
        let wire = proto::ModelStatistics {
            name: "simple".into(),
            version: "1".into(),
            last_inference: 42,
            inference_count: 16,
            execution_count: 2,
            inference_stats: Some(proto::InferStatistics {
                success: d(4, 40),
                fail: d(1, 10),
                queue: d(4, 8),
                compute_input: d(2, 6),
                compute_infer: d(2, 20),
                compute_output: d(2, 4),
                cache_hit: d(0, 0),
                cache_miss: None,
            }),
            batch_stats: vec![proto::InferBatchStatistics {
                batch_size: 8,
                compute_input: d(2, 6),
                compute_infer: d(2, 20),
                compute_output: d(2, 4),
            }],
            ..proto::ModelStatistics::default()
        };
        let stats = ModelStats::from(wire);
        assert_eq!(
            (stats.name.as_str(), stats.version.as_str()),
            ("simple", "1")
        );
        assert_eq!(stats.last_inference_ms, 42);
        assert_eq!((stats.inference_count, stats.execution_count), (16, 2));
        assert_eq!(stats.success, DurationStat { count: 4, ns: 40 });
        assert_eq!(stats.fail, DurationStat { count: 1, ns: 10 });
        assert_eq!(stats.queue, DurationStat { count: 4, ns: 8 });
        assert_eq!(stats.compute_input, DurationStat { count: 2, ns: 6 });
        assert_eq!(stats.compute_infer, DurationStat { count: 2, ns: 20 });
        assert_eq!(stats.compute_output, DurationStat { count: 2, ns: 4 });
        assert_eq!(stats.cache_miss, DurationStat::default());
        assert_eq!(stats.batches.len(), 1);
        assert_eq!(stats.batches[0].batch_size, 8);
        assert_eq!(stats.batches[0].executions(), 2);
    }
}
