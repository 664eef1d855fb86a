//! GPU types no plan needs, left out before the search so that it asks fewer questions.
//!
//! A type is dominated when another costs no more per hour, has at least its memory and no more
//! interference between any two of the session's models, and gives every tenant at least its solo
//! peak. Any GPU of the dominated type in a plan could then be re-typed to the other at no more
//! cost; that it would still meet every SLA is assumed (peaks, memory and γ are what a mix's fit
//! turns on), not verified, which is why the plan names what it left out.
//!
//! Peak searches are most of a plan's time, so a type that another could dominate on everything but
//! the peaks has its peaks checked last, and with one run per tenant: whether its peak is at most
//! the other's ([`PeakGrid::at_most`]). Only when that fails does it get its own peak searches.

use serde::Serialize;

use super::{Choice, VirtualTime};
use crate::catalog::Catalog;
use crate::emulator::sim::{GridRun, ModelSetup};
use crate::plan::parallel;

/// A GPU type left out of the search, and the type that serves every tenant at least as well.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dominated {
    pub gpu: String,
    pub by: String,
}

impl VirtualTime<'_> {
    /// Whether GPU type `g` was left out of the search.
    pub fn is_dominated(&self, g: usize) -> bool {
        let name = self.input.gpus.get(g).map(|o| o.gpu.as_str());
        self.dominated.iter().any(|d| Some(d.gpu.as_str()) == name)
    }

    pub fn dominated(&self) -> &[Dominated] {
        &self.dominated
    }

    /// Whether `a` costs no more than `b`, has at least its memory and no more interference.
    fn covers_but_peaks(&self, a: usize, b: usize) -> bool {
        let (ga, gb) = (&self.gpus[a], &self.gpus[b]);
        if self.input.gpus[a].usd_per_hour > self.input.gpus[b].usd_per_hour
            || ga.memory_total_bytes < gb.memory_total_bytes
        {
            return false;
        }
        let tenants = &self.input.spec.tenants;
        tenants.iter().all(|x| {
            tenants.iter().all(|y| {
                ga.gamma_between(&x.model, &y.model) <= gb.gamma_between(&x.model, &y.model)
            })
        })
    }

    /// Whether `a` serves every tenant at least as well as `b` for no more.
    fn covers(&self, a: usize, b: usize) -> bool {
        let tenants = self.input.spec.tenants.len();
        let peaks = (0..tenants).all(|t| match (self.choice(t, a), self.choice(t, b)) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.peak >= y.peak && x.setup.memory_bytes <= y.setup.memory_bytes,
        });
        peaks && self.covers_but_peaks(a, b)
    }

    /// Each type covered by another, which does not itself cover it back (or does, but comes
    /// first), so of two equal types one stays; types already left out take no part.
    pub(super) fn find_dominated(&self) -> Vec<Dominated> {
        let n = self.gpus.len();
        let mut out = Vec::new();
        for b in (0..n).filter(|&b| !self.is_dominated(b)) {
            let by = (0..n)
                .filter(|&a| !self.is_dominated(a))
                .find(|&a| a != b && self.covers(a, b) && (a < b || !self.covers(b, a)));
            if let Some(a) = by {
                out.push(Dominated {
                    gpu: self.input.gpus[b].gpu.clone(),
                    by: self.input.gpus[a].gpu.clone(),
                });
            }
        }
        out
    }
}

/// `[tenant][gpu]` candidate configurations, before any peak is known.
type Setups = Vec<Vec<Vec<ModelSetup>>>;

