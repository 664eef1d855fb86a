//! Virtual-time experiments on the core: open-loop runs, solo peaks and co-location equivalents.
//!
//! Everything here is deterministic for a given seed, so a peak found once is the peak found again, and
//! tests can compare figures without tolerating run-to-run noise.

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};
use slab::Slab;

use super::core::Sim;
use super::early::{Missed, Watch};
use super::traffic::{Demand, Source};
use super::types::{Completion, GpuSetup, ModelCounters, ModelSetup, Nanos, SimError};

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

/// One model's outcome of a run. Latency is the client's, from its (intended) send to completion:
/// without a client, from arrival at the sim.
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
    /// Mean time from arrival at the server to completion: the latency less the client's part
    /// (its send delay and transport), as the server's own clocks measure a request.
    pub mean_server_ms: f64,
    /// Latency histogram in microseconds.
    pub latency_us: Histogram<u64>,
    /// Time from arrival at the server to completion, microseconds: the distribution Triton's
    /// request summary reports, without the client's share.
    pub server_us: Histogram<u64>,
    /// The model's server-side statistics at the end of the run, as ModelStatistics would report them.
    pub counters: ModelCounters,
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
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

/// Gaps between one model's arrivals, in seconds, from any process: the simulator's own Poisson and
/// constant streams, or a client's generators so that a prediction sees the very arrivals a run sends.
pub type GapSource<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// One model's offered load for [`simulate_offered`].
pub struct Offered<'a> {
    pub setup: ModelSetup,
    /// Images per request.
    pub batch: u32,
    /// The nominal rate, reported as `offered_per_s`.
    pub rate_per_s: f64,
    pub gaps: GapSource<'a>,
}

/// Runs `models` with their workloads on one GPU for `duration_s` of virtual time, then drains the queues so
/// every request that arrived has a latency.
pub fn simulate(
    gpu: &GpuSetup,
    models: &[(ModelSetup, Workload)],
    duration_s: f64,
    seed: u64,
) -> Result<SimReport, SimError> {
    simulate_offered(gpu, offered(models, seed), 0.0, duration_s)
}

/// [`simulate`], ended as [`simulate_watched`] ends a run.
pub(super) fn simulate_against(
    gpu: &GpuSetup,
    models: &[(ModelSetup, Workload)],
    duration_s: f64,
    seed: u64,
    slas: &[Option<Sla>],
) -> Result<Result<SimReport, Missed>, SimError> {
    let demands = offered(models, seed)
        .into_iter()
        .map(Demand::Open)
        .collect();
    simulate_watched(gpu, demands, 0.0, duration_s, slas)
}

fn offered(models: &[(ModelSetup, Workload)], seed: u64) -> Vec<Offered<'static>> {
    models
        .iter()
        .enumerate()
        .map(|(i, (setup, w))| Offered {
            setup: setup.clone(),
            batch: w.batch,
            rate_per_s: w.rate_per_s,
            gaps: workload_gaps(w, seed, i),
        })
        .collect()
}

/// Runs the offered loads for `warmup_s + duration_s` of virtual time and reports on the requests that
/// arrived after the warm-up, whenever they finish (queues are drained), as a headless run counts them.
pub fn simulate_offered(
    gpu: &GpuSetup,
    models: Vec<Offered<'_>>,
    warmup_s: f64,
    duration_s: f64,
) -> Result<SimReport, SimError> {
    let demands = models.into_iter().map(Demand::Open).collect();
    simulate_demands(gpu, demands, warmup_s, duration_s)
}

/// [`simulate_offered`] for open and closed-loop tenants alike, several of them on one model where a
/// session has them. Sends stop at the end of the measured period, as a run's load generator stops;
/// what is in flight then still finishes and counts.
pub fn simulate_demands(
    gpu: &GpuSetup,
    demands: Vec<Demand<'_>>,
    warmup_s: f64,
    duration_s: f64,
) -> Result<SimReport, SimError> {
    match simulate_watched(gpu, demands, warmup_s, duration_s, &[])? {
        Ok(report) => Ok(report),
        Err(missed) => unreachable!("a run with no SLA watched ended early: {missed:?}"),
    }
}

