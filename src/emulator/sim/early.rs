//! Ending a virtual-time run as soon as a tenant's SLA verdict is certain to be a miss.
//!
//! A tenant meets a percentile SLA when at least ⌈q·N⌉ of its N measured requests have a latency
//! within the bound, as the latency histogram rounds it. Once more than N − ⌈q·N⌉ are over it, no
//! later request can bring the percentile back: the full run would fail the same way. N is known
//! before the run because an open-loop tenant's sends are drawn in advance (the run then replays
//! those very sends). Overloaded runs, the slowest to simulate (their queues grow for the whole run
//! and then drain), are the ones that end earliest.

use std::cell::RefCell;
use std::rc::Rc;

use super::traffic::{Demand, Source, open_on_time};
use super::types::Nanos;
use super::whatif::{GapSource, Offered, Sla, latency_histogram};

/// A run ended because a tenant could no longer meet its SLA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Missed {
    /// The tenant, in the order of the run's demands.
    pub tenant: usize,
    /// A guess at the latency the whole run would have reached at the SLA's percentile, in ms:
    /// the worst seen, grown in proportion to the run time still ahead (an overloaded queue grows
    /// about linearly). Only good for placing a search's next probe, never for reporting.
    pub latency_ms: f64,
}

/// How many more of each watched tenant's requests may go over its bound.
pub(super) struct Watch {
    tenants: Vec<Option<Budget>>,
    end: Nanos,
}

struct Budget {
    /// The largest latency, in the histogram's microseconds, that the percentile reads as within
    /// the SLA.
    within_us: u64,
    /// N − max(1, ⌈q·N⌉): how many of the N measured requests may be over the bound.
    allowed: u64,
    over: u64,
    worst_ms: f64,
}

impl Watch {
    /// Watches each demand that has an SLA and a percentile above 0 (the histogram reads the 0th
    /// differently) against it; open-loop sends are drawn up to `end` here, so the demands returned
    /// must be the ones run. A closed loop's count is not known in advance, so it is not watched.
    pub(super) fn new<'a>(
        demands: Vec<Demand<'a>>,
        slas: &[Option<Sla>],
        start: Nanos,
        end: Nanos,
    ) -> (Vec<Demand<'a>>, Watch) {
        let mut tenants = Vec::with_capacity(demands.len());
        let mut out = Vec::with_capacity(demands.len());
        for (i, d) in demands.into_iter().enumerate() {
            let sla = slas.get(i).copied().flatten();
            let q = sla.map_or(0.0, |s| (s.percentile / 100.0).clamp(0.0, 1.0));
            match sla {
                Some(sla) if q > 0.0 => {
                    let (d, n) = drawn(d, start, end);
                    out.push(d);
                    tenants.push(n.map(|n| Budget {
                        within_us: within_us(sla.latency_ms),
                        allowed: n.saturating_sub(((q * n as f64).ceil() as u64).max(1)),
                        over: 0,
                        worst_ms: 0.0,
                    }));
                }
                _ => {
                    out.push(d);
                    tenants.push(None);
                }
            }
        }
        (out, Watch { tenants, end })
    }

    /// Counts a measured request of tenant `index` recorded as `micros` in `histogram` at `now`;
    /// the miss once the tenant can no longer meet its SLA.
    pub(super) fn record(&mut self, index: usize, micros: u64, now: Nanos) -> Option<Missed> {
        let budget = self.tenants.get_mut(index)?.as_mut()?;
        if micros <= budget.within_us {
            return None;
        }
        budget.over += 1;
        budget.worst_ms = budget.worst_ms.max(micros as f64 / 1000.0);
        (budget.over > budget.allowed).then(|| Missed {
            tenant: index,
            latency_ms: budget.worst_ms * (self.end as f64 / now.max(1) as f64).max(1.0),
        })
    }
}

