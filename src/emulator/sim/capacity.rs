//! The capacity of a mix: the largest common scale factor k at which every tenant still meets its
//! SLA, found by bisection over virtual-time runs of the whole mix at k × each tenant's rate.
//!
//! This is the one search behind live capacity, the dashboard's what-if and `perseus plan`, so that
//! all three agree for a given seed. Equivalents are only meaningful at the frontier (DESIGN §4), and
//! k × the operating point is the frontier point on the operating point's ray.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

use super::early::Missed;
use super::threshold::{self, Probe};
use super::traffic::Demand;
use super::types::{GpuSetup, ModelSetup, SimError};
use super::whatif::{GapSource, ModelReport, Offered, SearchOptions, Sla, simulate_watched};

/// How a tenant's requests arrive, at whatever rate the search asks for.
#[derive(Clone)]
pub enum MixArrivals {
    Poisson,
    Constant,
    /// Any process: called with the rate and a seed, it returns the gaps of one run. The client's
    /// own generators come in this way, so a capacity sees the arrivals a run would send.
    Process(Arc<dyn Fn(f64, u64) -> GapSource<'static> + Send + Sync>),
}

impl std::fmt::Debug for MixArrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MixArrivals::Poisson => "Poisson",
            MixArrivals::Constant => "Constant",
            MixArrivals::Process(_) => "Process(..)",
        })
    }
}

/// One tenant of a mix: its model as the server runs it, its load and its SLA.
#[derive(Debug, Clone)]
pub struct MixTenant {
    pub setup: ModelSetup,
    /// Images per request.
    pub batch: u32,
    /// The operating point's rate, requests per second.
    pub rate_per_s: f64,
    pub arrivals: MixArrivals,
    pub sla: Sla,
}

/// How hard the capacity search works. `duration_s: None` picks runs long next to the loosest SLA
/// ([`SearchOptions::for_sla`]), which is what resolves an overload against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityOptions {
    pub duration_s: Option<f64>,
    pub seed: u64,
    /// Bisection steps after the bracket is found; each halves the uncertainty on k.
    pub iterations: u32,
}

impl Default for CapacityOptions {
    fn default() -> CapacityOptions {
        CapacityOptions {
            duration_s: None,
            seed: 1,
            iterations: 10,
        }
    }
}

/// One tenant's predicted figures at some scale of the mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantOutcome {
    /// The rate it was offered, requests per second.
    pub rate_per_s: f64,
    /// Latency at the tenant's SLA percentile, milliseconds (server-side, queues drained).
    pub latency_ms: f64,
    /// Fraction of arrivals that completed within the SLA latency.
    pub attainment: f64,
    pub meets_sla: bool,
}

/// A mix's capacity and what each tenant sees at the operating point and at capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct MixCapacity {
    /// The largest common scale factor found to meet every SLA (0 when even a trickle misses).
    pub k: f64,
    pub at_operating: Vec<TenantOutcome>,
    pub at_capacity: Vec<TenantOutcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error("the mix has no tenant with a positive rate to scale")]
    NoLoad,
    #[error(
        "tenants {first} and {second} both serve model '{model}': the GPU model runs one queue per model"
    )]
    SharedModel {
        model: String,
        first: usize,
        second: usize,
    },
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// Runs the mix at `scale` × each tenant's rate and reports each tenant against its SLA.
pub fn evaluate(
    gpu: &GpuSetup,
    mix: &[MixTenant],
    scale: f64,
    options: &CapacityOptions,
) -> Result<Vec<TenantOutcome>, CapacityError> {
    match run(gpu, mix, scale, options, false)? {
        Ok(outcomes) => Ok(outcomes),
        Err(missed) => unreachable!("a run with no SLA watched ended early: {missed:?}"),
    }
}

/// [`evaluate`] for a pass/fail question: the run ends as soon as some tenant certainly misses
/// its SLA, and then only that is known. A run that passes is exactly [`evaluate`]'s.
pub fn evaluate_watched(
    gpu: &GpuSetup,
    mix: &[MixTenant],
    scale: f64,
    options: &CapacityOptions,
) -> Result<Result<Vec<TenantOutcome>, Missed>, CapacityError> {
    run(gpu, mix, scale, options, true)
}

