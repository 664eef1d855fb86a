//! ModelStatistics messages from the sim's counters.

use crate::emulator::service::MODEL_VERSION;
use crate::emulator::sim::ModelCounters;
use crate::proto;

fn duration(count: u64, ns: u64) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration { count, ns })
}

/// Triton's field semantics: cumulative since load; `last_inference` in ms since the Unix epoch.
pub(crate) fn statistics_message(
    name: &str,
    c: &ModelCounters,
    memory_bytes: u64,
    unix_epoch_ns: u64,
) -> proto::ModelStatistics {
    let last_inference = if c.inference_count == 0 && c.fail_count == 0 {
        0
    } else {
        (unix_epoch_ns + c.last_inference_ns) / 1_000_000
    };
    proto::ModelStatistics {
        name: name.into(),
        version: MODEL_VERSION.into(),
        last_inference,
        inference_count: c.inference_count,
        execution_count: c.execution_count,
        inference_stats: Some(proto::InferStatistics {
            success: duration(c.success_count, c.success_ns),
            fail: duration(c.fail_count, c.fail_ns),
            queue: duration(c.queue_count, c.queue_ns),
            compute_input: duration(c.compute_input_count, c.compute_input_ns),
            compute_infer: duration(c.compute_infer_count, c.compute_infer_ns),
            compute_output: duration(c.compute_output_count, c.compute_output_ns),
            cache_hit: duration(0, 0),
            cache_miss: duration(0, 0),
        }),
        batch_stats: c
            .batch_stats
            .iter()
            .map(|(&size, b)| proto::InferBatchStatistics {
                batch_size: u64::from(size),
                compute_input: duration(b.count, b.compute_input_ns),
                compute_infer: duration(b.count, b.compute_infer_ns),
                compute_output: duration(b.count, b.compute_output_ns),
            })
            .collect(),
        memory_usage: vec![proto::MemoryUsage {
            r#type: "GPU".into(),
            id: 0,
            byte_size: memory_bytes,
        }],
        response_stats: Default::default(),
    }
}
