//! The JSON result's `gpu` block: what the GPU did over the measured period, and which source said so.
//!
//! Built from the same views the screen showed (one per tick), so the headless report and the dashboard
//! cannot disagree about where a figure came from.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::vocab::snapshot::{GpuView, Reading, Source};

const MIB: f64 = 1024.0 * 1024.0;
/// Distinct `unavailable` lines kept; error texts can vary, and the block must stay small.
const MAX_UNAVAILABLE: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSummary {
    /// The source that supplied the most figure readings; `None` when no figure was ever seen.
    pub source: Option<Source>,
    pub name: Option<String>,
    pub util_mean: Option<f64>,
    pub sm_activity_mean: Option<f64>,
    /// The largest memory use seen, MiB (as `nvidia-smi` counts), because what must fit is the peak.
    pub memory_used_mb: Option<f64>,
    pub memory_total_mb: Option<f64>,
    pub power_w_mean: Option<f64>,
    /// Per figure (`utilization`, `sm_activity`, `memory_used`, `memory_total`, `power`,
    /// `power_limit`, `sm_clock`, `temperature`), the source that supplied most of its readings.
    pub sources: BTreeMap<String, Source>,
    /// Sources that failed at some point, with their reasons.
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn push(&mut self, value: f64) {
        if value.is_finite() {
            self.sum += value;
            self.n += 1;
        }
    }

    fn get(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// Accumulates views one tick at a time; nothing per tick is kept.
#[derive(Debug, Clone, Default)]
pub struct GpuSummaryAcc {
    name: Option<String>,
    util: Mean,
    sm_activity: Mean,
    power: Mean,
    memory_used_max: Option<f64>,
    memory_total: Option<f64>,
    counts: BTreeMap<&'static str, BTreeMap<Source, u64>>,
    unavailable: BTreeSet<String>,
}

impl GpuSummaryAcc {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, view: &GpuView) {
        if view.name.is_some() {
            self.name.clone_from(&view.name);
        }
        let figures: [(&'static str, Option<Reading>); 8] = [
            ("utilization", view.utilization),
            ("sm_activity", view.sm_activity),
            ("memory_used", view.memory_used_bytes),
            ("memory_total", view.memory_total_bytes),
            ("power", view.power_w),
            ("power_limit", view.power_limit_w),
            ("sm_clock", view.sm_clock_mhz),
            ("temperature", view.temperature_c),
        ];
        for (figure, reading) in figures {
            if let Some(r) = reading {
                *self
                    .counts
                    .entry(figure)
                    .or_default()
                    .entry(r.source)
                    .or_default() += 1;
            }
        }
        if let Some(r) = view.utilization {
            self.util.push(r.value);
        }
        if let Some(r) = view.sm_activity {
            self.sm_activity.push(r.value);
        }
        if let Some(r) = view.power_w {
            self.power.push(r.value);
        }
        if let Some(r) = view.memory_used_bytes {
            let mb = r.value / MIB;
            self.memory_used_max = Some(self.memory_used_max.map_or(mb, |m| m.max(mb)));
        }
        if let Some(r) = view.memory_total_bytes {
            self.memory_total = Some(r.value / MIB);
        }
        for line in &view.unavailable {
            if self.unavailable.len() < MAX_UNAVAILABLE {
                self.unavailable.insert(line.clone());
            }
        }
    }

    pub fn finish(&self) -> GpuSummary {
        let sources: BTreeMap<String, Source> = self
            .counts
            .iter()
            .filter_map(|(figure, by_source)| Some(((*figure).to_owned(), most(by_source)?)))
            .collect();
        let mut overall: BTreeMap<Source, u64> = BTreeMap::new();
        for by_source in self.counts.values() {
            for (source, n) in by_source {
                *overall.entry(*source).or_default() += n;
            }
        }
        GpuSummary {
            source: most(&overall),
            name: self.name.clone(),
            util_mean: self.util.get(),
            sm_activity_mean: self.sm_activity.get(),
            memory_used_mb: self.memory_used_max,
            memory_total_mb: self.memory_total,
            power_w_mean: self.power.get(),
            sources,
            unavailable: self.unavailable.iter().cloned().collect(),
        }
    }
}

/// The source with the highest count; ties go to the earlier source (NVML first).
fn most(counts: &BTreeMap<Source, u64>) -> Option<Source> {
    counts
        .iter()
        .fold(None, |best: Option<(Source, u64)>, (s, n)| match best {
            Some((_, bn)) if bn >= *n => best,
            _ => Some((*s, *n)),
        })
        .map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(value: f64, source: Source) -> Option<Reading> {
        Some(Reading {
            value,
            source,
            age_ms: 0,
        })
    }

    #[test]
    fn means_peaks_and_sources_follow_the_views() {
        let mut acc = GpuSummaryAcc::new();
        let mut v = GpuView {
            name: Some("T4".into()),
            utilization: reading(0.2, Source::Nvml),
            memory_used_bytes: reading(100.0 * MIB, Source::Nvml),
            memory_total_bytes: reading(16_000.0 * MIB, Source::Nvml),
            power_w: reading(30.0, Source::Nvml),
            unavailable: vec!["metrics http://h/metrics: connection refused".into()],
            ..GpuView::default()
        };
        acc.push(&v);
        v.utilization = reading(0.6, Source::TritonMetrics);
        v.memory_used_bytes = reading(300.0 * MIB, Source::TritonMetrics);
        v.sm_activity = reading(0.5, Source::Emulator);
        acc.push(&v);
        v.utilization = reading(0.7, Source::TritonMetrics);
        acc.push(&v);
        let s = acc.finish();
        assert!((s.util_mean.unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(s.sm_activity_mean, Some(0.5));
        assert_eq!(s.memory_used_mb, Some(300.0));
        assert_eq!(s.memory_total_mb, Some(16_000.0));
        assert_eq!(s.power_w_mean, Some(30.0));
        assert_eq!(s.sources["utilization"], Source::TritonMetrics);
        assert_eq!(s.sources["power"], Source::Nvml);
        assert_eq!(s.sources["sm_activity"], Source::Emulator);
        assert!(!s.sources.contains_key("temperature"));
        // Nvml: util 1 + memory_used 1 + memory_total 3 + power 3 = 8; metrics 2 + 2 = 4.
        assert_eq!(s.source, Some(Source::Nvml));
        assert_eq!(s.unavailable.len(), 1);
    }

    #[test]
    fn no_views_give_an_empty_block() {
        let s = GpuSummaryAcc::new().finish();
        assert_eq!(
            (s.source, s.util_mean, s.memory_used_mb),
            (None, None, None)
        );
        assert!(s.sources.is_empty());
    }
}