impl VirtualTime<'_> {
    /// Whether `a` dominates `b` on everything a peak search does not decide: price, memory,
    /// interference, and each tenant's one configuration (no more memory on `a`, and one wherever
    /// `b` has one). More than one candidate leaves the configuration open until the peaks.
    fn covers_before_peaks(&self, setups: &Setups, a: usize, b: usize) -> bool {
        a != b
            && self.covers_but_peaks(a, b)
            && setups
                .iter()
                .all(|row| match (row[a].as_slice(), row[b].as_slice()) {
                    (_, []) => true,
                    ([x], [y]) => x.memory_bytes <= y.memory_bytes,
                    _ => false,
                })
    }

    /// Each tenant's configuration and solo peak on each GPU type (`[tenant][gpu]`), and the types
    /// left out on the way: first the peaks of every type no other could dominate, then, for a type
    /// another (already searched) could, one run per tenant asks whether its peak is at most that
    /// other's; a type all of whose peaks are is left out unsearched, any other gets its searches.
    pub(super) fn choose_all(
        &self,
        catalog: &Catalog,
    ) -> (Vec<Vec<Option<Choice>>>, Vec<Dominated>) {
        let (tenants, types) = (self.input.spec.tenants.len(), self.gpus.len());
        let setups: Setups = (0..tenants)
            .map(|t| (0..types).map(|g| self.candidates(catalog, t, g)).collect())
            .collect();
        let later: Vec<bool> = (0..types)
            .map(|b| (0..types).any(|a| self.covers_before_peaks(&setups, a, b)))
            .collect();
        let mut choice: Vec<Vec<Option<Choice>>> = vec![vec![None; types]; tenants];
        let first: Vec<(usize, usize)> = (0..tenants)
            .flat_map(|t| (0..types).filter(|&g| !later[g]).map(move |g| (t, g)))
            .collect();
        self.choose_pairs(catalog, &first, &mut choice, |_| Vec::new());
        // Each later type against the first searched type that could dominate it.
        let by: Vec<(usize, usize)> = (0..types)
            .filter(|&b| later[b])
            .filter_map(|b| {
                let a = (0..types).find(|&a| !later[a] && self.covers_before_peaks(&setups, a, b));
                a.map(|a| (b, a))
            })
            .collect();
        let checks: Vec<(usize, usize, usize)> = by
            .iter()
            .flat_map(|&(b, a)| (0..tenants).map(move |t| (t, b, a)))
            .filter(|&(t, b, _)| setups[t][b].len() == 1)
            .collect();
        let cost = |&(t, b, _): &(usize, usize, usize)| {
            self.peak_grid(b, t, &setups[t][b][0]).requests_at_top()
        };
        let answers = parallel::map_costliest_first(&checks, cost, |&(t, b, a)| {
            let peak_a = choice[t][a].as_ref().map_or(0.0, |c| c.peak);
            self.peak_grid(b, t, &setups[t][b][0]).at_most(peak_a).ok()
        });
        let mut left_out = Vec::new();
        let mut runs: Vec<Vec<Vec<GridRun>>> = vec![vec![Vec::new(); types]; tenants];
        for &(b, a) in &by {
            let mine: Vec<_> = checks
                .iter()
                .zip(&answers)
                .filter(|(c, _)| c.1 == b)
                .collect();
            if mine.iter().all(|(_, r)| matches!(r, Some((true, _)))) {
                left_out.push(Dominated {
                    gpu: self.input.gpus[b].gpu.clone(),
                    by: self.input.gpus[a].gpu.clone(),
                });
                self.progress.advance(tenants as u64);
            }
            for ((t, _, _), r) in mine {
                if let Some((_, Some(run))) = r {
                    runs[*t][b].push(*run);
                }
            }
        }
        let gone = |g: usize| left_out.iter().any(|d| d.gpu == self.input.gpus[g].gpu);
        let rest: Vec<(usize, usize)> = (0..tenants)
            .flat_map(|t| (0..types).filter(|&g| later[g]).map(move |g| (t, g)))
            .filter(|&(_, g)| !gone(g))
            .collect();
        self.choose_pairs(catalog, &rest, &mut choice, |(t, g)| runs[t][g].clone());
        (choice, left_out)
    }

    /// Peak searches of `pairs` (tenant, GPU) in parallel into `choice`, each reusing `known` runs.
    fn choose_pairs(
        &self,
        catalog: &Catalog,
        pairs: &[(usize, usize)],
        choice: &mut [Vec<Option<Choice>>],
        known: impl Fn((usize, usize)) -> Vec<GridRun> + Sync,
    ) {
        // The costliest searches first, so that neither core is left with one at the end.
        let cost = |&(t, g): &(usize, usize)| {
            let setups = self.candidates(catalog, t, g);
            let grids = setups.iter().map(|s| self.peak_grid(g, t, s));
            grids.map(|grid| grid.requests_at_top()).sum()
        };
        let chosen = parallel::map_costliest_first(pairs, cost, |&(t, g)| {
            let c = self.choose(catalog, t, g, &known((t, g)));
            self.progress.advance(1);
            c
        });
        for (&(t, g), c) in pairs.iter().zip(chosen) {
            choice[t][g] = c;
        }
    }
}
