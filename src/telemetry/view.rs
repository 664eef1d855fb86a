//! Merging the sources into the one [`GpuView`] the snapshot carries.
//!
//! Each figure comes from the most trustworthy source that has it *now*: a fresh sample beats a stale
//! one, and among fresh ones the caller's order decides (NVML before `/metrics` for a local GPU). Figures
//! are chosen one by one because sources know different things: NVML has no SM activity, the emulator
//! has no temperature.

use std::time::Instant;

use crate::vocab::snapshot::{GpuView, Reading};

use super::sample::{Figure, GpuSample};

/// One source's GPU as a merge candidate.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub gpu: &'a GpuSample,
    /// Whether the sample is recent for its source's rate.
    pub fresh: bool,
}

/// Builds the view from candidates in order of preference; `unavailable` is passed through.
pub fn merge(now: Instant, candidates: &[Candidate<'_>], unavailable: Vec<String>) -> GpuView {
    let mut order: Vec<&GpuSample> = candidates
        .iter()
        .filter(|c| c.fresh)
        .map(|c| c.gpu)
        .collect();
    order.extend(candidates.iter().filter(|c| !c.fresh).map(|c| c.gpu));
    let pick = |field: fn(&GpuSample) -> Option<Figure>| -> Option<Reading> {
        order.iter().find_map(|g| field(g)).map(|f| f.reading(now))
    };
    GpuView {
        name: order.iter().find_map(|g| g.name.clone()),
        uuid: order.iter().find_map(|g| g.uuid.clone()),
        utilization: pick(|g| g.utilization),
        sm_activity: pick(|g| g.sm_activity),
        memory_used_bytes: pick(|g| g.memory_used_bytes),
        memory_total_bytes: pick(|g| g.memory_total_bytes),
        power_w: pick(|g| g.power_w),
        power_limit_w: pick(|g| g.power_limit_w),
        sm_clock_mhz: pick(|g| g.sm_clock_mhz),
        temperature_c: pick(|g| g.temperature_c),
        processes: order
            .iter()
            .find(|g| !g.processes.is_empty())
            .map(|g| g.processes.clone())
            .unwrap_or_default(),
        model_memory: order
            .iter()
            .find(|g| !g.model_memory.is_empty())
            .map(|g| g.model_memory.clone())
            .unwrap_or_default(),
        unavailable,
    }
}

/// The GPU of a multi-GPU `/metrics` response that the view should describe: the one with `want`'s
/// UUID when given (the configured device, or the one NVML reads), else the first.
pub fn pick_gpu<'a>(
    gpus: &'a [GpuSample],
    want: Option<&str>,
) -> Result<Option<&'a GpuSample>, String> {
    match want {
        None => Ok(gpus.first()),
        Some(uuid) => match gpus.iter().find(|g| g.uuid.as_deref() == Some(uuid)) {
            Some(g) => Ok(Some(g)),
            None if gpus.is_empty() => Ok(None),
            None => {
                let present: Vec<&str> = gpus.iter().filter_map(|g| g.uuid.as_deref()).collect();
                Err(format!(
                    "no GPU with UUID {uuid} (present: {})",
                    present.join(", ")
                ))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::vocab::snapshot::Source;

    use super::*;

    fn fig(value: f64, source: Source, at: Instant) -> Option<Figure> {
        Some(Figure::new(value, source, at))
    }

    #[test]
    fn figures_come_from_the_preferred_fresh_source_and_fill_gaps_from_others() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(250);
        let nvml = GpuSample {
            name: Some("NVIDIA T4".into()),
            utilization: fig(0.5, Source::Nvml, t0 + Duration::from_millis(200)),
            temperature_c: fig(61.0, Source::Nvml, t0),
            ..GpuSample::default()
        };
        let metrics = GpuSample {
            uuid: Some("GPU-1".into()),
            utilization: fig(0.4, Source::TritonMetrics, t0),
            sm_activity: fig(0.3, Source::Emulator, t0),
            ..GpuSample::default()
        };
        let both = [
            Candidate {
                gpu: &nvml,
                fresh: true,
            },
            Candidate {
                gpu: &metrics,
                fresh: true,
            },
        ];
        let v = merge(now, &both, vec![]);
        let u = v.utilization.unwrap();
        assert_eq!((u.value, u.source, u.age_ms), (0.5, Source::Nvml, 50));
        assert_eq!(v.sm_activity.unwrap().source, Source::Emulator);
        assert_eq!(v.temperature_c.unwrap().age_ms, 250);
        assert_eq!(
            (v.name.as_deref(), v.uuid.as_deref()),
            (Some("NVIDIA T4"), Some("GPU-1"))
        );

        let nvml_stale = [
            Candidate {
                gpu: &nvml,
                fresh: false,
            },
            Candidate {
                gpu: &metrics,
                fresh: true,
            },
        ];
        let v = merge(now, &nvml_stale, vec![]);
        assert_eq!(v.utilization.unwrap().source, Source::TritonMetrics);
        assert_eq!(v.temperature_c.unwrap().source, Source::Nvml);
    }

    #[test]
    fn a_missing_uuid_is_reported_with_the_ones_present() {
        let gpus = [
            GpuSample {
                uuid: Some("GPU-a".into()),
                ..GpuSample::default()
            },
            GpuSample {
                uuid: Some("GPU-b".into()),
                ..GpuSample::default()
            },
        ];
        assert_eq!(
            pick_gpu(&gpus, Some("GPU-b"))
                .unwrap()
                .unwrap()
                .uuid
                .as_deref(),
            Some("GPU-b")
        );
        assert_eq!(
            pick_gpu(&gpus, None).unwrap().unwrap().uuid.as_deref(),
            Some("GPU-a")
        );
        let err = pick_gpu(&gpus, Some("GPU-z")).unwrap_err();
        assert!(
            err.contains("GPU-z") && err.contains("GPU-a, GPU-b"),
            "{err}"
        );
    }
}
