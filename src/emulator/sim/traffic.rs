//! Where a virtual-time run's requests come from: an open-loop arrival process, or a closed loop
//! that keeps N requests in flight and sends the next when one completes.
//!
//! Both are the same thing to the run loop, a source of send times, so open and closed tenants share
//! one loop and one tally.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::types::{ModelSetup, Nanos};
use super::whatif::{GapSource, Offered};
use crate::vocab::quantiles::Quantiles;

/// A closed-loop tenant for [`simulate_demands`](super::simulate_demands): `concurrency` requests always
/// in flight, as perf_analyzer's concurrency mode and the load generator's closed loop keep them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedLoop {
    pub setup: ModelSetup,
    /// Images per request.
    pub batch: u32,
    /// Requests in flight at every moment.
    pub concurrency: u32,
    /// Seconds from a response leaving the server to the next request reaching it: the transport
    /// both ways, which the server's clocks never see. The whole turnaround is part of the latency
    /// the client sees.
    pub turnaround_s: f64,
    /// The client's gap from a response to its successor's send, drawn per request; none sends
    /// at once. Latency counts from the response, as the load generator's closed loop counts it.
    pub lateness: Option<Lateness>,
}

/// How late a client sends, as a distribution to draw each request's delay from, seeded so that a
/// prediction is repeatable: a run's measured send lateness, replayed in virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct Lateness {
    pub quantiles: Quantiles,
    pub seed: u64,
}

/// One tenant's load for a virtual-time run.
pub enum Demand<'a> {
    /// Arrivals at the server as the process gives them (a client with no transport cost).
    Open(Offered<'a>),
    /// The process gives the client's intended send times; each request is sent its drawn
    /// `lateness` after that (none: on time) and reaches the server `turnaround_s` after its send:
    /// the client's transport both ways (see [`ClosedLoop::turnaround_s`]). Both are part of the
    /// latency it sees, which counts from the intended time, but never of the server's clocks.
    OpenWithTurnaround {
        offered: Offered<'a>,
        turnaround_s: f64,
        lateness: Option<Lateness>,
    },
    Closed(ClosedLoop),
}

impl Demand<'_> {
    pub fn setup(&self) -> &ModelSetup {
        match self {
            Demand::Open(o) | Demand::OpenWithTurnaround { offered: o, .. } => &o.setup,
            Demand::Closed(c) => &c.setup,
        }
    }

    pub fn batch(&self) -> u32 {
        match self {
            Demand::Open(o) | Demand::OpenWithTurnaround { offered: o, .. } => o.batch,
            Demand::Closed(c) => c.batch,
        }
    }

    /// The nominal rate a report calls offered; a closed loop has none (its rate is an outcome).
    pub fn rate_per_s(&self) -> f64 {
        match self {
            Demand::Open(o) | Demand::OpenWithTurnaround { offered: o, .. } => o.rate_per_s,
            Demand::Closed(_) => 0.0,
        }
    }
}

fn turnaround_ns(seconds: f64) -> Nanos {
    (seconds.max(0.0) * 1e9).round() as Nanos
}

/// Draws each request's send delay from a [`Lateness`]; none draws zero.
pub(super) struct Delays {
    draw: Option<(Quantiles, StdRng)>,
}

impl Delays {
    fn new(lateness: Option<Lateness>) -> Delays {
        Delays {
            draw: lateness.map(|l| (l.quantiles, StdRng::seed_from_u64(l.seed))),
        }
    }

    /// The next delay, in ns.
    fn next_ns(&mut self) -> f64 {
        match &mut self.draw {
            Some((q, rng)) => q.value_at(rng.random::<f64>()) * 1e6,
            None => 0.0,
        }
    }
}

/// Requests sent but not yet at the server, earliest arrival first: (arrival, intended send).
type InTransit = BinaryHeap<Reverse<(Nanos, Nanos)>>;

