//! Time-slicing one GPU between dedicated deployments, checked in virtual time.
//!
//! The time-sliced baseline's formula (Σ rateᵢ / peakᵢ ≤ 1 per GPU) assumes a tenant given a share
//! s of the GPU's time serves s × its solo peak at its SLA. It does not: during the other tenants'
//! slices its requests wait, so its batches take 1/s as long. The GPU model has no time-slicing
//! mode, so a slice is modelled as the tenant alone on the GPU with its batch latency L(b) stretched
//! by 1/s (a fine-grained, fluid time-slicing: no interference, no context-switch cost), and each
//! tenant's share is its demand (rate over solo peak) over the GPU's whole demand, so the slices fill
//! the GPU in proportion to what each needs. Every process holds its own CUDA context in memory.

use super::{Mix, RUNS, Sharing, VirtualTime};
use crate::emulator::sim::{self, ModelSetup};
use crate::plan::search::{self, Bin, Item};

/// `setup` on a slice of the GPU's time: every batch takes 1/`slice` as long.
fn on_slice(setup: &ModelSetup, slice: f64) -> ModelSetup {
    let mut s = setup.clone();
    s.alpha_ms /= slice;
    s.beta_ms /= slice;
    s
}

impl VirtualTime<'_> {
    /// Each shard's share of the GPU's time, or `None` when their demands at `scale` exceed one
    /// GPU or every process's context and model do not fit its memory.
    fn slices(&self, g: usize, items: &[Item], scale: f64) -> Option<Vec<f64>> {
        let gpu = self.gpus.get(g)?;
        let mut demand = Vec::with_capacity(items.len());
        let mut memory: u64 = 0;
        for item in items {
            let c = self.choice(item.tenant, g)?;
            if c.peak <= 0.0 {
                return None;
            }
            demand.push(self.shard_rate(item) / c.peak);
            memory = memory.saturating_add(gpu.context_bytes + c.setup.memory_bytes);
        }
        let total: f64 = demand.iter().sum();
        if total <= 0.0 || total * scale > 1.0 + 1e-9 || memory > gpu.memory_total_bytes {
            return None;
        }
        Some(demand.iter().map(|d| d / total).collect())
    }

    /// The time-sliced mix at `scale`: each shard alone on its slice, against its SLA; `watch`
    /// ends a shard's run once it certainly misses (see [`Mix::missed`]).
    pub(super) fn run_sliced(&self, g: usize, items: &[Item], scale: f64, watch: bool) -> Mix {
        let refused = || Mix::refused(items.len());
        if !self.admissible(g, items) {
            return refused();
        }
        let Some(slices) = self.slices(g, items, scale) else {
            return refused();
        };
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, &slice) in items.iter().zip(&slices) {
            let Some(c) = self.choice(item.tenant, g) else {
                return refused();
            };
            let alone = [self.mix_tenant(
                item.tenant,
                on_slice(&c.setup, slice),
                self.shard_rate(item),
            )];
            let outcome = match watch {
                true => sim::evaluate_watched(&self.gpus[g], &alone, scale, &RUNS),
                false => sim::evaluate(&self.gpus[g], &alone, scale, &RUNS).map(Ok),
            };
            match outcome {
                Ok(Ok(o)) if o.len() == 1 => outcomes.extend(o),
                Ok(Err(_)) => return Mix::missed(items.len()),
                _ => return refused(),
            }
        }
        Mix::of(&outcomes)
    }

    /// A time-sliced GPU's capacity: the slices stay as the rates set them, so it is the smallest
    /// capacity of any tenant alone on its slice.
    pub(super) fn sliced_capacity(&self, g: usize, items: &[Item]) -> f64 {
        let Some(slices) = self.slices(g, items, 0.0) else {
            return 0.0;
        };
        let mut k = f64::INFINITY;
        for (item, &slice) in items.iter().zip(&slices) {
            let Some(c) = self.choice(item.tenant, g) else {
                return 0.0;
            };
            let alone = [self.mix_tenant(
                item.tenant,
                on_slice(&c.setup, slice),
                self.shard_rate(item),
            )];
            k = k.min(sim::capacity(&self.gpus[g], &alone, &RUNS).map_or(0.0, |c| c.k));
        }
        if k.is_finite() { k } else { 0.0 }
    }

    /// Every tenant time-sliced on GPUs of type `g` only: each tenant's shards as sized alone,
    /// largest share first, each into the first GPU whose time-slicing still meets every SLA with
    /// the headroom. `None` when some tenant cannot run on `g`.
    pub fn time_sliced_placement(&self, g: usize) -> Option<Vec<Bin>> {
        let scale = 1.0 + self.input.headroom;
        search::first_fit_by(self, g, |items| {
            self.evaluate(g, items, scale, Sharing::TimeSliced).meets
        })
    }
}
