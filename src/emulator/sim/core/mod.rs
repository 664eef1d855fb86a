//! The event-driven GPU: queues, instances, the copy engines, batches in flight and the shared-progress rule.
//!
//! Time only moves when the caller says so (`advance`), so one core serves both the real-time server and
//! virtual-time what-ifs. Between events nothing changes rate, so progress is bookkept as remaining solo
//! work and every rate is recomputed at each event; there is no per-tick loop.
//!
//! A batch goes through the stages Triton's TensorRT backend gives it on its CUDA streams: it waits for the
//! host-to-device copy engine (one per GPU, first come first served, so the link is shared by every
//! instance and model), copies in, waits for its instance's compute and a free hardware queue, computes,
//! then waits for the device-to-host engine and copies out. An instance takes its next batch as soon as the
//! previous one's inputs are on the GPU, so one instance's copies overlap its own compute.

mod models;

use std::sync::Arc;

use super::batcher::{self, Decision, Queued};
use super::types::{Completion, GpuCounters, GpuSetup, ModelCounters, ModelId, Nanos, SimError};
use models::Slot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the host-to-device copy engine.
    AwaitInput,
    Input,
    /// Inputs on the GPU, waiting for the instance's compute or a free hardware queue.
    AwaitCompute,
    Infer,
    /// Waiting for the device-to-host copy engine.
    AwaitOutput,
    Output,
}

impl Phase {
    /// Phases that end at a time known in advance; the others end when a resource frees up.
    fn timed(self) -> bool {
        matches!(self, Phase::Input | Phase::Infer | Phase::Output)
    }
}

/// A batch on an instance.
#[derive(Debug, Clone)]
struct Exec {
    model: ModelId,
    /// Dispatch order, which is also the order the copy engines and hardware queues serve batches in.
    seq: u64,
    requests: Vec<Queued>,
    images: u32,
    phase: Phase,
    started: Nanos,
    /// compute_input as Triton times it: from dispatch until the inputs are on the GPU.
    input_ns: u64,
    infer_started: Nanos,
    infer_ns: u64,
    output_started: Nanos,
    output_ns: u64,
    /// How long each copy takes once its engine is free.
    copy_in_ns: u64,
    copy_out_ns: u64,
    /// Occupancy u(b) while inferring.
    occupancy: f64,
    /// Inference work left, in nanoseconds of solo execution.
    remaining: f64,
    /// Fraction of solo speed since the last event.
    rate: f64,
    /// When the current phase ends at the current rate.
    ends: Nanos,
}

/// Events [`Sim::next_completion`] looks ahead through before it settles for the next event.
const LOOKAHEAD_EVENTS: usize = 10_000;

/// One emulated GPU. See DESIGN §5 for the model it implements.
#[derive(Debug, Clone)]
pub struct Sim {
    /// Shared, so that a look-ahead copy of the sim does not copy the GPU's tables.
    gpu: Arc<GpuSetup>,
    now: Nanos,
    slots: Vec<Slot>,
    execs: Vec<Exec>,
    counters: GpuCounters,
    /// Completions produced while catching up inside `submit`/`unload`, handed out by the next `advance`.
    stash: Vec<Completion>,
    next_seq: u64,
    /// Scratch lists reused at every event, so that a virtual-time run allocates nothing per event
    /// (allocation per event was a large share of a plan's time).
    ready: Vec<usize>,
    computing: Vec<(ModelId, f64)>,
    /// γ between the models of every two slots, `[slot][slot]`, kept with the model table: rates are
    /// recomputed at every event, and looking γ up by model name there cost more than the rest.
    gammas: Arc<Vec<Vec<f64>>>,
    /// Whether anything rates and ends depend on (time, the batches inferring, their order in
    /// `execs`) changed since `update_rates` last ran: the last pass of every `settle` changes
    /// nothing, and recomputing then would give the same figures.
    rates_stale: bool,
}

impl Sim {
    pub fn new(gpu: GpuSetup) -> Sim {
        let counters = GpuCounters {
            memory_used_bytes: gpu.context_bytes,
            memory_total_bytes: gpu.memory_total_bytes,
            ..GpuCounters::default()
        };
        Sim {
            gpu: Arc::new(gpu),
            now: 0,
            slots: Vec::new(),
            execs: Vec::new(),
            counters,
            stash: Vec::new(),
            next_seq: 0,
            ready: Vec::new(),
            computing: Vec::new(),
            gammas: Arc::default(),
            rates_stale: true,
        }
    }

    pub fn gpu(&self) -> &GpuSetup {
        &self.gpu
    }

