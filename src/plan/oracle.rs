//! The search's questions answered in virtual time: each tenant's server configuration and solo peak
//! per GPU type, how many GPUs a tenant needs alone, and whether a mix meets every SLA with headroom.
//!
//! Everything runs on the emulator's core through [`sim::simulate_offered`] and [`sim::solo_peak`],
//! the code paths `perseus predict` and the engine's solo peaks use, and every mix is memoised: the
//! search asks the same question many times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::search::{Item, Oracle};
use super::{ArrivalSource, PlanError, PlanInput, Progress, parallel};
use crate::catalog::Catalog;
use crate::emulator::sim::{self, GpuSetup, ModelReport, ModelSetup, Offered, SearchOptions};
use crate::vocab::spec::{DynamicBatching, Load, Sla, TenantSpec};

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

type Key = (usize, Vec<Item>, u64);

/// The virtual-time oracle for one [`PlanInput`].
pub struct VirtualTime<'a> {
    input: &'a PlanInput,
    arrivals: &'a dyn ArrivalSource,
    progress: &'a dyn Progress,
    gpus: Vec<GpuSetup>,
    /// `[tenant][gpu]`.
    choice: Vec<Vec<Option<Choice>>>,
    shards: Vec<Vec<Option<u32>>>,
    memo: Mutex<HashMap<Key, Arc<Mix>>>,
}

impl<'a> VirtualTime<'a> {
    /// Chooses each tenant's configuration on each GPU type and sizes its shards; refuses a
    /// tenant no GPU can serve within its SLA.
    pub fn new(
        input: &'a PlanInput,
        catalog: &Catalog,
        arrivals: &'a dyn ArrivalSource,
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
            memo: Mutex::new(HashMap::new()),
        };
        let tenants = input.spec.tenants.len();
        let pairs: Vec<(usize, usize)> = (0..tenants)
            .flat_map(|t| (0..vt.gpus.len()).map(move |g| (t, g)))
            .collect();
        progress.stage("solo peaks", pairs.len() as u64);
        let chosen = parallel::map(&pairs, |&(t, g)| {
            let c = vt.choose(catalog, t, g);
            progress.advance(1);
            c
        });
        vt.choice = (0..tenants).map(|_| vec![None; vt.gpus.len()]).collect();
        for ((t, g), c) in pairs.iter().zip(chosen) {
            vt.choice[*t][*g] = c;
        }
        vt.check_meetable(catalog)?;
        // From here on each new virtual-time run is one step; how many the search needs is not
        // known in advance.
        progress.stage("placing", 0);
        let shards = parallel::map(&pairs, |&(t, g)| vt.size(t, g));
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
    fn choose(&self, catalog: &Catalog, t: usize, g: usize) -> Option<Choice> {
        let tenant = &self.input.spec.tenants[t];
        let mut best: Option<Choice> = None;
        for setup in self.candidates(catalog, t, g) {
            let peak = sim::solo_peak(
                &self.gpus[g],
                &setup,
                tenant.batch,
                tenant.sla.latency_ms,
                tenant.sla.percentile,
            )
            .unwrap_or(0.0);
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
            for setup in setups {
                let offered = vec![self.offered(t, setup, 1.0)];
                if let Ok(r) = sim::simulate_offered(&self.gpus[g], offered, 0.0, 20.0)
                    && let Some(m) = r.models.first()
                {
                    let ms = m.latency_ms(tenant.sla.percentile);
                    if ms < best.0 {
                        best = (ms, self.input.gpus[g].gpu.clone());
                    }
                }
            }
        }
        best
    }

    fn offered(&self, t: usize, setup: ModelSetup, rate: f64) -> Offered<'static> {
        let tenant = &self.input.spec.tenants[t];
        let gaps = match &tenant.load {
            Load::Rate { arrival, .. } => self.arrivals.gaps(arrival, rate, self.input.seed_of(t)),
            Load::Concurrency(_) => Box::new(|| f64::INFINITY),
        };
        Offered {
            setup,
            batch: tenant.batch,
            rate_per_s: rate,
            gaps,
        }
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

    /// The mix `items` on GPU type `g` with every rate × `scale`, memoised.
    pub fn evaluate(&self, g: usize, items: &[Item], scale: f64) -> Arc<Mix> {
        let mut sorted = items.to_vec();
        sorted.sort();
        let key = (g, sorted, scale.to_bits());
        if let Some(hit) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let mix = Arc::new(self.run(g, &key.1, scale));
        self.progress.advance(1);
        if let Ok(mut memo) = self.memo.lock() {
            memo.insert(key, Arc::clone(&mix));
        }
        mix
    }

    fn run(&self, g: usize, items: &[Item], scale: f64) -> Mix {
        let refused = Mix {
            meets: false,
            latency_ms: vec![f64::INFINITY; items.len()],
        };
        let tenants: Vec<&TenantSpec> = items
            .iter()
            .map(|i| &self.input.spec.tenants[i.tenant])
            .collect();
        // One Triton model serves every tenant of that model on a GPU, with one configuration.
        for (k, a) in tenants.iter().enumerate() {
            if tenants[..k]
                .iter()
                .any(|b| b.model.eq_ignore_ascii_case(&a.model))
            {
                return refused;
            }
        }
        let mut offered = Vec::with_capacity(items.len());
        for item in items {
            let Some(c) = self.choice(item.tenant, g) else {
                return refused;
            };
            let rate = self.input.rate(item.tenant) / f64::from(item.shards.max(1)) * scale;
            offered.push(self.offered(item.tenant, c.setup.clone(), rate));
        }
        let tightest = tenants
            .iter()
            .map(|t| t.sla.latency_ms)
            .fold(f64::INFINITY, f64::min);
        let duration = SearchOptions::for_sla(tightest).duration_s;
        let Ok(report) = sim::simulate_offered(&self.gpus[g], offered, 0.0, duration) else {
            return refused;
        };
        let latency_ms: Vec<f64> = report
            .models
            .iter()
            .zip(&tenants)
            .map(|(m, t)| m.latency_ms(t.sla.percentile))
            .collect();
        let meets = report.models.len() == tenants.len()
            && report
                .models
                .iter()
                .zip(&tenants)
                .all(|(m, t)| meets(m, &t.sla));
        Mix { meets, latency_ms }
    }

    /// The largest common scale of the mix's rates at which every SLA still holds (capped at 64).
    pub fn capacity(&self, g: usize, items: &[Item]) -> f64 {
        let ok = |k: f64| self.evaluate(g, items, k).meets;
        let (mut lo, mut hi) = (0.0, 1.0 + self.input.headroom);
        while ok(hi) {
            lo = hi;
            hi *= 2.0;
            if hi > 64.0 {
                return lo;
            }
        }
        for _ in 0..8 {
            let mid = 0.5 * (lo + hi);
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub fn gpu_count(&self) -> usize {
        self.gpus.len()
    }
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

/// The SLA check of the virtual-time peak searches: the percentile within the target (queues are
/// drained, so every arrival has a latency) and no gross backlog hidden under a huge SLA.
fn meets(report: &ModelReport, sla: &Sla) -> bool {
    let arrived_per_s = report.submitted as f64 / report.duration_s.max(1e-9);
    report.latency_ms(sla.percentile) <= sla.latency_ms
        && report.achieved_per_s >= 0.95 * arrived_per_s
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
        self.evaluate(gpu, items, 1.0 + self.input.headroom).meets
    }
}