/// The largest recorded latency (µs) whose percentile reading is within `sla_ms`: the histogram
/// reads a value as the highest of its bucket, and [`ModelReport::latency_ms`] compares that in ms,
/// so the readings within the SLA are a prefix of the values.
///
/// [`ModelReport::latency_ms`]: super::ModelReport::latency_ms
fn within_us(sla_ms: f64) -> u64 {
    let histogram = latency_histogram();
    let within = |us: u64| histogram.highest_equivalent(us) as f64 / 1000.0 <= sla_ms;
    if !within(0) {
        return 0;
    }
    let (mut lo, mut hi) = (0u64, 1u64 << 50);
    if within(hi) {
        return hi;
    }
    // within(lo) holds and within(hi) does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if within(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// `demand` with its sends up to `end` drawn now, and how many of them the run measures (sent at
/// or after `start`). The sends are drawn through a [`Source`] as the run's loop steps one (or, sent
/// on time, by [`open_on_time`], which counts as a source would), so the count is that of the run;
/// the demand returned replays the same gaps, and its send delays come from the same seed. `None`
/// for a closed loop.
fn drawn<'a>(demand: Demand<'a>, start: Nanos, end: Nanos) -> (Demand<'a>, Option<u64>) {
    let (offered, turnaround_s, lateness) = match demand {
        Demand::Open(o) => (o, None, None),
        Demand::OpenWithTurnaround {
            offered,
            turnaround_s,
            lateness,
        } => (offered, Some(turnaround_s), lateness),
        closed @ Demand::Closed(_) => return (closed, None),
    };
    let Offered {
        setup,
        batch,
        rate_per_s,
        mut gaps,
    } = offered;
    let rebuild = |gaps: GapSource<'a>| {
        let offered = Offered {
            setup: setup.clone(),
            batch,
            rate_per_s,
            gaps,
        };
        match turnaround_s {
            None => Demand::Open(offered),
            Some(turnaround_s) => Demand::OpenWithTurnaround {
                offered,
                turnaround_s,
                lateness: lateness.clone(),
            },
        }
    };
    // The run asks for exactly the gaps drawn here; past them the stream has ended.
    let replay = |gaps: Vec<f64>| -> GapSource<'a> {
        let mut gaps = gaps.into_iter();
        Box::new(move || gaps.next().unwrap_or(f64::INFINITY))
    };
    if lateness.is_none() {
        // Sent on time, the count needs no source (nor its heap): most watched runs are so.
        let (drawn, measured) = open_on_time(gaps, turnaround_s.unwrap_or(0.0), start, end);
        return (rebuild(replay(drawn)), Some(measured));
    }
    let recorded = Rc::new(RefCell::new(Vec::new()));
    let sink = Rc::clone(&recorded);
    let recording: GapSource<'a> = Box::new(move || {
        let gap = gaps();
        sink.borrow_mut().push(gap);
        gap
    });
    let mut source = Source::new(rebuild(recording));
    let mut measured = 0u64;
    while let Some(t) = source.next().filter(|&t| t < end) {
        if source.intended().unwrap_or(t) >= start {
            measured += 1;
        }
        source.step();
    }
    drop(source);
    (rebuild(replay(recorded.take())), Some(measured))
}

#[cfg(test)]
mod tests {
    use super::super::capacity::{
        CapacityOptions, MixArrivals, MixTenant, evaluate, evaluate_watched,
    };
    use super::super::whatif::{Sla, Workload, simulate, simulate_against};

    use super::super::fixtures::{gpu, model};

    const SLAS: [(f64, f64); 3] = [(20.0, 99.0), (40.0, 95.0), (9.0, 50.0)];
    const LOADS: [f64; 8] = [0.3, 0.7, 0.9, 0.97, 1.0, 1.05, 1.3, 2.0];

    #[test]
    fn a_run_ends_early_only_when_the_full_run_misses_and_otherwise_is_the_full_run() {
        let g = gpu();
        let (mut ended, mut whole) = (0, 0);
        for batching in [false, true] {
            let m = model("m", batching);
            let capacity = m.capacity_images_per_s(1, &g);
            for load in LOADS {
                let runs = [(m.clone(), Workload::poisson(load * capacity))];
                let full = simulate(&g, &runs, 5.0, 7).unwrap();
                for (latency_ms, percentile) in SLAS {
                    let sla = Sla {
                        latency_ms,
                        percentile,
                    };
                    let f = &full.models[0];
                    match simulate_against(&g, &runs, 5.0, 7, &[Some(sla)]).unwrap() {
                        Err(missed) => {
                            ended += 1;
                            assert_eq!(missed.tenant, 0);
                            assert!(
                                f.latency_ms(percentile) > latency_ms,
                                "load {load} {sla:?}: ended, but the full run reads {} ms",
                                f.latency_ms(percentile)
                            );
                        }
                        Ok(report) => {
                            whole += 1;
                            let w = &report.models[0];
                            assert_eq!(
                                (w.latency_ms(percentile), w.submitted, w.completed),
                                (f.latency_ms(percentile), f.submitted, f.completed),
                                "load {load} {sla:?}"
                            );
                            assert_eq!(w.mean_latency_ms, f.mean_latency_ms);
                        }
                    }
                }
            }
        }
        assert!(ended > 5 && whole > 5, "ended {ended}, whole {whole}");
    }

    #[test]
    fn a_mix_ends_early_only_when_a_tenant_of_the_full_run_misses() {
        let g = gpu();
        let options = CapacityOptions {
            duration_s: Some(5.0),
            ..CapacityOptions::default()
        };
        let (mut ended, mut whole) = (0, 0);
        for (latency_ms, percentile) in SLAS {
            let tenant = |name: &str, batching, rate_per_s| MixTenant {
                setup: model(name, batching),
                batch: 1,
                rate_per_s,
                arrivals: MixArrivals::Poisson,
                sla: Sla {
                    latency_ms,
                    percentile,
                },
            };
            let mix = [tenant("a", true, 200.0), tenant("b", false, 150.0)];
            for scale in [0.2, 0.5, 0.8, 1.0, 1.2, 1.6, 2.5] {
                let full = evaluate(&g, &mix, scale, &options).unwrap();
                match evaluate_watched(&g, &mix, scale, &options).unwrap() {
                    Err(missed) => {
                        ended += 1;
                        assert!(!full[missed.tenant].meets_sla, "scale {scale}: {full:?}");
                    }
                    Ok(outcomes) => {
                        whole += 1;
                        assert_eq!(outcomes, full, "scale {scale}");
                    }
                }
            }
        }
        assert!(ended > 2 && whole > 2, "ended {ended}, whole {whole}");
    }
}
