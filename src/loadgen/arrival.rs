//! Arrival processes: when the next request of an open-loop tenant is due.
//!
//! Each process yields inter-arrival gaps for a target mean rate. Changing the rate takes effect from
//! the next gap (the scheduler re-anchors at "now", so there is never a burst to catch up).

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp};

use crate::vocab::spec::Arrival;

/// Slowest rate we schedule: below this a tenant is effectively idle (one request per ~3 hours).
const MIN_RATE: f64 = 1e-4;

/// A stateful generator of inter-arrival gaps.
#[derive(Debug)]
pub struct ArrivalProcess {
    kind: Kind,
    per_s: f64,
    rng: StdRng,
}

#[derive(Debug)]
enum Kind {
    Constant,
    Poisson,
    /// On/off modulated Poisson process (an MMPP with two states). During "on" periods requests come
    /// at `burst_factor` × the mean rate; the "off" rate is whatever keeps the long-run mean equal to
    /// the target: with on-fraction p = on / (on + off), off rate = (1 − p·factor) / (1 − p) × mean.
    /// When p·factor ≥ 1 the off rate is zero and the on rate is mean / p, so the mean still holds.
    Bursty {
        burst_factor: f64,
        mean_on_s: f64,
        mean_off_s: f64,
        on: bool,
        /// Time left in the current on/off period.
        remaining_s: f64,
    },
    /// Recorded gaps, looped, scaled so that their mean matches the target rate.
    Trace {
        gaps_us: Arc<Vec<u64>>,
        natural_mean_s: f64,
        next: usize,
    },
}

impl ArrivalProcess {
    pub fn new(arrival: &Arrival, per_s: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let kind = match arrival {
            Arrival::Constant => Kind::Constant,
            Arrival::Poisson => Kind::Poisson,
            Arrival::Bursty {
                burst_factor,
                mean_on,
                mean_off,
            } => {
                let mean_on_s = mean_on.as_secs_f64().max(1e-3);
                let mean_off_s = mean_off.as_secs_f64().max(1e-3);
                let remaining_s = exp_sample(&mut rng, 1.0 / mean_on_s);
                Kind::Bursty {
                    burst_factor: burst_factor.max(1.0),
                    mean_on_s,
                    mean_off_s,
                    on: true,
                    remaining_s,
                }
            }
            Arrival::Trace { gaps_us, .. } => {
                let total: u64 = gaps_us.iter().sum();
                let natural_mean_s = if gaps_us.is_empty() {
                    1.0
                } else {
                    (total as f64 / gaps_us.len() as f64 / 1e6).max(1e-9)
                };
                Kind::Trace {
                    gaps_us: Arc::clone(gaps_us),
                    natural_mean_s,
                    next: 0,
                }
            }
        };
        ArrivalProcess {
            kind,
            per_s: per_s.max(MIN_RATE),
            rng,
        }
    }

    pub fn set_rate(&mut self, per_s: f64) {
        self.per_s = per_s.max(MIN_RATE);
    }

    pub fn rate(&self) -> f64 {
        self.per_s
    }

    /// The gap between the previous arrival and the next one.
    pub fn next_gap(&mut self) -> Duration {
        let per_s = self.per_s;
        let secs = match &mut self.kind {
            Kind::Constant => 1.0 / per_s,
            Kind::Poisson => exp_sample(&mut self.rng, per_s),
            Kind::Bursty {
                burst_factor,
                mean_on_s,
                mean_off_s,
                on,
                remaining_s,
            } => {
                let p = *mean_on_s / (*mean_on_s + *mean_off_s);
                let (on_rate, off_rate) = if p * *burst_factor >= 1.0 {
                    (per_s / p, 0.0)
                } else {
                    (
                        *burst_factor * per_s,
                        (1.0 - p * *burst_factor) / (1.0 - p) * per_s,
                    )
                };
                // Walk through on/off periods until an arrival falls inside one (memorylessness
                // lets us redraw the gap at each period boundary).
                let mut elapsed = 0.0;
                loop {
                    let rate = if *on { on_rate } else { off_rate };
                    let gap = if rate > 0.0 {
                        exp_sample(&mut self.rng, rate)
                    } else {
                        f64::INFINITY
                    };
                    if gap <= *remaining_s {
                        *remaining_s -= gap;
                        break elapsed + gap;
                    }
                    elapsed += *remaining_s;
                    *on = !*on;
                    let mean = if *on { *mean_on_s } else { *mean_off_s };
                    *remaining_s = exp_sample(&mut self.rng, 1.0 / mean);
                }
            }
            Kind::Trace {
                gaps_us,
                natural_mean_s,
                next,
            } => {
                if gaps_us.is_empty() {
                    1.0 / per_s
                } else {
                    let gap = gaps_us[*next % gaps_us.len()] as f64 / 1e6;
                    *next = (*next + 1) % gaps_us.len();
                    // Scale so the trace's mean rate becomes the target rate.
                    gap * (1.0 / per_s) / *natural_mean_s
                }
            }
        };
        Duration::from_secs_f64(secs.clamp(0.0, 1e6))
    }
}