/// One tenant's arrivals at the server as absolute virtual times, each with its intended send time.
pub(super) struct Source<'a> {
    kind: Kind<'a>,
    in_transit: InTransit,
    /// From a send to its arrival at the server.
    turnaround_ns: Nanos,
    delays: Delays,
}

enum Kind<'a> {
    Open {
        /// The next intended send not yet in transit, in ns (fractional, so gaps do not round
        /// away); `None` once the process has no more.
        upcoming: Option<f64>,
        gaps: GapSource<'a>,
    },
    /// Sends come from completions.
    Closed,
}

impl<'a> Source<'a> {
    /// The source of `demand`; a closed loop means to send its first `concurrency` requests at
    /// time zero.
    pub(super) fn new(demand: Demand<'a>) -> Source<'a> {
        let open = |o: Offered<'a>, turnaround_s, lateness| {
            let mut source = Source {
                kind: Kind::Open {
                    upcoming: Some(0.0),
                    gaps: o.gaps,
                },
                in_transit: InTransit::new(),
                turnaround_ns: turnaround_ns(turnaround_s),
                delays: Delays::new(lateness),
            };
            // The process's first gap leads to its first send, as the load generator's clock has it.
            source.advance_upcoming();
            source.fill();
            source
        };
        match demand {
            Demand::Open(o) => open(o, 0.0, None),
            Demand::OpenWithTurnaround {
                offered,
                turnaround_s,
                lateness,
            } => open(offered, turnaround_s, lateness),
            Demand::Closed(c) => {
                let mut source = Source {
                    kind: Kind::Closed,
                    in_transit: InTransit::new(),
                    turnaround_ns: turnaround_ns(c.turnaround_s),
                    delays: Delays::new(c.lateness),
                };
                for _ in 0..c.concurrency {
                    source.send(0.0);
                }
                source
            }
        }
    }

    /// Puts the request intended for `intended` (ns) in transit, its delay drawn.
    fn send(&mut self, intended: f64) {
        let arrival = intended + self.delays.next_ns() + self.turnaround_ns as f64;
        if arrival.is_finite() && arrival < u64::MAX as f64 {
            self.in_transit
                .push(Reverse((arrival as Nanos, intended as Nanos)));
        }
    }

    fn advance_upcoming(&mut self) {
        if let Kind::Open { upcoming, gaps } = &mut self.kind {
            *upcoming = upcoming
                .map(|at| at + (gaps() * 1e9).max(0.0))
                .filter(|at| at.is_finite() && *at < u64::MAX as f64);
        }
    }

    /// Sends from the open process until no later send can arrive before the earliest in
    /// transit: a delay is never negative, so nothing intended later can arrive before its own
    /// intended time plus the turnaround.
    fn fill(&mut self) {
        loop {
            let Kind::Open {
                upcoming: Some(at), ..
            } = self.kind
            else {
                return;
            };
            let earliest = self.in_transit.peek().map(|Reverse((a, _))| *a as f64);
            if earliest.is_some_and(|e| e <= at + self.turnaround_ns as f64) {
                return;
            }
            self.send(at);
            self.advance_upcoming();
        }
    }

    /// The next arrival at the server, if any.
    pub(super) fn next(&self) -> Option<Nanos> {
        self.in_transit.peek().map(|Reverse((arrival, _))| *arrival)
    }

    /// When the client meant to send the request arriving at [`next`](Self::next): latency and
    /// the measured period are the client's, from that time.
    pub(super) fn intended(&self) -> Option<Nanos> {
        self.in_transit
            .peek()
            .map(|Reverse((_, intended))| *intended)
    }

    /// Moves past the arrival at [`next`](Self::next).
    pub(super) fn step(&mut self) {
        self.in_transit.pop();
        self.fill();
    }

    /// One of this source's requests completed at `at`: a closed loop means to send its
    /// successor then; an open process does not care.
    pub(super) fn completed(&mut self, at: Nanos) {
        if matches!(self.kind, Kind::Closed) {
            self.send(at as f64);
        }
    }
}

