//! The placement search: which tenants share which GPU, and of which type.
//!
//! Bin packing with a price per bin type and a feasibility test that is a virtual-time run, so the
//! search is built to ask few questions: a first-fit-decreasing packing per GPU type (tenants by
//! the share of a GPU they take alone) and a dedicated start, each then improved by local moves —
//! re-typing a GPU to a cheaper one its mix still fits, merging two GPUs into one, moving a tenant
//! into another GPU, swapping two — until none lowers the cost. The cheapest result wins, ties to
//! fewer GPUs, then to the earlier start, so the search is deterministic.

use super::parallel;

/// One shard of a tenant: the whole tenant when `shards` is 1, else 1/`shards` of its rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Item {
    pub tenant: usize,
    pub shards: u32,
}

/// One GPU of a placement: its type and what it hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin {
    pub gpu: usize,
    pub items: Vec<Item>,
}

/// What the search asks. `fits` must be deterministic; it decides co-location (including that two
/// shards of one model never share a GPU).
pub trait Oracle: Sync {
    /// GPU types, `0..types()`.
    fn types(&self) -> usize;
    fn tenants(&self) -> usize;
    /// Per GPU-hour.
    fn price(&self, gpu: usize) -> f64;
    /// How many GPUs of type `gpu` tenant `tenant` needs alone; `None` when it cannot run there.
    fn shards(&self, tenant: usize, gpu: usize) -> Option<u32>;
    /// Share of a GPU of type `gpu` one shard takes alone (its rate over its solo peak), for ordering.
    fn weight(&self, tenant: usize, gpu: usize) -> f64;
    /// Whether `items` together on one GPU of type `gpu` meet every SLA with the headroom, in
    /// whichever way of sharing it the oracle knows.
    fn fits(&self, gpu: usize, items: &[Item]) -> bool;
}

/// Upper bound on improvement rounds; each accepted move lowers the cost, so this only guards
/// against a pathological oracle.
const MAX_ROUNDS: usize = 64;

/// The cheapest placement found, or `None` when some tenant fits no GPU type at all.
pub fn search(o: &dyn Oracle) -> Option<Vec<Bin>> {
    search_from(o, Vec::new())
}

/// [`search`] with more placements to start from (each GPU of each must fit), so that the plan
/// never costs more than any of them: a baseline the oracle verified is one.
pub fn search_from(o: &dyn Oracle, extra: Vec<Vec<Bin>>) -> Option<Vec<Bin>> {
    // Each type's packing on its own thread: they ask different questions (one GPU type each).
    let types: Vec<usize> = (0..o.types()).collect();
    let mut starts: Vec<Vec<Bin>> = parallel::map(&types, |&g| first_fit(o, g))
        .into_iter()
        .flatten()
        .collect();
    starts.extend(dedicated(o));
    starts.extend(extra);
    let improved = parallel::map(&starts, |s| improve(o, s.clone()));
    let mut best: Option<Vec<Bin>> = None;
    for plan in improved {
        let better = best.as_ref().is_none_or(|b| {
            let (c, bc) = (cost(o, &plan), cost(o, b));
            c < bc - 1e-9 || ((c - bc).abs() <= 1e-9 && plan.len() < b.len())
        });
        if better {
            best = Some(plan);
        }
    }
    best.map(|mut plan| {
        canonical(&mut plan);
        plan
    })
}

/// Total price per hour of a placement.
pub fn cost(o: &dyn Oracle, bins: &[Bin]) -> f64 {
    bins.iter().map(|b| o.price(b.gpu)).sum()
}

/// Each tenant on its own GPUs of the type where its shards cost least: the dedicated baseline,
/// and a start for the search.
pub fn dedicated(o: &dyn Oracle) -> Option<Vec<Bin>> {
    let mut bins = Vec::new();
    for t in 0..o.tenants() {
        let (g, n) = (0..o.types())
            .filter_map(|g| o.shards(t, g).map(|n| (g, n)))
            .min_by(|a, b| {
                (f64::from(a.1) * o.price(a.0)).total_cmp(&(f64::from(b.1) * o.price(b.0)))
            })?;
        for _ in 0..n {
            bins.push(Bin {
                gpu: g,
                items: vec![Item {
                    tenant: t,
                    shards: n,
                }],
            });
        }
    }
    Some(bins)
}

