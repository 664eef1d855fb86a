//! The event-driven GPU: queues, instances, batches in flight and the shared-progress rule.
//!
//! Time only moves when the caller says so (`advance`), so one core serves both the real-time server and
//! virtual-time what-ifs. Between events nothing changes rate, so progress is bookkept as remaining solo
//! work and every rate is recomputed at each event; there is no per-tick loop.

use std::collections::VecDeque;

use super::batcher::{self, Decision, Queued};
use super::types::{
    Completion, GpuCounters, GpuSetup, MIB, ModelCounters, ModelId, ModelSetup, Nanos, SimError,
};

#[derive(Debug)]
struct Slot {
    setup: ModelSetup,
    /// Bumped each time the slot takes a new model, so ids of its earlier tenants no longer match.
    generation: u64,
    loaded: bool,
    queue: VecDeque<Queued>,
    running: u32,
    counters: ModelCounters,
    /// When the batcher's queue delay runs out with an instance free; refreshed after every settle.
    wake_at: Option<Nanos>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Input,
    Infer,
    Output,
}

/// A batch on an instance.
#[derive(Debug)]
struct Exec {
    model: ModelId,
    requests: Vec<Queued>,
    images: u32,
    phase: Phase,
    started: Nanos,
    input_ns: u64,
    infer_started: Nanos,
    infer_ns: u64,
    output_ns: u64,
    /// Occupancy u(b) while inferring.
    occupancy: f64,
    /// Inference work left, in nanoseconds of solo execution.
    remaining: f64,
    /// Fraction of solo speed since the last event.
    rate: f64,
    /// When the current phase ends at the current rate.
    ends: Nanos,
}

/// One emulated GPU. See DESIGN §5 for the model it implements.
#[derive(Debug)]
pub struct Sim {
    gpu: GpuSetup,
    now: Nanos,
    slots: Vec<Slot>,
    execs: Vec<Exec>,
    counters: GpuCounters,
    /// Completions produced while catching up inside `submit`/`unload`, handed out by the next `advance`.
    stash: Vec<Completion>,
}

impl Sim {
    pub fn new(gpu: GpuSetup) -> Sim {
        let counters = GpuCounters {
            memory_used_bytes: gpu.context_bytes,
            memory_total_bytes: gpu.memory_total_bytes,
            ..GpuCounters::default()
        };
        Sim {
            gpu,
            now: 0,
            slots: Vec::new(),
            execs: Vec::new(),
            counters,
            stash: Vec::new(),
        }
    }

    pub fn gpu(&self) -> &GpuSetup {
        &self.gpu
    }

