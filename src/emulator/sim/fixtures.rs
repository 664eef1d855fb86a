//! The GPU and model the sim's unit tests share: one fixture, so their figures stay comparable.

use super::types::{GpuSetup, ModelSetup};

pub(super) fn gpu() -> GpuSetup {
    GpuSetup {
        name: "test".into(),
        memory_total_bytes: 16 << 30,
        context_bytes: 400 << 20,
        tdp_w: 70.0,
        idle_w: 10.0,
        gamma: 0.1,
        pair_gamma: Vec::new(),
        sm_clock_mhz: 1590,
        link_bytes_per_s: 12.6e9,
        max_resident: 8,
        mps: None,
    }
}

pub(super) fn model(name: &str, batching: bool) -> ModelSetup {
    ModelSetup {
        name: name.into(),
        alpha_ms: 4.0,
        beta_ms: 2.0,
        max_batch: 16,
        instances: 2,
        dynamic_batching: batching.then(|| crate::vocab::spec::DynamicBatching {
            max_queue_delay_us: 500,
            preferred_batch_sizes: Vec::new(),
        }),
        memory_bytes: 100 << 20,
        input_bytes_per_image: 602_112,
        output_bytes_per_image: 4_000,
    }
}