/// First-fit decreasing on GPUs of type `gpu` only; `None` when a tenant cannot run there.
fn first_fit(o: &dyn Oracle, gpu: usize) -> Option<Vec<Bin>> {
    first_fit_by(o, gpu, |items| o.fits(gpu, items))
}

/// First-fit decreasing on GPUs of type `gpu` with `fits` deciding whether a GPU takes one more
/// shard (a shard alone always has a GPU: it was sized to fit one).
pub fn first_fit_by(
    o: &dyn Oracle,
    gpu: usize,
    fits: impl Fn(&[Item]) -> bool,
) -> Option<Vec<Bin>> {
    let mut items = Vec::new();
    for t in 0..o.tenants() {
        let n = o.shards(t, gpu)?;
        items.extend((0..n).map(|_| Item {
            tenant: t,
            shards: n,
        }));
    }
    items.sort_by(|a, b| {
        o.weight(b.tenant, gpu)
            .total_cmp(&o.weight(a.tenant, gpu))
            .then(a.tenant.cmp(&b.tenant))
    });
    let mut bins: Vec<Bin> = Vec::new();
    for item in items {
        let slot = bins.iter_mut().find(|b| fits(&with(&b.items, item)));
        match slot {
            Some(b) => b.items.push(item),
            None => bins.push(Bin {
                gpu,
                items: vec![item],
            }),
        }
    }
    Some(bins)
}

fn with(items: &[Item], extra: Item) -> Vec<Item> {
    let mut v = items.to_vec();
    v.push(extra);
    v
}

/// The GPU type a split tenant's shards are pinned to: a split tenant stays on one type, so a bin
/// that holds one of its shards keeps its type.
fn pinned(bin: &Bin) -> bool {
    bin.items.iter().any(|i| i.shards > 1)
}

/// The cheapest type that hosts `items`, or `None`; a set with a split tenant's shard may only keep
/// `current`.
fn cheapest_type(o: &dyn Oracle, items: &[Item], current: Option<usize>) -> Option<usize> {
    if items.iter().any(|i| i.shards > 1) {
        return current.filter(|&g| o.fits(g, items));
    }
    let mut types: Vec<usize> = (0..o.types()).collect();
    types.sort_by(|a, b| o.price(*a).total_cmp(&o.price(*b)).then(a.cmp(b)));
    types.into_iter().find(|&g| o.fits(g, items))
}

/// Local moves until none lowers the cost.
fn improve(o: &dyn Oracle, mut bins: Vec<Bin>) -> Vec<Bin> {
    for _ in 0..MAX_ROUNDS {
        let changed = retype(o, &mut bins)
            || merge(o, &mut bins)
            || relocate(o, &mut bins)
            || swap(o, &mut bins);
        if !changed {
            break;
        }
    }
    bins
}

fn retype(o: &dyn Oracle, bins: &mut [Bin]) -> bool {
    let mut changed = false;
    for b in bins.iter_mut().filter(|b| !pinned(b)) {
        if let Some(g) = cheapest_type(o, &b.items, Some(b.gpu))
            && o.price(g) < o.price(b.gpu) - 1e-12
        {
            b.gpu = g;
            changed = true;
        }
    }
    changed
}

/// Two GPUs into one of a type cheaper than both together.
fn merge(o: &dyn Oracle, bins: &mut Vec<Bin>) -> bool {
    for i in 0..bins.len() {
        for j in i + 1..bins.len() {
            let (a, b) = (&bins[i], &bins[j]);
            if pinned(a) && pinned(b) && a.gpu != b.gpu {
                continue;
            }
            let current = if pinned(b) { b.gpu } else { a.gpu };
            let items: Vec<Item> = a.items.iter().chain(&b.items).copied().collect();
            let before = o.price(a.gpu) + o.price(b.gpu);
            if let Some(g) = cheapest_type(o, &items, Some(current))
                && o.price(g) < before - 1e-12
            {
                bins[i] = Bin { gpu: g, items };
                bins.remove(j);
                return true;
            }
        }
    }
    false
}

