//! Triton's dynamic batcher, reduced to one decision: how many queued requests to start now.

use std::collections::VecDeque;

use super::types::{ModelSetup, Nanos};

/// A request waiting in a model's FIFO queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub token: u64,
    pub batch: u32,
    pub arrived: Nanos,
}

/// What the batcher wants for a model whose queue is not empty and which has a free instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Start a batch of the first `n` queued requests now.
    Start(usize),
    /// Wait for more requests, at most until this time.
    WaitUntil(Nanos),
}

/// Rules, in order (a simplification of Triton's `DynamicBatchScheduler` documented as the emulator's):
/// without dynamic batching every request runs alone; a batch that reached the cap (largest preferred size,
/// else max batch) or cannot grow because the next request does not fit starts now; otherwise the largest
/// preferred size a FIFO prefix reaches starts now; otherwise the batcher waits until the oldest request has
/// queued for `max_queue_delay`, then starts whatever is pending.
pub(crate) fn decide(setup: &ModelSetup, queue: &VecDeque<Queued>, now: Nanos) -> Option<Decision> {
    let oldest = queue.front()?;
    let Some(batching) = &setup.dynamic_batching else {
        return Some(Decision::Start(1));
    };
    let cap = setup.batch_cap();
    let mut images = 0u32;
    let mut taken = 0usize;
    let mut preferred = None;
    for request in queue {
        if images + request.batch > cap {
            break;
        }
        images += request.batch;
        taken += 1;
        if batching.preferred_batch_sizes.contains(&images) {
            preferred = Some(taken);
        }
    }
    if taken == 0 {
        // The oldest request alone exceeds the cap (but not max batch): it runs by itself.
        return Some(Decision::Start(1));
    }
    if images >= cap || taken < queue.len() {
        return Some(Decision::Start(taken));
    }
    if let Some(n) = preferred {
        return Some(Decision::Start(n));
    }
    let deadline = oldest
        .arrived
        .saturating_add(batching.max_queue_delay_us.saturating_mul(1_000));
    if now >= deadline {
        Some(Decision::Start(taken))
    } else {
        Some(Decision::WaitUntil(deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::spec::DynamicBatching;

    fn setup(batching: Option<DynamicBatching>) -> ModelSetup {
        ModelSetup {
            name: "m".into(),
            alpha_ms: 1.0,
            beta_ms: 1.0,
            max_batch: 16,
            instances: 1,
            dynamic_batching: batching,
            memory_bytes: 0,
            input_bytes_per_image: 0,
            output_bytes_per_image: 0,
        }
    }

    fn queue(batches: &[u32]) -> VecDeque<Queued> {
        batches
            .iter()
            .enumerate()
            .map(|(i, &batch)| Queued {
                token: i as u64,
                batch,
                arrived: 100,
            })
            .collect()
    }

    #[test]
    fn without_batching_each_request_runs_alone() {
        assert_eq!(
            decide(&setup(None), &queue(&[1, 1, 1]), 0),
            Some(Decision::Start(1))
        );
    }

    #[test]
    fn preferred_sizes_start_at_once_and_cap_the_batch() {
        let s = setup(Some(DynamicBatching {
            max_queue_delay_us: 10,
            preferred_batch_sizes: vec![4, 8],
        }));
        assert_eq!(decide(&s, &queue(&[1; 5]), 100), Some(Decision::Start(4)));
        assert_eq!(decide(&s, &queue(&[1; 12]), 100), Some(Decision::Start(8)));
        assert_eq!(
            decide(&s, &queue(&[1; 3]), 100),
            Some(Decision::WaitUntil(10_100))
        );
        assert_eq!(
            decide(&s, &queue(&[1; 3]), 10_100),
            Some(Decision::Start(3))
        );
        // A request that would overflow the cap closes the batch.
        assert_eq!(decide(&s, &queue(&[3, 6]), 100), Some(Decision::Start(1)));
    }

    #[test]
    fn without_preferred_sizes_batches_grow_to_max_batch_or_the_delay() {
        let s = setup(Some(DynamicBatching {
            max_queue_delay_us: 0,
            preferred_batch_sizes: vec![],
        }));
        assert_eq!(decide(&s, &queue(&[1; 20]), 100), Some(Decision::Start(16)));
        assert_eq!(decide(&s, &queue(&[1; 5]), 100), Some(Decision::Start(5)));
        assert_eq!(decide(&s, &VecDeque::new(), 100), None);
    }
}
