//! The model table: which models are resident in which slots, and their ids, loads and unloads.

use std::collections::VecDeque;

use super::Sim;
use crate::emulator::sim::batcher::Queued;
use crate::emulator::sim::types::{
    Completion, MIB, ModelCounters, ModelId, ModelSetup, Nanos, SimError,
};

#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) setup: ModelSetup,
    /// Bumped each time the slot takes a new model, so ids of its earlier tenants no longer match.
    pub(super) generation: u64,
    pub(super) loaded: bool,
    pub(super) queue: VecDeque<Queued>,
    /// Batches taken from the queue whose compute has not started (at most one per instance).
    pub(super) staged: u32,
    /// Batches computing now (at most one per instance).
    pub(super) computing: u32,
    pub(super) counters: ModelCounters,
    /// When the batcher's queue delay runs out with an instance free; refreshed after every settle.
    pub(super) wake_at: Option<Nanos>,
}

impl Sim {
    /// Loads a model if it fits next to the context and the models already resident.
    pub fn load(&mut self, setup: ModelSetup) -> Result<ModelId, SimError> {
        setup.validate()?;
        if self.model_id(&setup.name).is_some() {
            return Err(SimError::AlreadyLoaded { model: setup.name });
        }
        let used = self.counters.memory_used_bytes;
        let total = self.gpu.memory_total_bytes;
        if used.saturating_add(setup.memory_bytes) > total {
            return Err(SimError::DoesNotFit {
                model: setup.name,
                need_mib: setup.memory_bytes.div_ceil(MIB),
                free_mib: total.saturating_sub(used) / MIB,
                total_mib: total / MIB,
            });
        }
        self.counters.memory_used_bytes = used + setup.memory_bytes;
        let fresh = |generation| Slot {
            setup,
            generation,
            loaded: true,
            queue: VecDeque::new(),
            staged: 0,
            computing: 0,
            counters: ModelCounters::default(),
            wake_at: None,
        };
        // A slot is free once its model is unloaded and no batch of it is still on the GPU (a batch
        // in flight reports back to its slot).
        let execs = &self.execs;
        let free = (0..self.slots.len())
            .find(|&i| !self.slots[i].loaded && !execs.iter().any(|e| e.model.slot == i));
        let slot = match free {
            Some(slot) => {
                let generation = self.slots[slot].generation.wrapping_add(1);
                self.slots[slot] = fresh(generation);
                slot
            }
            None => {
                self.slots.push(fresh(0));
                self.slots.len() - 1
            }
        };
        self.gammas = std::sync::Arc::new(
            self.slots
                .iter()
                .map(|a| {
                    let gpu = &self.gpu;
                    let row = self.slots.iter();
                    row.map(|b| gpu.gamma_between(&a.setup.name, &b.setup.name))
                        .collect()
                })
                .collect(),
        );
        self.rates_stale = true;
        Ok(self.id_of(slot))
    }

    /// How many slots the model table holds: the models resident plus unloaded ones with a batch
    /// still on the GPU. Reloading must not grow it.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Unloads a model: queued requests fail now, batches already executing finish normally.
    pub fn unload(
        &mut self,
        id: ModelId,
        now: Nanos,
        out: &mut Vec<Completion>,
    ) -> Result<(), SimError> {
        self.live(id)?;
        self.catch_up(now);
        out.append(&mut self.stash);
        let now = self.now;
        let slot = &mut self.slots[id.slot];
        slot.loaded = false;
        slot.wake_at = None;
        for request in slot.queue.drain(..) {
            let waited = now.saturating_sub(request.arrived);
            slot.counters.fail_count += 1;
            slot.counters.fail_ns += waited;
            slot.counters.pending = slot.counters.pending.saturating_sub(1);
            out.push(Completion {
                token: request.token,
                model: id,
                batch: 0,
                ok: false,
                queue_ns: waited,
                compute_input_ns: 0,
                compute_infer_ns: 0,
                compute_output_ns: 0,
                arrived: request.arrived,
                finished_at: now,
            });
        }
        self.counters.memory_used_bytes = self
            .counters
            .memory_used_bytes
            .saturating_sub(slot.setup.memory_bytes);
        Ok(())
    }

    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.slots
            .iter()
            .position(|s| s.loaded && s.setup.name == name)
            .map(|slot| self.id_of(slot))
    }

    pub fn setup(&self, id: ModelId) -> Option<&ModelSetup> {
        self.live(id).ok().map(|s| &s.setup)
    }

    /// Ids of the models loaded now, in slot order.
    pub fn loaded(&self) -> Vec<ModelId> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].loaded)
            .map(|i| self.id_of(i))
            .collect()
    }

    pub(super) fn id_of(&self, slot: usize) -> ModelId {
        ModelId {
            slot,
            generation: self.slots[slot].generation,
        }
    }

    pub(super) fn live(&self, id: ModelId) -> Result<&Slot, SimError> {
        self.slots
            .get(id.slot)
            .filter(|s| s.loaded && s.generation == id.generation)
            .ok_or(SimError::UnknownModel(id))
    }
}