/// One tenant into another GPU, when what it leaves behind then costs less (or nothing).
fn relocate(o: &dyn Oracle, bins: &mut Vec<Bin>) -> bool {
    for from in 0..bins.len() {
        for k in 0..bins[from].items.len() {
            let item = bins[from].items[k];
            let mut rest = bins[from].items.clone();
            rest.remove(k);
            let rest_type = match rest.is_empty() {
                true => None,
                false => match cheapest_type(o, &rest, Some(bins[from].gpu)) {
                    Some(g) => Some(g),
                    None => continue,
                },
            };
            let saving = o.price(bins[from].gpu) - rest_type.map_or(0.0, |g| o.price(g));
            if saving <= 1e-12 {
                continue;
            }
            for to in (0..bins.len()).filter(|&to| to != from) {
                let target = &bins[to];
                if item.shards > 1 && target.gpu != bins[from].gpu {
                    continue;
                }
                if o.fits(target.gpu, &with(&target.items, item)) {
                    bins[to].items.push(item);
                    match rest_type {
                        Some(g) => {
                            bins[from] = Bin {
                                gpu: g,
                                items: rest,
                            }
                        }
                        None => {
                            bins.remove(from);
                        }
                    }
                    return true;
                }
            }
        }
    }
    false
}

/// Two tenants of different GPUs exchanged, when both GPUs can then be re-typed for less.
fn swap(o: &dyn Oracle, bins: &mut [Bin]) -> bool {
    for i in 0..bins.len() {
        for j in i + 1..bins.len() {
            if pinned(&bins[i]) || pinned(&bins[j]) {
                continue;
            }
            let before = o.price(bins[i].gpu) + o.price(bins[j].gpu);
            for a in 0..bins[i].items.len() {
                for b in 0..bins[j].items.len() {
                    let mut x = bins[i].items.clone();
                    let mut y = bins[j].items.clone();
                    std::mem::swap(&mut x[a], &mut y[b]);
                    let Some(gx) = cheapest_type(o, &x, None) else {
                        continue;
                    };
                    let Some(gy) = cheapest_type(o, &y, None) else {
                        continue;
                    };
                    if o.price(gx) + o.price(gy) < before - 1e-12 {
                        bins[i] = Bin { gpu: gx, items: x };
                        bins[j] = Bin { gpu: gy, items: y };
                        return true;
                    }
                }
            }
        }
    }
    false
}