    /// The time of the last event processed or advanced to.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Queues a request of `batch` images at `now` (clamped to the sim's time, which never runs backwards).
    pub fn submit(
        &mut self,
        now: Nanos,
        id: ModelId,
        batch: u32,
        token: u64,
    ) -> Result<(), SimError> {
        self.live(id)?.setup.check_batch(batch)?;
        self.catch_up(now);
        let slot = &mut self.slots[id.slot];
        slot.queue.push_back(Queued {
            token,
            batch,
            arrived: self.now,
        });
        slot.counters.pending += 1;
        let mut stash = std::mem::take(&mut self.stash);
        self.settle(&mut stash);
        self.stash = stash;
        Ok(())
    }

    /// Processes every event up to and including `to`, appending finished requests to `out`.
    pub fn advance(&mut self, to: Nanos, out: &mut Vec<Completion>) {
        out.append(&mut self.stash);
        self.run_until(to, out);
    }

    /// The earliest pending event: a phase of a batch ending, or a batcher's queue delay running out.
    pub fn next_event(&self) -> Option<Nanos> {
        let batch_end = self
            .execs
            .iter()
            .filter(|e| e.phase.timed())
            .map(|e| e.ends)
            .min();
        let timeout = self.slots.iter().filter_map(|s| s.wake_at).min();
        match (batch_end, timeout) {
            (Some(a), Some(b)) => Some(a.min(b).max(self.now)),
            (a, b) => a.or(b).map(|t| t.max(self.now)),
        }
    }

    /// When the next request finishes if nothing more is submitted (`None`: none will). The events
    /// before it (copies, compute, batcher timeouts) change nothing a client sees, and whoever next
    /// advances the sim processes them in order anyway, so a real-time driver need only wake then.
    pub fn next_completion(&self) -> Option<Nanos> {
        if !self.stash.is_empty() {
            return Some(self.now);
        }
        let next = self.next_event()?;
        // The usual case: the next event is a batch's copy-out ending, which finishes its requests.
        if self
            .execs
            .iter()
            .any(|e| e.phase == Phase::Output && e.ends.max(self.now) == next)
        {
            return Some(next);
        }
        let mut probe = self.clone();
        let mut out = Vec::new();
        for _ in 0..LOOKAHEAD_EVENTS {
            let t = probe.next_event()?;
            probe.integrate(t);
            probe.settle(&mut out);
            if !out.is_empty() {
                return Some(t);
            }
        }
        Some(next)
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
        let mut stash = std::mem::take(&mut self.stash);
        self.run_until(now, &mut stash);
        self.stash = stash;
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
        self.rates_stale = true;
    }

    /// Handles everything due at `self.now`: phase changes, completions, new batches, copies and computes
    /// started on freed resources, then new rates. Each slot's `wake_at` is what the last pass's
    /// `dispatch` found, a pass that started nothing, so the batcher's answer still holds.
    fn settle(&mut self, out: &mut Vec<Completion>) {
        loop {
            let ended = self.end_phases(out);
            let started = self.dispatch() | self.start_copies() | self.start_computes();
            self.update_rates();
            // Zero-length phases end at `now` again; everything else waits for a later event.
            if !ended && !started {
                break;
            }
        }
    }

    /// Moves every batch whose timed phase ended by now to its next stage; whether any did.
    fn end_phases(&mut self, out: &mut Vec<Completion>) -> bool {
        let now = self.now;
        let mut any = false;
        let mut i = 0;
        while i < self.execs.len() {
            let e = &mut self.execs[i];
            if !e.phase.timed() || e.ends > now {
                i += 1;
                continue;
            }
            any = true;
            match e.phase {
                Phase::Input => {
                    e.phase = Phase::AwaitCompute;
                    e.input_ns = now - e.started;
                    i += 1;
                }
                Phase::Infer => {
                    self.rates_stale = true;
                    e.phase = Phase::AwaitOutput;
                    e.remaining = 0.0;
                    e.infer_ns = now - e.infer_started;
                    e.output_started = now;
                    let slot = &mut self.slots[e.model.slot];
                    slot.computing = slot.computing.saturating_sub(1);
                    i += 1;
                }
                _ => {
                    // The batch moved into its place may be inferring: the order rates sum in changed.
                    self.rates_stale = true;
                    let mut e = self.execs.swap_remove(i);
                    e.output_ns = now - e.output_started;
                    self.finish(e, out);
                }
            }
        }
        any
    }

