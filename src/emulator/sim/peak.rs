//! Solo peaks: the highest Poisson rate at which one model alone on a GPU meets its SLA.
//!
//! The search is bisection's over the rates 0 … 1.02 × the model's capacity, on a grid of
//! 2^iterations steps, with each run's latency placing the next probe ([`threshold`]): the same
//! peak in about half the runs. A peak search is most of a plan's time (one per tenant and GPU
//! type) and the engine runs one per tenant.

use super::threshold::{self, Probe};
use super::types::{GpuSetup, ModelSetup, SimError};
use super::whatif::{Arrivals, SearchOptions, Sla, Workload, meets, simulate_against};

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

/// [`solo_peak`] with explicit search options: the grid has 2^`iterations` steps.
pub fn solo_peak_with(
    gpu: &GpuSetup,
    model: &ModelSetup,
    batch: u32,
    sla: &Sla,
    options: &SearchOptions,
) -> Result<f64, SimError> {
    PeakGrid::new(gpu, model, batch, sla, options).peak(&[])
}

/// A run of a peak search at one of its grid's rates, kept so that the search does not make it again.
#[derive(Debug, Clone, Copy)]
pub struct GridRun {
    index: u32,
    probe: Probe,
}

/// One solo-peak search whose runs can also be asked for one at a time: whether a peak is at most
/// some rate takes one run, which is how the planner leaves out a GPU type another beats.
pub struct PeakGrid<'a> {
    gpu: &'a GpuSetup,
    model: &'a ModelSetup,
    batch: u32,
    sla: Sla,
    options: SearchOptions,
    top: f64,
    steps: u32,
}

impl<'a> PeakGrid<'a> {
    pub fn new(
        gpu: &'a GpuSetup,
        model: &'a ModelSetup,
        batch: u32,
        sla: &Sla,
        options: &SearchOptions,
    ) -> PeakGrid<'a> {
        PeakGrid {
            gpu,
            model,
            batch,
            sla: *sla,
            options: *options,
            top: model.capacity_images_per_s(batch, gpu) / f64::from(batch.max(1)) * 1.02,
            steps: 1u32 << options.iterations.min(30),
        }
    }

    /// The requests a run at the top of the grid sends: what a search costs, near enough to order
    /// searches by (every run is at some fraction of the top, and a run's time goes per request).
    pub fn requests_at_top(&self) -> f64 {
        self.top * self.options.duration_s
    }

    fn rate(&self, i: u32) -> f64 {
        self.top * f64::from(i) / f64::from(self.steps)
    }

    fn run(&self, i: u32) -> Result<Probe, SimError> {
        let workload = Workload {
            rate_per_s: self.rate(i),
            batch: self.batch,
            arrivals: Arrivals::Poisson,
        };
        let sla = &self.sla;
        let floor = trickle_ms(self.gpu, self.model, self.batch);
        // A run that certainly misses is ended there; its guessed latency only places the next probe.
        let report = match simulate_against(
            self.gpu,
            &[(self.model.clone(), workload)],
            self.options.duration_s,
            self.options.seed,
            &[Some(*sla)],
        )? {
            Ok(report) => report,
            Err(missed) => {
                return Ok(Probe::of_latency_over(
                    false,
                    missed.latency_ms,
                    sla.latency_ms,
                    floor,
                ));
            }
        };
        Ok(match report.models.first() {
            Some(m) => Probe::of_latency_over(
                meets(m, sla),
                m.latency_ms(sla.percentile),
                sla.latency_ms,
                floor,
            ),
            None => Probe::of_latency(false, f64::INFINITY, sla.latency_ms),
        })
    }

    /// The peak, reusing `known` runs of this grid.
    pub fn peak(&self, known: &[GridRun]) -> Result<f64, SimError> {
        // At a trickle a request takes its batch's copies and compute, after the batcher's wait;
        // beyond the capacity the queue never drains.
        let trickle = trickle_ms(self.gpu, self.model, self.batch);
        let prior = (
            Probe::of_latency(true, trickle, self.sla.latency_ms).slack,
            -1.0,
        );
        let known: Vec<(u32, Probe)> = known.iter().map(|r| (r.index, r.probe)).collect();
        let found = threshold::last_passing(self.steps, prior, &known, |i| self.run(i))?;
        Ok(self.rate(found))
    }

    /// Whether the peak [`PeakGrid::peak`] would find is at most `rate`: the first grid rate above
    /// it fails (exact where passing falls with the rate, as the search assumes). The run made, if
    /// any, is returned for the search.
    pub fn at_most(&self, rate: f64) -> Result<(bool, Option<GridRun>), SimError> {
        // A rate that is a grid point, but for rounding, counts as that point.
        let above = (rate / self.top * f64::from(self.steps) + 1e-9).floor() + 1.0;
        if !(above.is_finite() && above >= 1.0) || above > f64::from(self.steps) {
            // Every grid rate is at most `rate` (or `rate` is not a rate at all).
            return Ok((above > f64::from(self.steps), None));
        }
        let index = above as u32;
        let probe = self.run(index)?;
        Ok((!probe.pass, Some(GridRun { index, probe })))
    }
}

