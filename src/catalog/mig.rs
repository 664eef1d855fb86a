//! MIG slices as GPUs of their own.
//!
//! A slice has its own SMs, L2, memory and copy engines (MIG User Guide), so it behaves as a smaller GPU
//! that the other slices do not disturb (MLPerf v1.1: −0.9 % next to busy slices): one emulated GPU per
//! slice gives that isolation by construction. Its profile entries derive from the whole GPU's, so a
//! slice needs no rows of its own, and a user's override of a GPU's entry carries to its slices.

use super::{GpuSpec, MIB, MigProfile, ModelSpec, ProfileEntry, SliceOf};

/// Max batches above this are MLPerf-style offline configurations, which shrink with the slice.
const PLAIN_MAX_BATCH: u32 = 128;

/// Adds every slice of every GPU that declares some, with profile entries derived from the GPU's. A GPU or
/// entry already in the catalog under the slice's name (a user's own) is kept as it is.
pub(super) fn expand(
    gpus: &mut Vec<GpuSpec>,
    profiles: &mut Vec<ProfileEntry>,
    models: &[ModelSpec],
) {
    let mut new_gpus = Vec::new();
    let mut new_perfs = Vec::new();
    for parent in gpus.iter() {
        let Some(sm_count) = parent.sm_count else {
            continue;
        };
        for m in &parent.mig_profiles {
            let slice = slice_gpu(parent, m, sm_count);
            for p in profiles.iter().filter(|p| p.gpu == parent.name) {
                let taken = profiles.iter().any(|q| {
                    q.gpu == slice.name
                        && q.model.eq_ignore_ascii_case(&p.model)
                        && q.profile.eq_ignore_ascii_case(&p.profile)
                });
                if !taken {
                    new_perfs.push(slice_perf(p, &slice, m, sm_count, models));
                }
            }
            if !gpus.iter().any(|g| g.name == slice.name) {
                new_gpus.push(slice);
            }
        }
    }
    gpus.extend(new_gpus);
    profiles.extend(new_perfs);
}

/// The slice as a GPU: its share of the memory and, pro rata to its SMs, of the board's power (NVML
/// reports no power per MIG device, so that split is assumed); the rest is the whole GPU's.
fn slice_gpu(parent: &GpuSpec, m: &MigProfile, sm_count: u32) -> GpuSpec {
    let share = f64::from(m.sms) / f64::from(sm_count);
    let memory_mib = parent.memory_bytes / MIB * u64::from(m.memory_eighths) / 8;
    GpuSpec {
        name: format!("{}-{}", parent.name, m.profile),
        display: format!("{} MIG {}", parent.display, m.profile),
        memory_bytes: memory_mib * MIB,
        tdp_w: parent.tdp_w * share,
        idle_w: parent.idle_w * share,
        context_bytes: parent.context_bytes,
        sm_clock_mhz: parent.sm_clock_mhz,
        gamma: parent.gamma,
        gamma_source: parent.gamma_source.clone(),
        pair_gamma: parent.pair_gamma.clone(),
        host_link: parent.host_link.clone(),
        link_bytes_per_s: parent.link_bytes_per_s,
        max_resident: parent.max_resident,
        sm_count: Some(m.sms),
        mps: parent.mps,
        mig_profiles: Vec::new(),
        slice: Some(SliceOf {
            parent: parent.name.clone(),
            profile: m.profile.clone(),
            sm_share: share,
            source: m.source.clone(),
        }),
        source: format!(
            "MIG {} of {}: {}/{} SMs, {}/8 of the memory; power pro rata to the SMs (assumed)",
            m.profile, parent.name, m.sms, sm_count, m.memory_eighths
        ),
    }
}