fn run(
    gpu: &GpuSetup,
    mix: &[MixTenant],
    scale: f64,
    options: &CapacityOptions,
    watch: bool,
) -> Result<Result<Vec<TenantOutcome>, Missed>, CapacityError> {
    check(mix)?;
    let duration_s = duration(mix, scale, options);
    let demands = mix
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let rate = t.rate_per_s * scale;
            Demand::Open(Offered {
                setup: t.setup.clone(),
                batch: t.batch,
                rate_per_s: rate,
                gaps: gaps(&t.arrivals, rate, stream_seed(options.seed, i)),
            })
        })
        .collect();
    let slas: Vec<Option<Sla>> = match watch {
        true => mix.iter().map(|t| Some(t.sla)).collect(),
        false => Vec::new(),
    };
    let report = match simulate_watched(gpu, demands, 0.0, duration_s, &slas)? {
        Ok(report) => report,
        Err(missed) => return Ok(Err(missed)),
    };
    Ok(Ok(mix
        .iter()
        .zip(&report.models)
        .map(|(t, m)| outcome(m, &t.sla, t.rate_per_s * scale))
        .collect()))
}

/// The mix's capacity: bisection's k between a scale that meets every SLA and one that does not,
/// the upper end bounded by what the GPU could serve at all, so the search never runs unbounded.
/// The scales are a grid of 2^iterations steps searched with [`threshold`], each run's tightest
/// latency against its SLA placing the next, so k is bisection's in fewer runs.
pub fn capacity(
    gpu: &GpuSetup,
    mix: &[MixTenant],
    options: &CapacityOptions,
) -> Result<MixCapacity, CapacityError> {
    check(mix)?;
    let ceiling = ceiling(gpu, mix).ok_or(CapacityError::NoLoad)?;
    let at_operating = evaluate(gpu, mix, 1.0, options)?;
    let operating = probe(mix, &at_operating);
    let (lo, hi) = if operating.pass {
        (1.0_f64.min(ceiling), ceiling.max(1.0))
    } else {
        (0.0, 1.0_f64.min(ceiling))
    };
    let steps = 1u32 << options.iterations.min(30);
    let scale = |i: u32| lo + (hi - lo) * f64::from(i) / f64::from(steps);
    // The operating point is one end of the grid (or beyond it): its run is not made again.
    let mut known = Vec::new();
    let mut prior = (1.0, -1.0);
    if lo == 1.0 {
        prior.0 = operating.slack;
    } else if hi == 1.0 {
        known.push((steps, operating));
    }
    let mut runs: Vec<(u32, Vec<TenantOutcome>)> = Vec::new();
    let found = threshold::last_passing(steps, prior, &known, |i| {
        let o = match evaluate_watched(gpu, mix, scale(i), options)? {
            Ok(o) => o,
            Err(missed) => {
                let sla_ms = mix.get(missed.tenant).map_or(0.0, |t| t.sla.latency_ms);
                return Ok(Probe::of_latency(false, missed.latency_ms, sla_ms));
            }
        };
        let p = probe(mix, &o);
        runs.push((i, o));
        Ok::<_, CapacityError>(p)
    })?;
    let k = scale(found);
    let at_capacity = match runs.into_iter().find(|(i, _)| *i == found) {
        Some((_, o)) => o,
        None if found == 0 && lo == 1.0 => at_operating.clone(),
        None if found == steps && hi == 1.0 => at_operating.clone(),
        None => evaluate(gpu, mix, k, options)?,
    };
    Ok(MixCapacity {
        k,
        at_operating,
        at_capacity,
    })
}

/// A run of the mix as the grid search sees it: passing when every tenant meets its SLA, its slack
/// the tightest tenant's.
fn probe(mix: &[MixTenant], outcomes: &[TenantOutcome]) -> Probe {
    let pass = !outcomes.is_empty() && outcomes.iter().all(|t| t.meets_sla);
    let tightest = mix
        .iter()
        .zip(outcomes)
        .map(|(t, o)| Probe::of_latency(o.meets_sla, o.latency_ms, t.sla.latency_ms).slack)
        .fold(f64::INFINITY, f64::min);
    let slack = if tightest.is_finite() { tightest } else { -1.0 };
    Probe {
        pass,
        slack: if pass {
            slack.max(1e-6)
        } else {
            slack.min(-1e-6)
        },
    }
}