/// [`simulate_demands`], ended as soon as some tenant certainly misses its SLA in `slas` (one per
/// demand, `None` for none): then `Err` names it, and nothing else of the run is known. A run that
/// is not ended is exactly the full run, report and all; see [`early`](super::early).
pub fn simulate_watched(
    gpu: &GpuSetup,
    demands: Vec<Demand<'_>>,
    warmup_s: f64,
    duration_s: f64,
    slas: &[Option<Sla>],
) -> Result<Result<SimReport, Missed>, SimError> {
    let mut sim = Sim::new(gpu.clone());
    let mut ids = Vec::with_capacity(demands.len());
    for d in &demands {
        let (setup, batch) = (d.setup(), d.batch());
        // Tenants of one model share its queue and instances, as they share it on a server; the
        // first tenant's setup is the model's.
        let id = match sim.model_id(&setup.name) {
            Some(id) => id,
            None => sim.load(setup.clone())?,
        };
        setup.check_batch(batch)?;
        ids.push(id);
    }
    let start: Nanos = (warmup_s.max(0.0) * 1e9) as Nanos;
    let end: Nanos = start + (duration_s.max(0.0) * 1e9) as Nanos;
    let (demands, mut watch) = match slas.iter().any(Option::is_some) {
        true => {
            let (demands, watch) = Watch::new(demands, slas, start, end);
            (demands, Some(watch))
        }
        false => (demands, None),
    };
    let mut meta: Vec<(String, u32, f64)> = Vec::with_capacity(demands.len());
    let mut sources: Vec<Source> = Vec::with_capacity(demands.len());
    for d in demands {
        meta.push((d.setup().name.clone(), d.batch(), d.rate_per_s()));
        sources.push(Source::new(d));
    }
    let mut stats: Vec<Tally> = meta.iter().map(|_| Tally::new()).collect();
    // Per request in the sim, by token: the client's send time, its arrival at the server, model
    // index, and whether it was sent in the measured period. A token is freed when its request
    // completes, so the table is as large as what is in flight, not as the run.
    let mut tokens: Slab<(Nanos, Nanos, usize, bool)> = Slab::new();
    let mut done: Vec<Completion> = Vec::new();
    let mut gpu_at_end = None;
    let mut last: Nanos = start;

    loop {
        let next_arrival = sources
            .iter()
            .filter_map(Source::next)
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
        let window = t.clamp(start, end).saturating_sub(last.clamp(start, end)) as f64;
        for (tally, &id) in stats.iter_mut().zip(&ids) {
            let pending = sim.counters(id).map_or(0, |c| c.pending);
            tally.in_system_ns += pending as f64 * window;
        }
        sim.advance(t, &mut done);
        for c in done.drain(..) {
            let (sent, arrived, index, counted) = tokens.remove(c.token as usize);
            sources[index].completed(c.finished_at);
            if counted {
                let micros = stats[index].record(sent, c.finished_at, end);
                stats[index].server(c.finished_at.saturating_sub(arrived));
                if let Some(missed) = watch
                    .as_mut()
                    .and_then(|w| w.record(index, micros, c.finished_at))
                {
                    return Ok(Err(missed));
                }
            }
        }
        if t == end && gpu_at_end.is_none() {
            gpu_at_end = Some(sim.gpu_counters());
        }
        for (i, source) in sources.iter_mut().enumerate() {
            while source.next().is_some_and(|n| n <= t) && t < end {
                let sent = source.intended().unwrap_or(t);
                let counted = sent >= start;
                let token = tokens.insert((sent, t, i, counted)) as u64;
                sim.submit(t, ids[i], meta[i].1, token)?;
                if counted {
                    stats[i].submitted += 1;
                }
                source.step();
            }
        }
        last = t;
    }

    let gpu_end = gpu_at_end.unwrap_or_else(|| sim.gpu_counters());
    let total = end.max(1) as f64;
    let span = end.saturating_sub(start).max(1) as f64;
    let reports = meta
        .into_iter()
        .zip(stats)
        .zip(&ids)
        .map(|(((name, _, rate), tally), &id)| {
            let counters = sim.counters(id).cloned().unwrap_or_default();
            tally.report(name, rate, duration_s, span, counters)
        })
        .collect();
    let seconds = (total / 1e9).max(1e-9);
    Ok(Ok(SimReport {
        duration_s,
        models: reports,
        gpu_utilization: gpu_end.busy_ns as f64 / total,
        sm_activity: gpu_end.sm_active_ns / total,
        mean_power_w: gpu_end.energy_j / seconds,
        energy_j: gpu_end.energy_j,
        memory_used_bytes: gpu_end.memory_used_bytes,
        memory_total_bytes: gpu_end.memory_total_bytes,
    }))
}

