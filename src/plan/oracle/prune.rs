//! GPU types no plan needs, left out before the search so that it asks fewer questions.
//!
//! A type is dominated when another costs no more per hour, has at least its memory and no more
//! interference between any two of the session's models, and gives every tenant at least its solo
//! peak. Any GPU of the dominated type in a plan could then be re-typed to the other at no more
//! cost; that it would still meet every SLA is assumed (peaks, memory and γ are what a mix's fit
//! turns on), not verified, which is why the plan names what it left out.

use serde::Serialize;

use super::VirtualTime;

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

    /// Whether `a` serves every tenant at least as well as `b` for no more.
    fn covers(&self, a: usize, b: usize) -> bool {
        let (ga, gb) = (&self.gpus[a], &self.gpus[b]);
        if self.input.gpus[a].usd_per_hour > self.input.gpus[b].usd_per_hour
            || ga.memory_total_bytes < gb.memory_total_bytes
        {
            return false;
        }
        let tenants = &self.input.spec.tenants;
        let peaks = (0..tenants.len()).all(|t| match (self.choice(t, a), self.choice(t, b)) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => x.peak >= y.peak && x.setup.memory_bytes <= y.setup.memory_bytes,
        });
        let gamma = tenants.iter().all(|x| {
            tenants.iter().all(|y| {
                ga.gamma_between(&x.model, &y.model) <= gb.gamma_between(&x.model, &y.model)
            })
        });
        peaks && gamma
    }

    /// Each type covered by another, which does not itself cover it back (or does, but comes
    /// first), so of two equal types one stays.
    pub(super) fn find_dominated(&self) -> Vec<Dominated> {
        let n = self.gpus.len();
        let mut out = Vec::new();
        for b in 0..n {
            let by = (0..n).find(|&a| a != b && self.covers(a, b) && (a < b || !self.covers(b, a)));
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
