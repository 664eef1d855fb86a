//! The search's questions answered in virtual time: each tenant's server configuration and solo peak
//! per GPU type, how many GPUs a tenant needs alone, and whether a mix meets every SLA with headroom,
//! co-located in one server or time-sliced between dedicated deployments ([`slicing`]).
//!
//! Every mix runs through the emulator's capacity code ([`sim::evaluate`], [`sim::capacity`]) and
//! its solo-peak search ([`sim::solo_peak`]), the paths live capacity, what-if and `perseus predict`
//! use, so a plan's figures are theirs. Every mix is memoised: the search asks the same question
//! many times.

mod prune;
mod slicing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::search::{Item, Oracle};
use super::{ArrivalSource, PlanError, PlanInput, Progress, parallel};
use crate::catalog::Catalog;
use crate::emulator::sim::{
    self, CapacityOptions, GpuSetup, GridRun, MixArrivals, MixTenant, ModelSetup, PeakGrid,
    SearchOptions, TenantOutcome,
};
use crate::vocab::spec::{DynamicBatching, Load, Sla, TenantSpec};

pub use prune::Dominated;

/// Most GPUs one tenant is split across.
pub const MAX_SHARDS: u32 = 64;

/// The server configuration chosen for one tenant on one GPU type, and its solo peak there.
#[derive(Debug, Clone)]
pub struct Choice {
    pub setup: ModelSetup,
    pub instances: u32,
    pub dynamic_batching: Option<DynamicBatching>,
    /// Requests per second it alone meets its SLA up to (0: not even a trickle).
    pub peak: f64,
}

/// One mix's outcome: whether every tenant met its SLA, and each one's latency at its SLA's
/// percentile, in the order of the sorted items.
#[derive(Debug, Clone)]
pub struct Mix {
    pub meets: bool,
    pub latency_ms: Vec<f64>,
}

impl Mix {
    fn refused(n: usize) -> Mix {
        Mix {
            meets: false,
            latency_ms: vec![f64::INFINITY; n],
        }
    }

    /// A run ended once some tenant certainly missed its SLA: no latency is known.
    fn missed(n: usize) -> Mix {
        Mix::refused(n)
    }

    fn of(outcomes: &[TenantOutcome]) -> Mix {
        Mix {
            meets: !outcomes.is_empty() && outcomes.iter().all(|o| o.meets_sla),
            latency_ms: outcomes.iter().map(|o| o.latency_ms).collect(),
        }
    }
}

/// How the tenants of one GPU share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// One server runs every model; batches of different models run at once and interfere.
    CoLocated,
    /// Each tenant has the GPU to itself for its slice of the time (see [`slicing`]).
    TimeSliced,
}

type Key = (usize, Vec<Item>, u64, Sharing);

/// The capacity code's options for every plan run: run lengths follow the loosest SLA of the mix,
/// as live capacity's do. The seed is unused: each tenant's arrivals carry their own.
const RUNS: CapacityOptions = CapacityOptions {
    duration_s: None,
    seed: 0,
    iterations: 10,
};

/// The solo-peak search's runs, on a grid of 2⁷ steps rather than its default 2¹²: they resolve a
/// peak to under 1 % of the model's capacity, finer than a run's length resolves an overload
/// (about 2.5 %, [`SearchOptions::for_sla`]), in fewer runs. Solo peaks are most of a plan's
/// time: one search per tenant and GPU type.
fn peak_search(sla: &sim::Sla) -> SearchOptions {
    SearchOptions {
        iterations: 7,
        ..SearchOptions::for_sla(sla.latency_ms)
    }
}

/// The virtual-time oracle for one [`PlanInput`].
pub struct VirtualTime<'a> {
    input: &'a PlanInput,
    arrivals: Arc<dyn ArrivalSource>,
    progress: &'a dyn Progress,
    gpus: Vec<GpuSetup>,
    /// `[tenant][gpu]`.
    choice: Vec<Vec<Option<Choice>>>,
    shards: Vec<Vec<Option<u32>>>,
    /// GPU types left out because another serves every tenant at least as well for no more.
    dominated: Vec<Dominated>,
    /// One cell per mix, taken under the lock and filled outside it: a thread asking for a mix
    /// another is running waits for that run instead of making it again.
    memo: Mutex<HashMap<Key, Arc<OnceLock<Arc<Mix>>>>>,
}