/// A lone request's latency: the batcher's queue delay (when it batches), copies and compute.
fn trickle_ms(gpu: &GpuSetup, model: &ModelSetup, batch: u32) -> f64 {
    let delay_ms = model
        .dynamic_batching
        .as_ref()
        .map_or(0.0, |b| b.max_queue_delay_us as f64 / 1e3);
    let copies_ns =
        (model.compute_input_ns(batch, gpu) + model.compute_output_ns(batch, gpu)) as f64;
    delay_ms + (model.solo_latency_ns(batch) + copies_ns) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::fixtures::gpu;

    fn model(batching: bool) -> ModelSetup {
        super::super::fixtures::model("m", batching)
    }

    /// The search as it was: the grid's top, then halvings of [0, top].
    fn bisection(grid: &PeakGrid<'_>) -> f64 {
        let ok = |i: u32| grid.run(i).map(|p| p.pass).unwrap_or(false);
        if ok(grid.steps) {
            return grid.rate(grid.steps);
        }
        let (mut lo, mut hi) = (0, grid.steps);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if ok(mid) { lo = mid } else { hi = mid }
        }
        grid.rate(lo)
    }

    #[test]
    fn the_search_lands_where_bisection_does() {
        let g = gpu();
        for (batching, sla_ms, percentile) in [(false, 40.0, 99.0), (true, 25.0, 95.0)] {
            let m = model(batching);
            let sla = Sla {
                latency_ms: sla_ms,
                percentile,
            };
            let options = SearchOptions {
                duration_s: 5.0,
                seed: 3,
                iterations: 7,
            };
            let grid = PeakGrid::new(&g, &m, 1, &sla, &options);
            let peak = grid.peak(&[]).unwrap();
            assert!(peak > 0.0);
            assert_eq!(peak, bisection(&grid), "batching {batching}");
            assert_eq!(peak, solo_peak_with(&g, &m, 1, &sla, &options).unwrap());
        }
    }

    #[test]
    fn at_most_agrees_with_the_peak_and_its_run_is_reused() {
        let (g, m) = (gpu(), model(true));
        let sla = Sla {
            latency_ms: 30.0,
            percentile: 99.0,
        };
        let options = SearchOptions {
            duration_s: 5.0,
            seed: 1,
            iterations: 7,
        };
        let grid = PeakGrid::new(&g, &m, 1, &sla, &options);
        let peak = grid.peak(&[]).unwrap();
        let step = grid.top / f64::from(grid.steps);
        let (at_most, run) = grid.at_most(peak).unwrap();
        assert!(at_most, "peak {peak}");
        assert!(run.is_some_and(|r| !r.probe.pass && r.index == (peak / step).round() as u32 + 1));
        let (below, run) = grid.at_most(peak - 2.0 * step).unwrap();
        assert!(!below, "peak {peak}");
        let run = run.expect("a run");
        assert_eq!(
            grid.peak(&[run]).unwrap(),
            peak,
            "a known run changes nothing"
        );
        let (beyond, run) = grid.at_most(grid.top * 2.0).unwrap();
        assert!(beyond && run.is_none(), "no run is needed above the grid");
    }
}
