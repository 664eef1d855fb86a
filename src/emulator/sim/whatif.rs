//! Virtual-time experiments on the core: open-loop runs, solo peaks and co-location equivalents.
//!
//! Everything here is deterministic for a given seed, so a peak found once is the peak found again, and
//! tests can compare figures without tolerating run-to-run noise.

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

use super::core::Sim;
use super::types::{Completion, GpuSetup, ModelSetup, Nanos, SimError};

/// How requests arrive: Poisson (exponential gaps, what many independent clients produce) or evenly spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrivals {
    Poisson,
    Constant,
}

/// Offered load for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Requests per second.
    pub rate_per_s: f64,
    /// Images per request.
    pub batch: u32,
    pub arrivals: Arrivals,
}

impl Workload {
    pub fn poisson(rate_per_s: f64) -> Workload {
        Workload {
            rate_per_s,
            batch: 1,
            arrivals: Arrivals::Poisson,
        }
    }

    pub fn constant(rate_per_s: f64) -> Workload {
        Workload {
            rate_per_s,
            batch: 1,
            arrivals: Arrivals::Constant,
        }
    }
}

/// One model's outcome of a run. Latency is server-side: arrival at the sim to completion.
#[derive(Debug, Clone)]
pub struct ModelReport {
    pub name: String,
    /// Length of the arrival window the rates refer to.
    pub duration_s: f64,
    pub offered_per_s: f64,
    /// Requests that completed within the run's duration, per second of it.
    pub achieved_per_s: f64,
    /// Requests that arrived within the run's duration.
    pub submitted: u64,
    /// Of those, how many finished (all do: the run drains its queues before reporting latency).
    pub completed: u64,
    /// Time-average of requests queued or executing over the run's duration (the L of Little's law).
    pub mean_in_system: f64,
    /// Images per executed batch.
    pub mean_batch: f64,
    pub mean_latency_ms: f64,
    /// Latency histogram in microseconds.
    pub latency_us: Histogram<u64>,
}

impl ModelReport {
    /// Latency at `percentile` (0–100) in milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> f64 {
        self.latency_us
            .value_at_quantile((percentile / 100.0).clamp(0.0, 1.0)) as f64
            / 1000.0
    }
}

#[derive(Debug, Clone)]
pub struct SimReport {
    pub duration_s: f64,
    pub models: Vec<ModelReport>,
    /// NVML-like: share of the duration any kernel ran.
    pub gpu_utilization: f64,
    /// Time-average of min(1, U).
    pub sm_activity: f64,
    pub mean_power_w: f64,
    pub energy_j: f64,
}

/// Runs `models` with their workloads on one GPU for `duration_s` of virtual time, then drains the queues so
/// every request that arrived has a latency.
pub fn simulate(
    gpu: &GpuSetup,
    models: &[(ModelSetup, Workload)],
    duration_s: f64,
    seed: u64,
) -> Result<SimReport, SimError> {
    let mut sim = Sim::new(gpu.clone());
    let mut ids = Vec::with_capacity(models.len());
    for (setup, workload) in models {
        let id = sim.load(setup.clone())?;
        if workload.batch == 0 || workload.batch > setup.max_batch {
            return Err(SimError::BatchTooLarge {
                model: setup.name.clone(),
                batch: workload.batch,
                max: setup.max_batch,
            });
        }
        ids.push(id);
    }
    let end: Nanos = (duration_s.max(0.0) * 1e9) as Nanos;
    let mut streams: Vec<Stream> = models
        .iter()
        .enumerate()
        .map(|(i, (_, w))| Stream::new(w, seed, i))
        .collect();
    let mut stats: Vec<Tally> = models.iter().map(|_| Tally::new()).collect();
    let mut arrived_at: Vec<Nanos> = Vec::new();
    let mut token_model: Vec<usize> = Vec::new();
    let mut done: Vec<Completion> = Vec::new();
    let mut gpu_at_end = None;
    let mut last: Nanos = 0;

    loop {
        let next_arrival = streams
            .iter()
            .filter_map(|s| s.next)
            .filter(|&t| t < end)
            .min();
        let mut t = match (next_arrival, sim.next_event()) {
            (Some(a), Some(e)) => a.min(e),
            (a, e) => match a.or(e) {
                Some(t) => t,
                None => break,
            },
        };
        if gpu_at_end.is_none() && t >= end {
            t = end;
        }
        // Pending counts only change at events, so they held constant since `last`.
        let window = t.min(end).saturating_sub(last.min(end)) as f64;
        for (tally, &id) in stats.iter_mut().zip(&ids) {
            let pending = sim.counters(id).map_or(0, |c| c.pending);
            tally.in_system_ns += pending as f64 * window;
        }
        sim.advance(t, &mut done);
        for c in done.drain(..) {
            let index = token_model[c.token as usize];
            let tally = &mut stats[index];
            let latency = c.finished_at.saturating_sub(arrived_at[c.token as usize]);
            let micros = latency.div_ceil(1_000).max(1);
            // Auto-resizing, so `record` grows to fit; saturating only guards the impossible error.
            if tally.latency_us.record(micros).is_err() {
                tally.latency_us.saturating_record(micros);
            }
            tally.latency_sum_ns += latency as f64;
            tally.completed += 1;
            if c.finished_at <= end {
                tally.completed_in_window += 1;
            }
        }
        if t == end && gpu_at_end.is_none() {
            gpu_at_end = Some(sim.gpu_counters());
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            while stream.next == Some(t) && t < end {
                let token = arrived_at.len() as u64;
                arrived_at.push(t);
                token_model.push(i);
                sim.submit(t, ids[i], models[i].1.batch, token)?;
                stats[i].submitted += 1;
                stream.step();
            }
        }
        last = t;
    }

    let gpu_end = gpu_at_end.unwrap_or_else(|| sim.gpu_counters());
    let span = end.max(1) as f64;
    let reports = models
        .iter()
        .zip(stats)
        .zip(&ids)
        .map(|(((setup, workload), tally), &id)| {
            let counters = sim.counters(id);
            let mean_batch = counters.map_or(0.0, |c| {
                if c.execution_count == 0 {
                    0.0
                } else {
                    c.inference_count as f64 / c.execution_count as f64
                }
            });
            ModelReport {
                name: setup.name.clone(),
                duration_s,
                offered_per_s: workload.rate_per_s,
                achieved_per_s: tally.completed_in_window as f64 * 1e9 / span,
                submitted: tally.submitted,
                completed: tally.completed,
                mean_in_system: tally.in_system_ns / span,
                mean_batch,
                mean_latency_ms: if tally.completed == 0 {
                    0.0
                } else {
                    tally.latency_sum_ns / tally.completed as f64 / 1e6
                },
                latency_us: tally.latency_us,
            }
        })
        .collect();
    let duration = duration_s.max(1e-9);
    Ok(SimReport {
        duration_s,
        models: reports,
        gpu_utilization: gpu_end.busy_ns as f64 / span,
        sm_activity: gpu_end.sm_active_ns / span,
        mean_power_w: gpu_end.energy_j / duration,
        energy_j: gpu_end.energy_j,
    })
}

