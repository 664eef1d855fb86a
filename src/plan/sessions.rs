//! A plan as one multi-target session, ready for `perseus run` and `perseus tui`: a named
//! `[[target]]` per planned GPU (`gpu1-t4`, …), each the emulated GPU of its type at its price,
//! running its tenants (or their shares) with the configuration the plan chose. Written through
//! the session writer, atomically, so it parses back.

use std::io;
use std::path::{Path, PathBuf};

use super::{PlanInput, PlanReport};
use crate::session;
use crate::vocab::spec::{CostSpec, FleetSpec, Load, NamedTarget, RunSpec, TargetSpec, TenantSpec};

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

/// The plan as one session: a `[[target]]` named `gpu<N>-<type>` per planned GPU.
pub fn plan_session(report: &PlanReport, input: &PlanInput) -> io::Result<FleetSpec> {
    let name = format!("{} · plan", input.spec.name);
    let mut targets = Vec::new();
    for (i, gpu) in report.plan.gpus.iter().enumerate() {
        let mut spec = gpu_session(report, input, i).ok_or_else(|| {
            io::Error::other(format!("GPU {} of the plan names an unknown tenant", i + 1))
        })?;
        spec.name.clone_from(&name);
        targets.push(NamedTarget {
            name: Some(format!("gpu{}-{}", i + 1, gpu.gpu)),
            spec,
        });
    }
    Ok(FleetSpec { targets })
}

/// Writes `plan.toml` into `dir` (created if missing); returns its path.
pub fn write_sessions(
    report: &PlanReport,
    input: &PlanInput,
    dir: &Path,
) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let fleet = plan_session(report, input)?;
    let path = dir.join("plan.toml");
    session::save_fleet_atomic(&fleet, &path)?;
    Ok(vec![path])
}
