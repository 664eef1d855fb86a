//! A plan as session files, one per GPU, ready for `perseus run` and `perseus tui`: each targets
//! the emulated GPU of its type at its price and runs its tenants (or their shares) with the
//! configuration the plan chose. Written through the session writer, atomically, so they parse back.

use std::io;
use std::path::{Path, PathBuf};

use super::{PlanInput, PlanReport};
use crate::session;
use crate::vocab::spec::{CostSpec, Load, RunSpec, TargetSpec, TenantSpec};

/// The session for GPU `index` of the plan.
pub fn gpu_session(report: &PlanReport, input: &PlanInput, index: usize) -> Option<RunSpec> {
    let gpu = report.plan.gpus.get(index)?;
    let n = report.plan.gpus.len();
    let mut tenants = Vec::with_capacity(gpu.tenants.len());
    for placed in &gpu.tenants {
        let original = input.spec.tenants.get(placed.tenant.checked_sub(1)?)?;
        let Load::Rate { arrival, .. } = &original.load else {
            return None;
        };
        tenants.push(TenantSpec {
            load: Load::Rate {
                per_s: placed.rate_per_s,
                arrival: arrival.clone(),
            },
            instances: Some(placed.instances),
            dynamic_batching: placed.dynamic_batching.clone(),
            ..original.clone()
        });
    }
    Some(RunSpec {
        name: format!(
            "{} · plan GPU {}/{n} ({})",
            input.spec.name,
            index + 1,
            gpu.gpu
        ),
        target: TargetSpec::Emulated {
            gpu: gpu.gpu.clone(),
            profile: input.profile.clone(),
        },
        cost: CostSpec::Instance(gpu.instance.clone()),
        tenants,
        ..input.spec.clone()
    })
}

/// Writes `gpu01-<type>.toml`, `gpu02-…` into `dir` (created if missing); returns their paths.
pub fn write_sessions(
    report: &PlanReport,
    input: &PlanInput,
    dir: &Path,
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (i, gpu) in report.plan.gpus.iter().enumerate() {
        let spec = gpu_session(report, input, i).ok_or_else(|| {
            io::Error::other(format!("GPU {} of the plan names an unknown tenant", i + 1))
        })?;
        let path = dir.join(format!("gpu{:02}-{}.toml", i + 1, gpu.gpu));
        session::save_atomic(&spec, &path)?;
        written.push(path);
    }
    Ok(written)
}