struct Tally {
    submitted: u64,
    completed: u64,
    completed_in_window: u64,
    in_system_ns: f64,
    latency_sum_ns: f64,
    latency_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            submitted: 0,
            completed: 0,
            completed_in_window: 0,
            in_system_ns: 0.0,
            latency_sum_ns: 0.0,
            // Auto-resizing, so any latency records; creation fails only for > 5 significant figures.
            latency_us: Histogram::new(3)
                .expect("3 significant figures is a valid histogram precision"),
        }
    }
}

/// One model's arrival process, with its own generator so adding a model does not shift another's arrivals.
struct Stream {
    next: Option<Nanos>,
    clock: f64,
    gap_ns: f64,
    exp: Option<Exp<f64>>,
    rng: StdRng,
}

impl Stream {
    fn new(workload: &Workload, seed: u64, index: usize) -> Stream {
        let rate = workload.rate_per_s;
        let usable = rate.is_finite() && rate > 0.0;
        let exp = match workload.arrivals {
            Arrivals::Poisson if usable => Exp::new(rate).ok(),
            _ => None,
        };
        let stream_seed = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut stream = Stream {
            next: None,
            clock: 0.0,
            gap_ns: if usable { 1e9 / rate } else { f64::INFINITY },
            exp,
            rng: StdRng::seed_from_u64(stream_seed),
        };
        if usable {
            stream.step();
        }
        stream
    }

    fn step(&mut self) {
        let gap = match &self.exp {
            Some(exp) => exp.sample(&mut self.rng) * 1e9,
            None => self.gap_ns,
        };
        self.clock += gap;
        self.next = if self.clock.is_finite() {
            Some(self.clock as Nanos)
        } else {
            None
        };
    }
}

/// A latency objective: `percentile` (0–100) of latencies within `latency_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sla {
    pub latency_ms: f64,
    pub percentile: f64,
}

/// How hard peak searches work: longer runs are steadier, more iterations are finer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchOptions {
    pub duration_s: f64,
    pub seed: u64,
    pub iterations: u32,
}

impl Default for SearchOptions {
    fn default() -> SearchOptions {
        SearchOptions {
            duration_s: 60.0,
            seed: 1,
            iterations: 12,
        }
    }
}

impl SearchOptions {
    /// Runs of 40 SLAs (5–60 s): overload by ε shows as ≈ ε·duration of extra latency, so this resolves
    /// peaks to about 2.5 % while keeping fast models (many requests per second) affordable.
    pub fn for_sla(sla_ms: f64) -> SearchOptions {
        SearchOptions {
            duration_s: (0.04 * sla_ms).clamp(5.0, 60.0),
            ..SearchOptions::default()
        }
    }
}