/// A stable order for output: GPUs by type, then by their first tenant; tenants in session order.
fn canonical(bins: &mut [Bin]) {
    for b in bins.iter_mut() {
        b.items.sort();
    }
    bins.sort_by(|a, b| a.gpu.cmp(&b.gpu).then(a.items.cmp(&b.items)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tenants with a share of each GPU type (None: cannot run there); a mix fits while its shares
    /// sum to at most 1, and tenants of one model never share a GPU. Checks the search's logic
    /// apart from the GPU model; the virtual-time oracle is tested in tests/plan.rs.
    struct Shares {
        prices: Vec<f64>,
        /// [tenant][gpu] share of a GPU the whole tenant takes.
        share: Vec<Vec<Option<f64>>>,
        model: Vec<usize>,
    }

    impl Oracle for Shares {
        fn types(&self) -> usize {
            self.prices.len()
        }
        fn tenants(&self) -> usize {
            self.share.len()
        }
        fn price(&self, gpu: usize) -> f64 {
            self.prices[gpu]
        }
        fn shards(&self, t: usize, g: usize) -> Option<u32> {
            self.share[t][g].map(|s| s.ceil().max(1.0) as u32)
        }
        fn weight(&self, t: usize, g: usize) -> f64 {
            self.share[t][g].unwrap_or(f64::INFINITY)
        }
        fn fits(&self, g: usize, items: &[Item]) -> bool {
            let mut models: Vec<usize> = items.iter().map(|i| self.model[i.tenant]).collect();
            models.sort_unstable();
            models.dedup();
            if models.len() < items.len() {
                return false;
            }
            let total: Option<f64> = items
                .iter()
                .map(|i| self.share[i.tenant][g].map(|s| s / f64::from(i.shards)))
                .sum();
            total.is_some_and(|s| s <= 1.0 + 1e-9)
        }
    }

    /// Every assignment of tenants to bins of each type (no splitting): the true optimum.
    fn exhaustive(o: &Shares) -> f64 {
        fn walk(o: &Shares, t: usize, bins: &mut Vec<Bin>, best: &mut f64) {
            if t == o.tenants() {
                if bins.iter().all(|b| o.fits(b.gpu, &b.items)) {
                    *best = best.min(cost(o, bins));
                }
                return;
            }
            let item = Item {
                tenant: t,
                shards: 1,
            };
            for i in 0..bins.len() {
                bins[i].items.push(item);
                walk(o, t + 1, bins, best);
                bins[i].items.pop();
            }
            for g in 0..o.types() {
                bins.push(Bin {
                    gpu: g,
                    items: vec![item],
                });
                walk(o, t + 1, bins, best);
                bins.pop();
            }
        }
        let mut best = f64::INFINITY;
        walk(o, 0, &mut Vec::new(), &mut best);
        best
    }

    fn shares(prices: &[f64], share: &[&[f64]]) -> Shares {
        Shares {
            prices: prices.to_vec(),
            share: share
                .iter()
                .map(|row| row.iter().map(|&s| (s > 0.0).then_some(s)).collect())
                .collect(),
            model: (0..share.len()).collect(),
        }
    }

    #[test]
    fn small_cases_match_the_exhaustive_optimum() {
        // A cheap small GPU and a dear big one (shares on the big one are a third).
        let cases: &[(&[f64], &[&[f64]])] = &[
            (&[1.0, 2.5], &[&[0.6, 0.2], &[0.5, 0.17], &[0.45, 0.15]]),
            (&[1.0, 2.5], &[&[0.3, 0.1], &[0.3, 0.1], &[0.3, 0.1]]),
            (
                &[1.0, 1.8],
                &[&[0.9, 0.3], &[0.8, 0.27], &[0.2, 0.07], &[0.7, 0.2]],
            ),
            (&[1.0, 4.0], &[&[0.0, 0.5], &[0.6, 0.2], &[0.5, 0.2]]),
        ];
        for (prices, share) in cases {
            let o = shares(prices, share);
            let plan = search(&o).expect("a plan");
            for b in &plan {
                assert!(o.fits(b.gpu, &b.items), "{plan:?}");
            }
            let mut placed: Vec<usize> = plan
                .iter()
                .flat_map(|b| b.items.iter().map(|i| i.tenant))
                .collect();
            placed.sort_unstable();
            assert_eq!(placed, (0..o.tenants()).collect::<Vec<_>>(), "{plan:?}");
            let best = exhaustive(&o);
            assert!(cost(&o, &plan) <= best + 1e-9, "{plan:?} vs {best}");
        }
    }

    #[test]
    fn a_tenant_larger_than_one_gpu_is_split_across_gpus_of_one_type() {
        let o = shares(&[1.0, 5.0], &[&[2.4, 0.9], &[0.15, 0.05]]);
        let plan = search(&o).expect("a plan");
        let shards: Vec<&Bin> = plan
            .iter()
            .filter(|b| b.items.iter().any(|i| i.tenant == 0))
            .collect();
        assert_eq!(shards.len(), 3, "{plan:?}");
        assert!(shards.iter().all(|b| b.gpu == 0), "{plan:?}");
        assert!(
            (cost(&o, &plan) - 3.0).abs() < 1e-9,
            "the small tenant rides along: {plan:?}"
        );
    }

    #[test]
    fn tenants_of_one_model_never_share_a_gpu() {
        let mut o = shares(&[1.0], &[&[0.2], &[0.2]]);
        o.model = vec![0, 0];
        assert_eq!(search(&o).expect("a plan").len(), 2);
        o.model = vec![0, 1];
        assert_eq!(search(&o).expect("a plan").len(), 1);
    }

    #[test]
    fn a_tenant_that_fits_nowhere_leaves_no_plan() {
        let o = shares(&[1.0], &[&[0.2], &[0.0]]);
        assert!(search(&o).is_none());
    }
}