impl<'a> VirtualTime<'a> {
    /// Chooses each tenant's configuration on each GPU type and sizes its shards; refuses a
    /// tenant no GPU can serve within its SLA.
    pub fn new(
        input: &'a PlanInput,
        catalog: &Catalog,
        arrivals: Arc<dyn ArrivalSource>,
        progress: &'a dyn Progress,
    ) -> Result<VirtualTime<'a>, PlanError> {
        let gpus: Vec<GpuSetup> = input
            .gpus
            .iter()
            .filter_map(|g| catalog.gpu(&g.gpu).map(sim::gpu_setup))
            .collect();
        let mut vt = VirtualTime {
            input,
            arrivals,
            progress,
            gpus,
            choice: Vec::new(),
            shards: Vec::new(),
            dominated: Vec::new(),
            memo: Mutex::new(HashMap::new()),
        };
        let tenants = input.spec.tenants.len();
        let pairs: Vec<(usize, usize)> = (0..tenants)
            .flat_map(|t| (0..vt.gpus.len()).map(move |g| (t, g)))
            .collect();
        progress.stage("solo peaks", pairs.len() as u64);
        let (choice, left_out) = vt.choose_all(catalog);
        vt.choice = choice;
        vt.dominated = left_out;
        vt.check_meetable(catalog)?;
        let dominated = vt.find_dominated();
        vt.dominated.extend(dominated);
        let order = |d: &Dominated| input.gpus.iter().position(|g| g.gpu == d.gpu);
        vt.dominated.sort_by_key(order);
        // From here on each new virtual-time run is one step; how many the search needs is not
        // known in advance.
        progress.stage("sizing", 0);
        let shards = parallel::map(&pairs, |&(t, g)| match vt.is_dominated(g) {
            true => None,
            false => vt.size(t, g),
        });
        vt.shards = (0..tenants).map(|_| vec![None; vt.gpus.len()]).collect();
        for ((t, g), n) in pairs.iter().zip(shards) {
            vt.shards[*t][*g] = n;
        }
        for (t, row) in vt.shards.iter().enumerate() {
            if row.iter().all(Option::is_none) {
                let tenant = &input.spec.tenants[t];
                return Err(PlanError::TooLarge {
                    index: t + 1,
                    model: tenant.model.clone(),
                    rate_per_s: input.rate(t),
                    headroom_pct: input.headroom * 100.0,
                    max_shards: MAX_SHARDS,
                });
            }
        }
        Ok(vt)
    }

    /// Tenant `t`'s solo-peak search with `setup` on GPU type `g`.
    fn peak_grid<'s>(&'s self, g: usize, t: usize, setup: &'s ModelSetup) -> PeakGrid<'s> {
        let tenant = &self.input.spec.tenants[t];
        let sla = sim::Sla {
            latency_ms: tenant.sla.latency_ms,
            percentile: tenant.sla.percentile,
        };
        PeakGrid::new(&self.gpus[g], setup, tenant.batch, &sla, &peak_search(&sla))
    }

    pub fn input(&self) -> &PlanInput {
        self.input
    }

    pub fn choice(&self, tenant: usize, gpu: usize) -> Option<&Choice> {
        self.choice.get(tenant)?.get(gpu)?.as_ref()
    }

    /// The configurations worth trying: what the session fixes is kept; an open instance count
    /// takes the profile's; open batching takes the profile's, else a dynamic batcher whose queue
    /// delay is a twentieth of the SLA.
    fn candidates(&self, catalog: &Catalog, t: usize, g: usize) -> Vec<ModelSetup> {
        let tenant = &self.input.spec.tenants[t];
        let Some(gpu) = catalog.gpu(&self.input.gpus[g].gpu) else {
            return Vec::new();
        };
        let profile = self.input.profile.as_deref();
        let setup = |instances: Option<u32>, batching: Option<&DynamicBatching>| {
            crate::emulator::served_setup(catalog, gpu, profile, &tenant.model, instances, batching)
        };
        let Some(base) = setup(tenant.instances, tenant.dynamic_batching.as_ref()) else {
            return Vec::new();
        };
        let batching = match (&tenant.dynamic_batching, &base.dynamic_batching) {
            (Some(b), _) | (None, Some(b)) => b.clone(),
            (None, None) => tuned_batching(&tenant.sla),
        };
        // An open instance count keeps the profile's: another instance raises a solo peak but
        // costs memory a mix may not have (two PERSEUS models with two instances each overflow a T4).
        let instances = vec![tenant.instances.unwrap_or(base.instances)];
        let mut out: Vec<ModelSetup> = Vec::new();
        for n in instances {
            if let Some(s) = setup(Some(n), Some(&batching))
                && !out.iter().any(|o| o.instances == s.instances)
            {
                out.push(s);
            }
        }
        out
    }

    /// The candidate with the highest solo peak; a rival must beat the simpler one by 2 % to win.
    /// `known` are runs of the first candidate's peak search already made.
    fn choose(&self, catalog: &Catalog, t: usize, g: usize, known: &[GridRun]) -> Option<Choice> {
        let mut best: Option<Choice> = None;
        for (k, setup) in self.candidates(catalog, t, g).into_iter().enumerate() {
            let known = if k == 0 { known } else { &[] };
            let peak = self.peak_grid(g, t, &setup).peak(known).unwrap_or(0.0);
            if best.as_ref().is_none_or(|b| peak > 1.02 * b.peak) {
                best = Some(Choice {
                    instances: setup.instances,
                    dynamic_batching: setup.dynamic_batching.clone(),
                    setup,
                    peak,
                });
            }
        }
        best
    }

    /// A tenant with no performance entry anywhere, or whose SLA no GPU meets even at a trickle,
    /// cannot be planned; the error says the best latency any GPU reaches.
    fn check_meetable(&self, catalog: &Catalog) -> Result<(), PlanError> {
        for (t, tenant) in self.input.spec.tenants.iter().enumerate() {
            let row = &self.choice[t];
            if row.iter().all(Option::is_none) {
                return Err(PlanError::NoProfile {
                    index: t + 1,
                    model: tenant.model.clone(),
                    gpus: self
                        .input
                        .gpus
                        .iter()
                        .map(|g| g.gpu.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    profile: self.input.profile.clone(),
                });
            }
            if row.iter().flatten().any(|c| c.peak > 0.0) {
                continue;
            }
            let (best_ms, best_gpu) = self.best_latency(catalog, t);
            return Err(PlanError::Unmeetable {
                index: t + 1,
                model: tenant.model.clone(),
                latency_ms: tenant.sla.latency_ms,
                percentile: tenant.sla.percentile,
                best_ms,
                best_gpu,
            });
        }
        Ok(())
    }

    /// The lowest latency at the tenant's SLA percentile any GPU reaches with a trickle of load
    /// (one request per second), with or without the dynamic batcher's wait.
    fn best_latency(&self, catalog: &Catalog, t: usize) -> (f64, String) {
        let tenant = &self.input.spec.tenants[t];
        let mut best = (f64::INFINITY, String::from("none"));
        for g in 0..self.gpus.len() {
            let mut setups = self.candidates(catalog, t, g);
            if tenant.dynamic_batching.is_none() {
                setups.extend(setups.clone().into_iter().map(|mut s| {
                    s.dynamic_batching = None;
                    s
                }));
            }
            let options = CapacityOptions {
                duration_s: Some(20.0),
                ..RUNS
            };
            for setup in setups {
                let mix = [self.mix_tenant(t, setup, 1.0)];
                if let Ok(o) = sim::evaluate(&self.gpus[g], &mix, 1.0, &options)
                    && let Some(o) = o.first()
                    && o.latency_ms < best.0
                {
                    best = (o.latency_ms, self.input.gpus[g].gpu.clone());
                }
            }
        }
        best
    }

    /// Tenant `t` as the capacity code takes it, at `rate`, with its own arrival process and seed
    /// whichever tenants share its GPU (the capacity code's per-position seed is not used).
    fn mix_tenant(&self, t: usize, setup: ModelSetup, rate: f64) -> MixTenant {
        let tenant = &self.input.spec.tenants[t];
        let arrivals = match &tenant.load {
            Load::Rate { arrival, .. } => {
                let (source, arrival) = (Arc::clone(&self.arrivals), arrival.clone());
                let seed = self.input.seed_of(t);
                MixArrivals::Process(Arc::new(move |rate, _| source.gaps(&arrival, rate, seed)))
            }
            // Refused by `PlanInput::new`; no arrivals rather than a guess.
            Load::Concurrency(_) => {
                MixArrivals::Process(Arc::new(|_, _| Box::new(|| f64::INFINITY)))
            }
        };
        MixTenant {
            setup,
            batch: tenant.batch,
            rate_per_s: rate,
            arrivals,
            sla: sim::Sla {
                latency_ms: tenant.sla.latency_ms,
                percentile: tenant.sla.percentile,
            },
        }
    }

    /// `items` co-located on GPU type `g`, each with its configuration there (the caller checked
    /// [`VirtualTime::admissible`]).
    fn mix(&self, g: usize, items: &[Item]) -> Vec<MixTenant> {
        items
            .iter()
            .filter_map(|i| {
                let c = self.choice(i.tenant, g)?;
                Some(self.mix_tenant(i.tenant, c.setup.clone(), self.shard_rate(i)))
            })
            .collect()
    }

    /// Rate of one shard of `item`'s tenant.
    fn shard_rate(&self, item: &Item) -> f64 {
        self.input.rate(item.tenant) / f64::from(item.shards.max(1))
    }

    /// The fewest GPUs of type `g` tenant `t` needs alone: its rate with headroom over its solo
    /// peak, rounded up, then confirmed (or raised) with its own arrivals.
    fn size(&self, t: usize, g: usize) -> Option<u32> {
        let peak = self.choice(t, g)?.peak;
        if peak <= 0.0 {
            return None;
        }
        let need = self.input.rate(t) * (1.0 + self.input.headroom);
        let first = (need / peak).ceil().clamp(1.0, f64::from(MAX_SHARDS)) as u32;
        (first..=(first + 3).min(MAX_SHARDS)).find(|&n| {
            self.fits(
                g,
                &[Item {
                    tenant: t,
                    shards: n,
                }],
            )
        })
    }

    /// Whether the mix `items` on GPU type `g`, shared as `sharing`, with every rate × `scale`,
    /// meets every SLA, memoised. A run that misses is ended as soon as that is certain, so only
    /// a passing mix has its latencies (in the order of the sorted items).
    pub fn evaluate(&self, g: usize, items: &[Item], scale: f64, sharing: Sharing) -> Arc<Mix> {
        let key = (g, sorted(items), scale.to_bits(), sharing);
        let cell = match self.memo.lock() {
            Ok(mut memo) => Arc::clone(memo.entry(key.clone()).or_default()),
            Err(_) => Arc::new(OnceLock::new()),
        };
        let mix = cell.get_or_init(|| {
            let mix = match sharing {
                Sharing::CoLocated => self.run(g, &key.1, scale, true),
                Sharing::TimeSliced => self.run_sliced(g, &key.1, scale, true),
            };
            self.progress.advance(1);
            Arc::new(mix)
        });
        Arc::clone(mix)
    }

    /// How `items` can share a GPU of type `g` with the headroom: co-located when that meets every
    /// SLA, else time-sliced when that does, else not at all.
    pub fn sharing(&self, g: usize, items: &[Item]) -> Option<Sharing> {
        let scale = 1.0 + self.input.headroom;
        if self.evaluate(g, items, scale, Sharing::CoLocated).meets {
            return Some(Sharing::CoLocated);
        }
        // Alone, a tenant's slice is the whole GPU: the same run as co-located.
        (items.len() > 1 && self.evaluate(g, items, scale, Sharing::TimeSliced).meets)
            .then_some(Sharing::TimeSliced)
    }

    /// Whether `items` may share one GPU at all: no type left out, every tenant served there, and
    /// no model twice (one Triton model serves every tenant of that model on a GPU, with one
    /// configuration, and shards of one tenant never share a GPU).
    fn admissible(&self, g: usize, items: &[Item]) -> bool {
        if self.is_dominated(g) || items.is_empty() {
            return false;
        }
        let tenants: Vec<&TenantSpec> = items
            .iter()
            .map(|i| &self.input.spec.tenants[i.tenant])
            .collect();
        let repeated = tenants.iter().enumerate().any(|(k, a)| {
            tenants[..k]
                .iter()
                .any(|b| b.model.eq_ignore_ascii_case(&a.model))
        });
        !repeated && items.iter().all(|i| self.choice(i.tenant, g).is_some())
    }

    /// The co-located run; `watch` ends it once it certainly misses (see [`Mix::missed`]).
    fn run(&self, g: usize, items: &[Item], scale: f64, watch: bool) -> Mix {
        if !self.admissible(g, items) {
            return Mix::refused(items.len());
        }
        let (gpu, mix) = (&self.gpus[g], self.mix(g, items));
        let outcomes = match watch {
            true => sim::evaluate_watched(gpu, &mix, scale, &RUNS),
            false => sim::evaluate(gpu, &mix, scale, &RUNS).map(Ok),
        };
        match outcomes {
            Ok(Ok(outcomes)) if outcomes.len() == items.len() => Mix::of(&outcomes),
            Ok(Err(_)) => Mix::missed(items.len()),
            _ => Mix::refused(items.len()),
        }
    }

    /// The largest common scale of the mix's rates at which every SLA still holds, shared as
    /// `sharing` (the capacity code's search, on the whole mix or on each tenant's slice), and
    /// the whole run of the mix at its rates (in sorted order). Co-located, that run is the
    /// search's first when the items come sorted.
    pub fn capacity(&self, g: usize, items: &[Item], sharing: Sharing) -> (f64, Mix) {
        if !self.admissible(g, items) {
            return (0.0, Mix::refused(items.len()));
        }
        let in_order = items.is_sorted();
        match sharing {
            Sharing::CoLocated => match sim::capacity(&self.gpus[g], &self.mix(g, items), &RUNS) {
                // Tenants load in the order given, so only a run in sorted order is reused.
                Ok(c) if in_order && c.at_operating.len() == items.len() => {
                    (c.k, Mix::of(&c.at_operating))
                }
                c => (
                    c.map_or(0.0, |c| c.k),
                    self.run(g, &sorted(items), 1.0, false),
                ),
            },
            Sharing::TimeSliced => (
                self.sliced_capacity(g, items),
                self.run_sliced(g, &sorted(items), 1.0, false),
            ),
        }
    }

    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }
}