/// The simulator's own arrival streams, each with its own generator so that adding a model does not shift
/// another's arrivals.
fn workload_gaps(workload: &Workload, seed: u64, index: usize) -> GapSource<'static> {
    let rate = workload.rate_per_s;
    if !(rate.is_finite() && rate > 0.0) {
        return Box::new(|| f64::INFINITY);
    }
    match (workload.arrivals, Exp::new(rate)) {
        (Arrivals::Poisson, Ok(exp)) => {
            let stream_seed = seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut rng = StdRng::seed_from_u64(stream_seed);
            Box::new(move || exp.sample(&mut rng))
        }
        _ => Box::new(move || 1.0 / rate),
    }
}

struct Tally {
    submitted: u64,
    completed: u64,
    completed_in_window: u64,
    in_system_ns: f64,
    latency_sum_ns: f64,
    /// Time from arrival at the server to completion, summed: the server's share of the latency.
    server_sum_ns: f64,
    latency_us: Histogram<u64>,
    server_us: Histogram<u64>,
}

impl Tally {
    /// One request that arrived at `arrived` and finished at `finished`; it counts towards the
    /// achieved rate only if it finished by `end`.
    fn record(&mut self, arrived: Nanos, finished: Nanos, end: Nanos) -> u64 {
        let latency = finished.saturating_sub(arrived);
        let micros = latency.div_ceil(1_000).max(1);
        // Auto-resizing, so `record` grows to fit; saturating only guards the impossible error.
        if self.latency_us.record(micros).is_err() {
            self.latency_us.saturating_record(micros);
        }
        self.latency_sum_ns += latency as f64;
        self.completed += 1;
        if finished <= end {
            self.completed_in_window += 1;
        }
        micros
    }

    /// A measured request's time at the server, `ns` from its arrival to its completion.
    fn server(&mut self, ns: Nanos) {
        self.server_sum_ns += ns as f64;
        let micros = ns.div_ceil(1_000).max(1);
        if self.server_us.record(micros).is_err() {
            self.server_us.saturating_record(micros);
        }
    }

    /// The model's report over a measured span of `span_ns`.
    fn report(
        self,
        name: String,
        offered_per_s: f64,
        duration_s: f64,
        span_ns: f64,
        counters: ModelCounters,
    ) -> ModelReport {
        let mean_batch = if counters.execution_count == 0 {
            0.0
        } else {
            counters.inference_count as f64 / counters.execution_count as f64
        };
        ModelReport {
            name,
            duration_s,
            offered_per_s,
            achieved_per_s: self.completed_in_window as f64 * 1e9 / span_ns,
            submitted: self.submitted,
            completed: self.completed,
            mean_in_system: self.in_system_ns / span_ns,
            mean_batch,
            mean_latency_ms: if self.completed == 0 {
                0.0
            } else {
                self.latency_sum_ns / self.completed as f64 / 1e6
            },
            mean_server_ms: if self.completed == 0 {
                0.0
            } else {
                self.server_sum_ns / self.completed as f64 / 1e6
            },
            latency_us: self.latency_us,
            server_us: self.server_us,
            counters,
        }
    }

    fn new() -> Tally {
        Tally {
            submitted: 0,
            completed: 0,
            completed_in_window: 0,
            in_system_ns: 0.0,
            latency_sum_ns: 0.0,
            latency_us: latency_histogram(),
            server_us: latency_histogram(),
            server_sum_ns: 0.0,
        }
    }
}

/// The histogram a run's latencies are recorded in, microseconds.
pub(super) fn latency_histogram() -> Histogram<u64> {
    // Auto-resizing, so any latency records; creation fails only for > 5 significant figures.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
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
pub(super) fn meets(report: &ModelReport, sla: &Sla) -> bool {
    let arrived_per_s = report.submitted as f64 / report.duration_s.max(1e-9);
    report.latency_ms(sla.percentile) <= sla.latency_ms
        && report.achieved_per_s >= 0.95 * arrived_per_s
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
