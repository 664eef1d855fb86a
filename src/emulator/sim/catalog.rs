//! The simulator's view of catalog entries: the catalog is plain data, and the GPU model decides what
//! of it matters, so the conversion lives here rather than in the catalog.

use crate::catalog::{Catalog, GpuSpec};
use crate::emulator::sim::{GpuSetup, ModelSetup};

/// The simulator's view of a catalog GPU.
pub fn gpu_setup(gpu: &GpuSpec) -> GpuSetup {
    GpuSetup {
        name: gpu.display.clone(),
        memory_total_bytes: gpu.memory_bytes,
        context_bytes: gpu.context_bytes,
        tdp_w: gpu.tdp_w,
        idle_w: gpu.idle_w,
        gamma: gpu.gamma,
        sm_clock_mhz: gpu.sm_clock_mhz,
    }
}

/// The simulator's view of `model` on `gpu` under `profile`, with the profile's default Triton
/// configuration (instances, dynamic batching). `None` when any of the three is unknown.
pub fn model_setup(
    catalog: &Catalog,
    model: &str,
    gpu: &str,
    profile: Option<&str>,
) -> Option<ModelSetup> {
    let spec = catalog.model(model)?;
    let perf = catalog.perf(model, gpu, profile)?;
    Some(ModelSetup {
        name: spec.name.clone(),
        alpha_ms: perf.alpha_ms,
        beta_ms: perf.beta_ms,
        max_batch: perf.max_batch,
        instances: perf.instances,
        dynamic_batching: perf.dynamic_batching.clone(),
        memory_bytes: perf.memory_bytes,
        input_bytes_per_image: spec.input_bytes_per_image(),
        output_bytes_per_image: spec.output_bytes_per_image(),
    })
}