fn sorted(items: &[Item]) -> Vec<Item> {
    let mut sorted = items.to_vec();
    sorted.sort();
    sorted
}

/// A dynamic batcher for a tenant whose session and profile leave batching open: a queue delay of
/// a twentieth of the SLA (between 100 µs and 10 ms) trades little latency for batches.
fn tuned_batching(sla: &Sla) -> DynamicBatching {
    DynamicBatching {
        max_queue_delay_us: (sla.latency_ms * 1000.0 / 20.0)
            .clamp(100.0, 10_000.0)
            .round() as u64,
        preferred_batch_sizes: Vec::new(),
    }
}

impl Oracle for VirtualTime<'_> {
    fn types(&self) -> usize {
        self.gpus.len()
    }
    fn tenants(&self) -> usize {
        self.input.spec.tenants.len()
    }
    fn price(&self, gpu: usize) -> f64 {
        self.input
            .gpus
            .get(gpu)
            .map_or(f64::INFINITY, |g| g.usd_per_hour)
    }
    fn shards(&self, tenant: usize, gpu: usize) -> Option<u32> {
        *self.shards.get(tenant)?.get(gpu)?
    }
    fn weight(&self, tenant: usize, gpu: usize) -> f64 {
        match (self.choice(tenant, gpu), self.shards(tenant, gpu)) {
            (Some(c), Some(n)) if c.peak > 0.0 => {
                self.input.rate(tenant) * (1.0 + self.input.headroom) / f64::from(n) / c.peak
            }
            _ => f64::INFINITY,
        }
    }
    fn fits(&self, gpu: usize, items: &[Item]) -> bool {
        self.sharing(gpu, items).is_some()
    }
}