/// A parent entry on the slice: the per-image cost grows as the SMs shrink, the fixed cost does not, and
/// an offline-sized max batch shrinks with the slice (to a power of two, never below 128) — the 2048 of
/// MLPerf's whole-A100 configuration becomes the 256 it runs on a 1g.10gb slice.
fn slice_perf(
    p: &ProfileEntry,
    slice: &GpuSpec,
    m: &MigProfile,
    sm_count: u32,
    models: &[ModelSpec],
) -> ProfileEntry {
    let share = f64::from(m.sms) / f64::from(sm_count);
    let max_batch = if p.max_batch > PLAIN_MAX_BATCH {
        let scaled = (f64::from(p.max_batch) * share).floor().max(1.0) as u32;
        let pow2 = 1u32 << (31 - scaled.leading_zeros());
        pow2.clamp(PLAIN_MAX_BATCH, p.max_batch)
    } else {
        p.max_batch
    };
    let memory_bytes = match models.iter().find(|s| s.name == p.model) {
        Some(spec) if max_batch != p.max_batch => spec.memory_bytes(&p.precision, max_batch),
        _ => p.memory_bytes,
    };
    ProfileEntry {
        model: p.model.clone(),
        gpu: slice.name.clone(),
        profile: p.profile.clone(),
        precision: p.precision.clone(),
        alpha_ms: p.alpha_ms,
        beta_ms: p.beta_ms * f64::from(sm_count) / f64::from(m.sms),
        memory_bytes,
        max_batch,
        instances: p.instances,
        dynamic_batching: p.dynamic_batching.clone(),
        source: format!(
            "DERIVED from {} on {}: beta × {sm_count}/{} SMs, alpha kept",
            p.model, p.gpu, m.sms
        ),
        derived: true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;

    #[test]
    fn every_slice_is_a_gpu_with_its_share_of_sms_and_memory() {
        let catalog = Catalog::embedded().unwrap();
        let full = catalog.gpu("a100-80gb").unwrap();
        let slice = catalog.gpu("a100-80gb-1g.10gb").unwrap();
        assert_eq!(slice.memory_bytes, full.memory_bytes / 8);
        assert_eq!(slice.display, "NVIDIA A100-SXM4-80GB MIG 1g.10gb");
        let of = slice.slice.as_ref().unwrap();
        assert_eq!(of.parent, "a100-80gb");
        assert!((of.sm_share - 14.0 / 108.0).abs() < 1e-12);
        let r_full = catalog.perf("resnet50", "a100-80gb", None).unwrap();
        let r_slice = catalog.perf("resnet50", "a100-80gb-1g.10gb", None).unwrap();
        assert!((r_slice.beta_ms - r_full.beta_ms * 108.0 / 14.0).abs() < 1e-12);
        assert_eq!(r_slice.alpha_ms, r_full.alpha_ms);
        assert_eq!(r_slice.max_batch, 256, "MLPerf's 1g.10gb configuration");
        assert!(r_slice.derived);
        for name in ["1g", "2g", "3g", "4g", "7g"] {
            for parent in ["a100-80gb", "a100-40gb", "h100"] {
                let n = catalog
                    .gpus
                    .iter()
                    .filter(|g| g.name.starts_with(&format!("{parent}-{name}.")))
                    .count();
                assert_eq!(n, 1, "{parent} {name}");
            }
        }
        // Every model the whole GPU serves, the slice serves.
        for m in &catalog.models {
            assert!(
                catalog.perf(&m.name, "h100-1g.10gb", None).is_some(),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn a_slice_without_an_sm_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gpus.toml"),
            r#"
[[gpu]]
name = "x"
display = "X"
memory_mib = 1000
tdp_w = 10.0
idle_w = 1.0
context_mib = 100
sm_clock_mhz = 1000
gamma = 0.1
gamma_source = "assumed"
host_link = "pcie4x16"
max_resident = 8
source = "mine"

[[gpu.mig]]
profile = "1g.1gb"
sms = 1
memory_eighths = 1
source = "mine"
"#,
        )
        .unwrap();
        let err = Catalog::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("sm_count"), "{err}");
    }
}