fn check(mix: &[MixTenant]) -> Result<(), CapacityError> {
    for (i, t) in mix.iter().enumerate() {
        if let Some(j) = mix[..i].iter().position(|o| o.setup.name == t.setup.name) {
            return Err(CapacityError::SharedModel {
                model: t.setup.name.clone(),
                first: j + 1,
                second: i + 1,
            });
        }
    }
    Ok(())
}

/// A scale no mix can exceed: beyond it some model would need more than its instances can execute
/// alone, or the models together more SM time than there is (α leaves SMs idle, so only β counts).
/// A little above it, so that a mix that is just at the bound is not cut short by rounding.
fn ceiling(gpu: &GpuSetup, mix: &[MixTenant]) -> Option<f64> {
    let mut worst_model: f64 = 0.0;
    let mut sm_seconds = 0.0;
    for t in mix.iter().filter(|t| t.rate_per_s > 0.0) {
        let images_per_s = t.rate_per_s * f64::from(t.batch.max(1));
        let cap = t.setup.capacity_images_per_s(t.batch, gpu);
        if cap > 0.0 {
            worst_model = worst_model.max(images_per_s / cap);
        }
        sm_seconds += images_per_s * t.setup.beta_ms / 1e3;
    }
    let load = worst_model.max(sm_seconds);
    (load > 0.0 && load.is_finite()).then(|| 1.05 / load)
}

/// Requests one evaluation may simulate before its run is shortened (to no less than
/// [`MIN_DURATION_S`]). An overload by ε shows as about ε·duration of extra latency whatever the
/// rate, so a shorter run only resolves the edge more coarsely; without the bound, a light mix with a
/// loose SLA (headroom in the hundreds) would simulate millions of requests per step.
const MAX_REQUESTS: f64 = 200_000.0;
const MIN_DURATION_S: f64 = 5.0;

fn duration(mix: &[MixTenant], scale: f64, options: &CapacityOptions) -> f64 {
    options.duration_s.unwrap_or_else(|| {
        let loosest = mix.iter().map(|t| t.sla.latency_ms).fold(0.0, f64::max);
        let by_sla = SearchOptions::for_sla(loosest).duration_s;
        let rate: f64 = mix.iter().map(|t| t.rate_per_s * scale).sum();
        if rate > 0.0 {
            by_sla.min((MAX_REQUESTS / rate).max(MIN_DURATION_S))
        } else {
            by_sla
        }
    })
}

/// Each tenant its own stream, so adding a tenant does not shift another's arrivals.
fn stream_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn gaps(arrivals: &MixArrivals, rate: f64, seed: u64) -> GapSource<'static> {
    if !(rate.is_finite() && rate > 0.0) {
        return Box::new(|| f64::INFINITY);
    }
    match (arrivals, Exp::new(rate)) {
        (MixArrivals::Process(f), _) => f(rate, seed),
        (MixArrivals::Poisson, Ok(exp)) => {
            let mut rng = StdRng::seed_from_u64(seed);
            Box::new(move || exp.sample(&mut rng))
        }
        _ => Box::new(move || 1.0 / rate),
    }
}

/// Met as the solo-peak search has it: the percentile within the SLA over every arrival (queues
/// drained), and nearly every arrival completed within the run, so a huge SLA cannot hide overload.
fn outcome(m: &ModelReport, sla: &Sla, rate_per_s: f64) -> TenantOutcome {
    let latency_ms = m.latency_ms(sla.percentile);
    let arrived_per_s = m.submitted as f64 / m.duration_s.max(1e-9);
    let within = m
        .latency_us
        .count_between(0, (sla.latency_ms * 1000.0) as u64);
    let attainment = if m.submitted == 0 {
        1.0
    } else {
        (within as f64 / m.submitted as f64).min(1.0)
    };
    TenantOutcome {
        rate_per_s,
        latency_ms,
        attainment,
        meets_sla: latency_ms <= sla.latency_ms && m.achieved_per_s >= 0.95 * arrived_per_s,
    }
}
