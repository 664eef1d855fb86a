//! The simulator's view of catalog entries: the catalog is plain data, and the GPU model decides what
//! of it matters, so the conversion lives here rather than in the catalog.

use crate::catalog::{Catalog, GpuSpec, ModelSpec};
use crate::emulator::sim::{GpuSetup, ModelSetup, Mps, PairGamma};
use crate::vocab::datatype::element_size;

/// The simulator's view of a catalog GPU, with the interference figures the catalog has for its pairs.
pub fn gpu_setup(gpu: &GpuSpec) -> GpuSetup {
    GpuSetup {
        name: gpu.display.clone(),
        memory_total_bytes: gpu.memory_bytes,
        context_bytes: gpu.context_bytes,
        tdp_w: gpu.tdp_w,
        idle_w: gpu.idle_w,
        gamma: gpu.gamma,
        pair_gamma: gpu
            .pair_gamma
            .iter()
            .map(|p| PairGamma {
                a: p.a.clone(),
                b: p.b.clone(),
                gamma: p.gamma,
            })
            .collect(),
        sm_clock_mhz: gpu.sm_clock_mhz,
        link_bytes_per_s: gpu.link_bytes_per_s,
        max_resident: gpu.max_resident,
        mps: gpu.mps.then(Mps::default),
    }
}

/// Bytes per image the engine copies in and out: floating-point tensors at the engine's precision (an INT8
/// engine takes INT8 input, as MLPerf's harness feeds it), other datatypes as declared.
pub fn engine_bytes_per_image(spec: &ModelSpec, precision: &str) -> (u64, u64) {
    let engine = element_size(&precision.to_ascii_uppercase()).map(|s| s as u64);
    let bytes = |tensors: &[crate::catalog::TensorSpec], follow: bool| -> u64 {
        tensors
            .iter()
            .map(|t| {
                let floating = matches!(t.datatype.as_str(), "FP32" | "FP16" | "BF16" | "FP64");
                match engine {
                    Some(size) if follow && floating => {
                        let elements: i64 = t.shape.iter().map(|&d| d.max(0)).product();
                        size * elements.max(0) as u64
                    }
                    _ => t.byte_size(),
                }
            })
            .sum()
    };
    (bytes(&spec.inputs, true), bytes(&spec.outputs, false))
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
    let (input_bytes_per_image, output_bytes_per_image) =
        engine_bytes_per_image(spec, &perf.precision);
    Some(ModelSetup {
        name: spec.name.clone(),
        alpha_ms: perf.alpha_ms,
        beta_ms: perf.beta_ms,
        max_batch: perf.max_batch,
        instances: perf.instances,
        dynamic_batching: perf.dynamic_batching.clone(),
        memory_bytes: perf.memory_bytes,
        input_bytes_per_image,
        output_bytes_per_image,
    })
}