fn exp_sample(rng: &mut StdRng, rate: f64) -> f64 {
    match Exp::new(rate) {
        Ok(d) => d.sample(rng),
        Err(_) => 1.0 / rate.max(MIN_RATE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_rate(p: &mut ArrivalProcess, n: usize) -> f64 {
        let total: f64 = (0..n).map(|_| p.next_gap().as_secs_f64()).sum();
        n as f64 / total
    }

    #[test]
    fn constant_gaps_are_exact() {
        let mut p = ArrivalProcess::new(&Arrival::Constant, 200.0, 1);
        for _ in 0..10 {
            assert_eq!(p.next_gap(), Duration::from_millis(5));
        }
    }

    #[test]
    fn poisson_mean_rate_matches() {
        let mut p = ArrivalProcess::new(&Arrival::Poisson, 1000.0, 7);
        let r = mean_rate(&mut p, 200_000);
        assert!((r - 1000.0).abs() / 1000.0 < 0.01, "rate {r}");
    }

    /// Kolmogorov–Smirnov test of Poisson gaps against the exponential CDF at α = 0.01.
    #[test]
    fn poisson_gaps_fit_exponential() {
        let rate = 500.0;
        let mut p = ArrivalProcess::new(&Arrival::Poisson, rate, 42);
        let n = 20_000;
        let mut gaps: Vec<f64> = (0..n).map(|_| p.next_gap().as_secs_f64()).collect();
        gaps.sort_by(f64::total_cmp);
        let mut d: f64 = 0.0;
        for (i, g) in gaps.iter().enumerate() {
            let cdf = 1.0 - (-rate * g).exp();
            let lo = i as f64 / n as f64;
            let hi = (i + 1) as f64 / n as f64;
            d = d.max((cdf - lo).abs()).max((hi - cdf).abs());
        }
        let critical = 1.628 / (n as f64).sqrt();
        assert!(d < critical, "KS statistic {d} ≥ {critical}");
    }

    #[test]
    fn bursty_keeps_the_mean_and_is_burstier_than_poisson() {
        let arrival = Arrival::Bursty {
            burst_factor: 4.0,
            mean_on: Duration::from_secs(1),
            mean_off: Duration::from_secs(4),
        };
        let mut p = ArrivalProcess::new(&arrival, 100.0, 3);
        let gaps: Vec<f64> = (0..200_000).map(|_| p.next_gap().as_secs_f64()).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((1.0 / mean - 100.0).abs() < 5.0, "rate {}", 1.0 / mean);
        // Squared coefficient of variation: 1 for Poisson, > 1 for a bursty process.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!(var / (mean * mean) > 1.5, "cv² {}", var / (mean * mean));
    }

    #[test]
    fn trace_loops_and_scales_to_the_target_rate() {
        let gaps = Arc::new(vec![1000, 3000]); // natural mean 2 ms = 500/s
        let arrival = Arrival::Trace {
            path: "t.txt".into(),
            gaps_us: gaps,
        };
        let mut p = ArrivalProcess::new(&arrival, 1000.0, 0);
        let got: Vec<u128> = (0..4).map(|_| p.next_gap().as_micros()).collect();
        assert_eq!(got, vec![500, 1500, 500, 1500]);
    }

    #[test]
    fn rate_change_applies_to_the_next_gap() {
        let mut p = ArrivalProcess::new(&Arrival::Constant, 10.0, 0);
        assert_eq!(p.next_gap(), Duration::from_millis(100));
        p.set_rate(1000.0);
        assert_eq!(p.next_gap(), Duration::from_millis(1));
    }
}