/// A run meets its SLA when the percentile (over every request that arrived, queues drained) is within
/// the target. An overloaded queue grows for the whole run, so overload by a fraction ε shows up as a
/// latency of about ε·duration: runs must be long next to the SLA (a 60 s run resolves 1.25 % at 750 ms).
/// The completion check only guards against huge SLAs hiding a gross overload.
fn meets(report: &ModelReport, sla: &Sla) -> bool {
    let arrived_per_s = report.submitted as f64 / report.duration_s.max(1e-9);
    report.latency_ms(sla.percentile) <= sla.latency_ms
        && report.achieved_per_s >= 0.95 * arrived_per_s
}

/// The highest Poisson request rate (req/s, `batch` images each) at which `model` alone on `gpu` meets
/// `percentile` ≤ `sla_ms`, with [`SearchOptions::for_sla`].
pub fn solo_peak(
    gpu: &GpuSetup,
    model: &ModelSetup,
    batch: u32,
    sla_ms: f64,
    percentile: f64,
) -> Result<f64, SimError> {
    let sla = Sla {
        latency_ms: sla_ms,
        percentile,
    };
    solo_peak_with(gpu, model, batch, &sla, &SearchOptions::for_sla(sla_ms))
}

/// [`solo_peak`] with explicit search options.
pub fn solo_peak_with(
    gpu: &GpuSetup,
    model: &ModelSetup,
    batch: u32,
    sla: &Sla,
    options: &SearchOptions,
) -> Result<f64, SimError> {
    let capacity = model.capacity_images_per_s(batch, gpu) / f64::from(batch.max(1));
    let ok = |rate: f64| -> Result<bool, SimError> {
        let workload = Workload {
            rate_per_s: rate,
            batch,
            arrivals: Arrivals::Poisson,
        };
        let report = simulate(
            gpu,
            &[(model.clone(), workload)],
            options.duration_s,
            options.seed,
        )?;
        Ok(report.models.first().is_some_and(|m| meets(m, sla)))
    };
    bisect(0.0, capacity * 1.02, options.iterations, ok)
}

/// Largest x in [lo, hi] with ok(x), assuming ok is true below some threshold and false above it.
fn bisect(
    mut lo: f64,
    mut hi: f64,
    iterations: u32,
    mut ok: impl FnMut(f64) -> Result<bool, SimError>,
) -> Result<f64, SimError> {
    if ok(hi)? {
        return Ok(hi);
    }
    for _ in 0..iterations {
        let mid = 0.5 * (lo + hi);
        if ok(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// A co-located operating point.
#[derive(Debug, Clone)]
pub struct Colocation {
    /// Request rate per model.
    pub rates: Vec<f64>,
    /// Σ λᵢ / peakᵢ: how many dedicated GPUs this one replaces.
    pub equivalents: f64,
    /// Whether every model met the SLA.
    pub meets_sla: bool,
    pub report: SimReport,
}

/// Runs the models together at `rates` (Poisson, batch 1) and reports their dedicated equivalents.
pub fn colocation_point(
    gpu: &GpuSetup,
    models: &[ModelSetup],
    rates: &[f64],
    peaks: &[f64],
    sla: &Sla,
    options: &SearchOptions,
) -> Result<Colocation, SimError> {
    let runs: Vec<(ModelSetup, Workload)> = models
        .iter()
        .zip(rates)
        .map(|(m, &r)| (m.clone(), Workload::poisson(r)))
        .collect();
    let report = simulate(gpu, &runs, options.duration_s, options.seed)?;
    let equivalents = rates
        .iter()
        .zip(peaks)
        .map(|(&r, &p)| if p > 0.0 { r / p } else { 0.0 })
        .sum();
    let meets_sla = report.models.iter().all(|m| meets(m, sla));
    Ok(Colocation {
        rates: rates.to_vec(),
        equivalents,
        meets_sla,
        report,
    })
}

/// The best point that meets the SLA for every model along each mix: a mix gives each model's share of the
/// dedicated equivalents (weights summing to 1), and the search scales it up until an SLA breaks, so the
/// scale found is the mix's dedicated equivalents. Returns the mix with the most.
pub fn best_colocation(
    gpu: &GpuSetup,
    models: &[ModelSetup],
    peaks: &[f64],
    mixes: &[Vec<f64>],
    sla: &Sla,
    options: &SearchOptions,
) -> Result<Option<Colocation>, SimError> {
    let mut best: Option<Colocation> = None;
    for mix in mixes {
        let rates_at = |scale: f64| -> Vec<f64> {
            mix.iter().zip(peaks).map(|(w, p)| scale * w * p).collect()
        };
        let scale = bisect(0.0, 2.0, options.iterations, |s| {
            Ok(colocation_point(gpu, models, &rates_at(s), peaks, sla, options)?.meets_sla)
        })?;
        let point = colocation_point(gpu, models, &rates_at(scale), peaks, sla, options)?;
        if best
            .as_ref()
            .is_none_or(|b| point.equivalents > b.equivalents)
        {
            best = Some(point);
        }
    }
    Ok(best)
}