/// What a [`Source`] of an open process sending on time (no lateness) yields up to `end`, without
/// running one: how many of its arrivals before `end` were sent at or after `start`, with every gap
/// the source would have drawn by then, in order. Sent on time, arrivals keep the order of the sends,
/// so the in-transit heap never holds more than one; the arithmetic is the source's own
/// (`Source::advance_upcoming`, `Source::send`), so the count and the gaps are exactly its.
pub(super) fn open_on_time(
    mut gaps: impl FnMut() -> f64,
    turnaround_s: f64,
    start: Nanos,
    end: Nanos,
) -> (Vec<f64>, u64) {
    let turnaround = turnaround_ns(turnaround_s) as f64;
    let mut drawn = Vec::new();
    let mut next_after = |at: f64| {
        let gap = gaps();
        drawn.push(gap);
        Some(at + (gap * 1e9).max(0.0)).filter(|at| at.is_finite() && *at < u64::MAX as f64)
    };
    let mut measured = 0u64;
    let mut upcoming = next_after(0.0);
    while let Some(at) = upcoming {
        // The source draws the next gap as soon as it sends, before its arrival is taken.
        let arrival = at + 0.0 + turnaround;
        upcoming = next_after(at);
        if arrival.is_finite() && arrival < u64::MAX as f64 {
            if arrival as Nanos >= end {
                break;
            }
            if at as Nanos >= start {
                measured += 1;
            }
        }
    }
    (drawn, measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> ModelSetup {
        ModelSetup {
            name: "m".into(),
            alpha_ms: 1.0,
            beta_ms: 1.0,
            max_batch: 8,
            instances: 1,
            dynamic_batching: None,
            memory_bytes: 0,
            input_bytes_per_image: 0,
            output_bytes_per_image: 0,
        }
    }

    #[test]
    fn a_closed_loop_sends_its_concurrency_at_once_then_one_per_completion() {
        let mut s = Source::new(Demand::Closed(ClosedLoop {
            setup: setup(),
            batch: 1,
            concurrency: 2,
            turnaround_s: 1e-6,
            lateness: None,
        }));
        assert_eq!(
            s.next(),
            Some(1_000),
            "sent at zero, they reach the server a turnaround later"
        );
        s.step();
        assert_eq!(s.next(), Some(1_000));
        s.step();
        assert_eq!(s.next(), None, "nothing more until a request completes");
        s.completed(5_000);
        assert_eq!(
            s.next(),
            Some(6_000),
            "the successor follows the turnaround"
        );
        assert_eq!(
            s.intended(),
            Some(5_000),
            "the client meant to send it as the response came back"
        );
    }

    /// One instance, no batcher, no link: each request takes 2 ms on the GPU, whatever else is going on.
    fn closed(concurrency: u32, turnaround_s: f64) -> super::super::whatif::ModelReport {
        let catalog = crate::catalog::Catalog::embedded().expect("embedded catalog");
        let mut gpu = super::super::gpu_setup(catalog.gpu("t4").expect("t4"));
        gpu.link_bytes_per_s = 0.0;
        let demand = Demand::Closed(ClosedLoop {
            setup: setup(),
            batch: 1,
            concurrency,
            turnaround_s,
            lateness: None,
        });
        let report = super::super::simulate_demands(&gpu, vec![demand], 1.0, 10.0).expect("runs");
        report.models.into_iter().next().expect("one model")
    }

    #[test]
    fn a_closed_loop_runs_at_its_concurrency_over_the_cycle() {
        // One in flight: a 2 ms request, then the next; a turnaround of 1 ms stretches each cycle.
        let alone = closed(1, 0.0);
        assert!(
            (alone.achieved_per_s / 500.0 - 1.0).abs() < 0.01,
            "{alone:?}"
        );
        let slow_client = closed(1, 0.001);
        assert!(
            (slow_client.achieved_per_s / 333.3 - 1.0).abs() < 0.01,
            "{slow_client:?}"
        );
        // The client's latency includes the transport: 3 ms from send to response.
        assert!(
            (slow_client.mean_latency_ms - 3.0).abs() < 0.05,
            "{slow_client:?}"
        );
        // Four in flight on one instance queue behind each other: the rate stays the GPU's, and
        // Little's law holds, four in the system for every request's latency.
        let four = closed(4, 0.0);
        assert!((four.achieved_per_s / 500.0 - 1.0).abs() < 0.01, "{four:?}");
        let in_system = four.achieved_per_s * four.mean_latency_ms / 1e3;
        assert!((in_system - 4.0).abs() < 0.05, "{in_system}");
    }

    #[test]
    fn an_open_source_with_a_turnaround_reaches_the_server_that_much_after_each_send() {
        let mut s = Source::new(Demand::OpenWithTurnaround {
            offered: every_ms(),
            turnaround_s: 250e-6,
            lateness: None,
        });
        assert_eq!(s.next(), Some(1_250_000));
        assert_eq!(
            s.intended(),
            Some(1_000_000),
            "latency counts from the send"
        );
        s.step();
        assert_eq!(
            s.next(),
            Some(2_250_000),
            "the sends keep the process's gaps"
        );
    }

    /// An open tenant's latency is the server's plus the turnaround; the server's own work and the
    /// rate achieved do not change.
    #[test]
    fn a_turnaround_adds_to_an_open_tenants_latency_only() {
        let catalog = crate::catalog::Catalog::embedded().expect("embedded catalog");
        let gpu = super::super::gpu_setup(catalog.gpu("t4").expect("t4"));
        let run = |turnaround_s: f64| {
            let offered = Offered {
                setup: setup(),
                batch: 1,
                rate_per_s: 100.0,
                gaps: Box::new(|| 0.01),
            };
            let demand = Demand::OpenWithTurnaround {
                offered,
                turnaround_s,
                lateness: None,
            };
            let report =
                super::super::simulate_demands(&gpu, vec![demand], 1.0, 10.0).expect("runs");
            report.models.into_iter().next().expect("one model")
        };
        let (direct, remote) = (run(0.0), run(0.003));
        assert_eq!(direct.completed, remote.completed);
        assert!(
            (remote.mean_latency_ms - direct.mean_latency_ms - 3.0).abs() < 0.01,
            "{} vs {}",
            remote.mean_latency_ms,
            direct.mean_latency_ms
        );
        assert_eq!(direct.counters.queue_ns, remote.counters.queue_ns);
    }

    /// One image every millisecond, on the clock.
    fn every_ms() -> Offered<'static> {
        Offered {
            setup: setup(),
            batch: 1,
            rate_per_s: 1000.0,
            gaps: Box::new(|| 0.001),
        }
    }

    fn lateness(ms: Vec<f64>) -> Option<Lateness> {
        let q = (0..ms.len())
            .map(|i| i as f64 / (ms.len() - 1) as f64)
            .collect();
        Some(Lateness {
            quantiles: Quantiles { q, ms },
            seed: 7,
        })
    }

    /// Late sends reach the server in the order they arrive, not the order they were meant to go
    /// out, and each keeps its intended time; the delays drawn follow the distribution.
    #[test]
    fn an_open_source_sends_each_request_a_drawn_delay_late() {
        let mut s = Source::new(Demand::OpenWithTurnaround {
            offered: every_ms(),
            turnaround_s: 0.0,
            // Uniform from 0 to 3 ms: sends 1 ms apart overtake one another.
            lateness: lateness(vec![0.0, 3.0]),
        });
        let (mut last, mut last_intended, mut delays, mut reordered) = (0, 0, Vec::new(), false);
        for _ in 0..10_000 {
            let (arrival, intended) = (s.next().expect("open"), s.intended().expect("open"));
            assert!(arrival >= last, "arrivals come in time order");
            assert!(arrival >= intended);
            reordered |= intended < last_intended;
            (last, last_intended) = (arrival, intended);
            delays.push((arrival - intended) as f64 / 1e6);
            s.step();
        }
        assert!(reordered, "a later send overtook an earlier one");
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!((mean - 1.5).abs() < 0.05, "mean delay {mean} ms");
        assert!(delays.iter().all(|d| (0.0..=3.0).contains(d)));
    }

    /// A closed loop's cycle holds the client's gap: one in flight on a 2 ms request, a constant
    /// 1 ms gap, a cycle of 3 ms, and latency counts from the response that freed the slot.
    #[test]
    fn a_closed_loops_gap_stretches_its_cycle() {
        let catalog = crate::catalog::Catalog::embedded().expect("embedded catalog");
        let mut gpu = super::super::gpu_setup(catalog.gpu("t4").expect("t4"));
        gpu.link_bytes_per_s = 0.0;
        let demand = Demand::Closed(ClosedLoop {
            setup: setup(),
            batch: 1,
            concurrency: 1,
            turnaround_s: 0.0,
            lateness: lateness(vec![1.0, 1.0]),
        });
        let report = super::super::simulate_demands(&gpu, vec![demand], 1.0, 10.0).expect("runs");
        let m = &report.models[0];
        assert!((m.achieved_per_s / 333.3 - 1.0).abs() < 0.01, "{m:?}");
        assert!((m.mean_latency_ms - 3.0).abs() < 0.05, "{m:?}");
    }

    /// The shortcut draws exactly the gaps a source would and counts the arrivals it yields.
    #[test]
    fn open_on_time_counts_and_draws_as_a_source_does() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Exp};
        for (seed, turnaround_s, start, end) in [
            (1, 0.0, 0, 2_000_000_000),
            (2, 0.0, 300_000_000, 1_000_000_000),
            (3, 0.0031, 500_000_000, 3_000_000_000),
            (4, 1e-7, 0, 1),
            (5, 0.0, 0, 0),
        ] {
            let gaps = move || {
                let exp = Exp::new(700.0).unwrap();
                let mut rng = StdRng::seed_from_u64(seed);
                move || exp.sample(&mut rng)
            };
            let (drawn, measured) = open_on_time(gaps(), turnaround_s, start, end);
            let recorded = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let sink = std::rc::Rc::clone(&recorded);
            let mut inner = gaps();
            let mut source = Source::new(Demand::OpenWithTurnaround {
                offered: Offered {
                    setup: setup(),
                    batch: 1,
                    rate_per_s: 700.0,
                    gaps: Box::new(move || {
                        let gap = inner();
                        sink.borrow_mut().push(gap);
                        gap
                    }),
                },
                turnaround_s,
                lateness: None,
            });
            let mut counted = 0;
            while let Some(t) = source.next().filter(|&t| t < end) {
                counted += u64::from(source.intended().unwrap_or(t) >= start);
                source.step();
            }
            drop(source);
            assert_eq!(measured, counted, "seed {seed}");
            assert_eq!(drawn, recorded.take(), "seed {seed}");
        }
        // A process that stops: every gap it gave, and the sends before it stopped.
        let mut left = vec![f64::INFINITY, 0.002, 0.001];
        let (drawn, measured) = open_on_time(|| left.pop().unwrap(), 0.0, 0, u64::MAX);
        assert_eq!((drawn, measured), (vec![0.001, 0.002, f64::INFINITY], 2));
    }

    #[test]
    fn an_open_source_ignores_completions() {
        let mut s = Source::new(Demand::Open(every_ms()));
        assert_eq!(s.next(), Some(1_000_000));
        s.completed(10);
        assert_eq!(s.next(), Some(1_000_000));
        s.step();
        assert_eq!(s.next(), Some(2_000_000));
    }
}
