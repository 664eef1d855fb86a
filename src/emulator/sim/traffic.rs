//! Where a virtual-time run's requests come from: an open-loop arrival process, or a closed loop
//! that keeps N requests in flight and sends the next when one completes.
//!
//! Both are the same thing to the run loop, a source of send times, so open and closed tenants share
//! one loop and one tally.

use std::collections::VecDeque;

use super::types::{ModelSetup, Nanos};
use super::whatif::{GapSource, Offered};

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
    /// both ways, which the server's clocks never see. The client is taken to send at once (as the
    /// load generator's workers do), so the whole turnaround is part of the latency the client sees.
    pub turnaround_s: f64,
}

/// One tenant's load for a virtual-time run.
pub enum Demand<'a> {
    /// Arrivals at the server as the process gives them (a client with no transport cost).
    Open(Offered<'a>),
    /// The process gives the client's send times, and each request reaches the server
    /// `turnaround_s` later: the client's transport both ways (see [`ClosedLoop::turnaround_s`]),
    /// part of the latency it sees but never of the server's clocks.
    OpenWithTurnaround {
        offered: Offered<'a>,
        turnaround_s: f64,
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

/// One tenant's send times as absolute virtual times.
pub(super) enum Source<'a> {
    Open {
        /// The next arrival at the server.
        next: Option<Nanos>,
        /// Time of the last send, in ns (fractional, so gaps do not round away).
        clock: f64,
        gaps: GapSource<'a>,
        /// From a send to its arrival at the server.
        turnaround_ns: Nanos,
    },
    Closed {
        /// Sends due, in time order: completions come in time order and the turnaround is fixed.
        due: VecDeque<Nanos>,
        turnaround_ns: Nanos,
    },
}

impl<'a> Source<'a> {
    /// The source of `demand`; a closed loop sends its first `concurrency` requests at time zero.
    pub(super) fn new(demand: Demand<'a>) -> Source<'a> {
        let open = |o: Offered<'a>, turnaround_ns| {
            let mut source = Source::Open {
                next: None,
                clock: 0.0,
                gaps: o.gaps,
                turnaround_ns,
            };
            source.step();
            source
        };
        match demand {
            Demand::Open(o) => open(o, 0),
            Demand::OpenWithTurnaround {
                offered,
                turnaround_s,
            } => open(offered, turnaround_ns(turnaround_s)),
            Demand::Closed(c) => {
                let turnaround_ns = turnaround_ns(c.turnaround_s);
                Source::Closed {
                    due: std::iter::repeat_n(turnaround_ns, c.concurrency as usize).collect(),
                    turnaround_ns,
                }
            }
        }
    }

    /// The next send time, if any.
    pub(super) fn next(&self) -> Option<Nanos> {
        match self {
            Source::Open { next, .. } => *next,
            Source::Closed { due, .. } => due.front().copied(),
        }
    }

    /// Moves past the send at [`next`](Self::next).
    pub(super) fn step(&mut self) {
        match self {
            Source::Open {
                next,
                clock,
                gaps,
                turnaround_ns,
            } => {
                let gap = gaps() * 1e9;
                *clock += gap.max(0.0);
                let arrival = *clock + *turnaround_ns as f64;
                *next = if arrival.is_finite() && arrival < u64::MAX as f64 {
                    Some(arrival as Nanos)
                } else {
                    None
                };
            }
            Source::Closed { due, .. } => {
                due.pop_front();
            }
        }
    }

    /// When the client sent a request that reaches the server at `arrival`: latency and the measured
    /// period are the client's, from its send.
    pub(super) fn sent_at(&self, arrival: Nanos) -> Nanos {
        match self {
            Source::Open { turnaround_ns, .. } | Source::Closed { turnaround_ns, .. } => {
                arrival.saturating_sub(*turnaround_ns)
            }
        }
    }

    /// One of this source's requests completed at `at`: a closed loop sends its successor after the
    /// turnaround; an open process does not care.
    pub(super) fn completed(&mut self, at: Nanos) {
        if let Source::Closed { due, turnaround_ns } = self {
            due.push_back(at.saturating_add(*turnaround_ns));
        }
    }
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
            s.sent_at(6_000),
            5_000,
            "the client sent it as the response came back"
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
            offered: Offered {
                setup: setup(),
                batch: 1,
                rate_per_s: 1000.0,
                gaps: Box::new(|| 0.001),
            },
            turnaround_s: 250e-6,
        });
        assert_eq!(s.next(), Some(1_250_000));
        assert_eq!(
            s.sent_at(1_250_000),
            1_000_000,
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

    #[test]
    fn an_open_source_ignores_completions() {
        let mut s = Source::new(Demand::Open(Offered {
            setup: setup(),
            batch: 1,
            rate_per_s: 1000.0,
            gaps: Box::new(|| 0.001),
        }));
        assert_eq!(s.next(), Some(1_000_000));
        s.completed(10);
        assert_eq!(s.next(), Some(1_000_000));
        s.step();
        assert_eq!(s.next(), Some(2_000_000));
    }
}