    /// Takes every batch the batchers allow into free instance stages; whether any started. Each
    /// slot's `wake_at` is left at when its batcher next wants to start one with an instance free.
    fn dispatch(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        for index in 0..self.slots.len() {
            let id = self.id_of(index);
            loop {
                let slot = &mut self.slots[index];
                if !slot.loaded || slot.staged >= slot.setup.instances {
                    slot.wake_at = None;
                    break;
                }
                let n = match batcher::decide(&slot.setup, &slot.queue, now) {
                    Some(Decision::Start(n)) => n,
                    Some(Decision::WaitUntil(t)) => {
                        slot.wake_at = Some(t);
                        break;
                    }
                    None => {
                        slot.wake_at = None;
                        break;
                    }
                };
                let requests: Vec<Queued> = slot.queue.drain(..n).collect();
                let images: u32 = requests.iter().map(|r| r.batch).sum();
                slot.staged += 1;
                let setup = &slot.setup;
                let share = self.gpu.mps.as_ref().map_or(1.0, |m| m.share(&setup.name));
                let (latency, occupancy) = setup.confined(images, share);
                self.execs.push(Exec {
                    model: id,
                    seq: self.next_seq,
                    requests,
                    images,
                    phase: Phase::AwaitInput,
                    started: now,
                    input_ns: 0,
                    infer_started: now,
                    infer_ns: 0,
                    output_started: now,
                    output_ns: 0,
                    copy_in_ns: setup.compute_input_ns(images, &self.gpu),
                    copy_out_ns: setup.compute_output_ns(images, &self.gpu),
                    occupancy,
                    remaining: latency,
                    rate: 1.0,
                    ends: now,
                });
                self.next_seq += 1;
                any = true;
            }
        }
        any
    }

    /// Gives each idle copy engine the longest-waiting copy in its direction; whether any started.
    fn start_copies(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        for (waiting, busy) in [
            (Phase::AwaitInput, Phase::Input),
            (Phase::AwaitOutput, Phase::Output),
        ] {
            if self.execs.iter().any(|e| e.phase == busy) {
                continue;
            }
            let next = self
                .execs
                .iter_mut()
                .filter(|e| e.phase == waiting)
                .min_by_key(|e| e.seq);
            if let Some(e) = next {
                e.phase = busy;
                e.ends = now
                    + if busy == Phase::Input {
                        e.copy_in_ns
                    } else {
                        e.copy_out_ns
                    };
                any = true;
            }
        }
        any
    }

    /// Starts computing batches whose inputs are in, in dispatch order, while their model has an idle
    /// instance and a free hardware queue (the GPU's, or under MPS its process's); whether any started.
    fn start_computes(&mut self) -> bool {
        let now = self.now;
        let per_process = self.gpu.mps.is_some();
        let mut resident = self
            .execs
            .iter()
            .filter(|e| e.phase == Phase::Infer)
            .count() as u32;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend((0..self.execs.len()).filter(|&i| self.execs[i].phase == Phase::AwaitCompute));
        ready.sort_by_key(|&i| self.execs[i].seq);
        let mut any = false;
        let cap = self.gpu.max_resident.max(1);
        for &i in &ready {
            if !per_process && resident >= cap {
                break;
            }
            let e = &mut self.execs[i];
            let slot = &mut self.slots[e.model.slot];
            if slot.computing
                >= slot
                    .setup
                    .instances
                    .min(if per_process { cap } else { u32::MAX })
            {
                continue;
            }
            slot.computing += 1;
            slot.staged = slot.staged.saturating_sub(1);
            resident += 1;
            e.phase = Phase::Infer;
            e.infer_started = now;
            e.rate = 1.0;
            // The real rate (and end) is set by `update_rates` with every other computing batch.
            e.ends = now + e.remaining.ceil() as u64;
            any = true;
        }
        self.ready = ready;
        self.rates_stale |= any;
        any
    }

    /// DESIGN §5: with U = Σ uⱼ, batch i runs at 1 / (max(1, U) · (1 + Σⱼ γᵢⱼ·uⱼ)) of its solo speed, where
    /// the sum runs over batches of *other* models: a model's own instances only share the SMs.
    fn update_rates(&mut self) {
        if !std::mem::take(&mut self.rates_stale) {
            return;
        }
        let u = self.total_occupancy();
        let now = self.now;
        let mut computing = std::mem::take(&mut self.computing);
        computing.clear();
        computing.extend(
            self.execs
                .iter()
                .filter(|e| e.phase == Phase::Infer)
                .map(|e| (e.model, e.occupancy)),
        );
        let gammas = &self.gammas;
        for e in self.execs.iter_mut().filter(|e| e.phase == Phase::Infer) {
            let own = &gammas[e.model.slot];
            let others: f64 = computing
                .iter()
                .filter(|(m, _)| *m != e.model)
                .map(|&(m, occ)| own[m.slot] * occ)
                .sum();
            e.rate = 1.0 / (u.max(1.0) * (1.0 + others));
            e.ends = now + (e.remaining / e.rate).ceil() as u64;
        }
        self.computing = computing;
    }

    fn finish(&mut self, e: Exec, out: &mut Vec<Completion>) {
        let now = self.now;
        let slot = &mut self.slots[e.model.slot];
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
                arrived: r.arrived,
                finished_at: now,
            });
        }
    }
}