    /// The time of the last event processed or advanced to.
    pub fn now(&self) -> Nanos {
        self.now
    }

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
            running: 0,
            counters: ModelCounters::default(),
            wake_at: None,
        };
        // A slot is free once its model is unloaded and its last batch has finished (a batch still
        // executing reports back to its slot).
        let free = self.slots.iter().position(|s| !s.loaded && s.running == 0);
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
        Ok(ModelId {
            slot,
            generation: self.slots[slot].generation,
        })
    }

    /// How many slots the model table holds: the models resident plus unloaded ones whose last batch
    /// is still executing. Reloading must not grow it.
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

    fn id_of(&self, slot: usize) -> ModelId {
        ModelId {
            slot,
            generation: self.slots[slot].generation,
        }
    }

    /// Queues a request of `batch` images at `now` (clamped to the sim's time, which never runs backwards).
    pub fn submit(
        &mut self,
        now: Nanos,
        id: ModelId,
        batch: u32,
        token: u64,
    ) -> Result<(), SimError> {
        let setup = &self.live(id)?.setup;
        if batch == 0 || batch > setup.max_batch {
            return Err(SimError::BatchTooLarge {
                model: setup.name.clone(),
                batch,
                max: setup.max_batch,
            });
        }
        self.catch_up(now);
        let slot = &mut self.slots[id.slot];
        slot.queue.push_back(Queued {
            token,
            batch,
            arrived: self.now,
        });
        slot.counters.pending += 1;
        let mut done = Vec::new();
        self.settle(&mut done);
        self.stash.append(&mut done);
        Ok(())
    }

    /// Processes every event up to and including `to`, appending finished requests to `out`.
    pub fn advance(&mut self, to: Nanos, out: &mut Vec<Completion>) {
        out.append(&mut self.stash);
        self.run_until(to, out);
    }

    /// The earliest pending event: a phase of a batch ending, or a batcher's queue delay running out.
    pub fn next_event(&self) -> Option<Nanos> {
        let batch_end = self.execs.iter().map(|e| e.ends).min();
        let timeout = self.slots.iter().filter_map(|s| s.wake_at).min();
        match (batch_end, timeout) {
            (Some(a), Some(b)) => Some(a.min(b).max(self.now)),
            (a, b) => a.or(b).map(|t| t.max(self.now)),
        }
    }

    /// Requests waiting in the model's queue (not yet executing): what Triton's `max_queue_size` bounds.
    pub fn queued(&self, id: ModelId) -> Option<usize> {
        self.live(id).ok().map(|s| s.queue.len())
    }

    pub fn counters(&self, id: ModelId) -> Option<&ModelCounters> {
        self.live(id).ok().map(|s| &s.counters)
    }

    /// Cumulative to the last `advance` (or `submit`).
    pub fn gpu_counters(&self) -> GpuCounters {
        self.counters.clone()
    }

    /// Total occupancy U of the batches inferring now, and the power draw it implies.
    pub fn gpu_instant(&self) -> (f64, f64) {
        let u = self.total_occupancy();
        (u, self.power_w(u))
    }

    fn live(&self, id: ModelId) -> Result<&Slot, SimError> {
        self.slots
            .get(id.slot)
            .filter(|s| s.loaded && s.generation == id.generation)
            .ok_or(SimError::UnknownModel(id))
    }

    fn total_occupancy(&self) -> f64 {
        self.execs
            .iter()
            .filter(|e| e.phase == Phase::Infer)
            .map(|e| e.occupancy)
            .sum()
    }

    fn power_w(&self, u: f64) -> f64 {
        self.gpu.idle_w + (self.gpu.tdp_w - self.gpu.idle_w) * u.min(1.0)
    }

    /// Brings the sim to `now` without handing out completions (kept for the next `advance`).
    fn catch_up(&mut self, now: Nanos) {
        let mut done = Vec::new();
        self.run_until(now, &mut done);
        self.stash.append(&mut done);
    }

    fn run_until(&mut self, to: Nanos, out: &mut Vec<Completion>) {
        while let Some(t) = self.next_event() {
            if t > to {
                break;
            }
            self.integrate(t);
            self.settle(out);
        }
        if to > self.now {
            self.integrate(to);
        }
    }

    /// Moves time to `t` with the current rates: progress, busy time, SM activity and energy.
    fn integrate(&mut self, t: Nanos) {
        let dt = t.saturating_sub(self.now);
        if dt == 0 {
            return;
        }
        let u = self.total_occupancy();
        let inferring = self.execs.iter().any(|e| e.phase == Phase::Infer);
        for e in self.execs.iter_mut().filter(|e| e.phase == Phase::Infer) {
            // Reaching the predicted end means done, whatever rounding left over.
            e.remaining = if t >= e.ends {
                0.0
            } else {
                (e.remaining - e.rate * dt as f64).max(0.0)
            };
        }
        let dt_f = dt as f64;
        if inferring {
            self.counters.busy_ns += dt;
        }
        self.counters.sm_active_ns += u.min(1.0) * dt_f;
        self.counters.energy_j += self.power_w(u) * dt_f * 1e-9;
        self.now = t;
    }

    /// Handles everything due at `self.now`: phase changes, completions, new batches, then new rates.
    fn settle(&mut self, out: &mut Vec<Completion>) {
        loop {
            let now = self.now;
            let mut i = 0;
            while i < self.execs.len() {
                if self.execs[i].ends > now {
                    i += 1;
                    continue;
                }
                let e = &mut self.execs[i];
                match e.phase {
                    Phase::Input => {
                        e.phase = Phase::Infer;
                        e.infer_started = now;
                        e.rate = 1.0;
                        // The real rate (and end) is set below with every other inferring batch.
                        e.ends = now + e.remaining.ceil() as u64;
                        i += 1;
                    }
                    Phase::Infer => {
                        e.phase = Phase::Output;
                        e.remaining = 0.0;
                        e.infer_ns = now - e.infer_started;
                        e.ends = now + e.output_ns;
                        i += 1;
                    }
                    Phase::Output => {
                        let e = self.execs.swap_remove(i);
                        self.finish(e, out);
                    }
                }
            }
            self.dispatch();
            self.update_rates();
            // Zero-length phases end at `now` again; everything else waits for a later event.
            if self.execs.iter().all(|e| e.ends > now) {
                break;
            }
        }
        for slot in &mut self.slots {
            slot.wake_at = if slot.loaded && slot.running < slot.setup.instances {
                match batcher::decide(&slot.setup, &slot.queue, self.now) {
                    Some(Decision::WaitUntil(t)) => Some(t),
                    Some(Decision::Start(_)) => Some(self.now),
                    None => None,
                }
            } else {
                None
            };
        }
    }

    /// Starts every batch the batchers allow on free instances.
    fn dispatch(&mut self) {
        let now = self.now;
        for index in 0..self.slots.len() {
            let id = self.id_of(index);
            loop {
                let slot = &mut self.slots[index];
                if !slot.loaded || slot.running >= slot.setup.instances {
                    break;
                }
                let Some(Decision::Start(n)) = batcher::decide(&slot.setup, &slot.queue, now)
                else {
                    break;
                };
                let requests: Vec<Queued> = slot.queue.drain(..n).collect();
                let images: u32 = requests.iter().map(|r| r.batch).sum();
                slot.running += 1;
                let setup = &slot.setup;
                let input_ns = setup.compute_input_ns(images);
                self.execs.push(Exec {
                    model: id,
                    requests,
                    images,
                    phase: Phase::Input,
                    started: now,
                    input_ns,
                    infer_started: now,
                    infer_ns: 0,
                    output_ns: setup.compute_output_ns(images),
                    occupancy: setup.occupancy(images),
                    remaining: setup.solo_latency_ns(images),
                    rate: 1.0,
                    ends: now + input_ns,
                });
            }
        }
    }

    /// DESIGN §5: with U = Σ uᵢ, batch i runs at 1 / (max(1, U) · (1 + γ·(U − uᵢ))) of its solo speed.
    fn update_rates(&mut self) {
        let u = self.total_occupancy();
        let gamma = self.gpu.gamma;
        let now = self.now;
        for e in self.execs.iter_mut().filter(|e| e.phase == Phase::Infer) {
            e.rate = 1.0 / (u.max(1.0) * (1.0 + gamma * (u - e.occupancy).max(0.0)));
            e.ends = now + (e.remaining / e.rate).ceil() as u64;
        }
    }

    fn finish(&mut self, e: Exec, out: &mut Vec<Completion>) {
        let now = self.now;
        let slot = &mut self.slots[e.model.slot];
        slot.running = slot.running.saturating_sub(1);
        let c = &mut slot.counters;
        c.execution_count += 1;
        c.inference_count += u64::from(e.images);
        c.last_inference_ns = now;
        let stats = c.batch_stats.entry(e.images).or_default();
        stats.count += 1;
        stats.compute_input_ns += e.input_ns;
        stats.compute_infer_ns += e.infer_ns;
        stats.compute_output_ns += e.output_ns;
        for r in e.requests {
            let queue_ns = e.started.saturating_sub(r.arrived);
            c.success_count += 1;
            c.success_ns += now.saturating_sub(r.arrived);
            c.queue_count += 1;
            c.queue_ns += queue_ns;
            c.compute_input_count += 1;
            c.compute_input_ns += e.input_ns;
            c.compute_infer_count += 1;
            c.compute_infer_ns += e.infer_ns;
            c.compute_output_count += 1;
            c.compute_output_ns += e.output_ns;
            c.pending = c.pending.saturating_sub(1);
            out.push(Completion {
                token: r.token,
                model: e.model,
                batch: e.images,
                ok: true,
                queue_ns,
                compute_input_ns: e.input_ns,
                compute_infer_ns: e.infer_ns,
                compute_output_ns: e.output_ns,
                finished_at: now,
            });
        }
    }
}
