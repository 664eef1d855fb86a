//! Is the load generator the bottleneck? DESIGN §4's client-bound rule on the driver's figures.
//!
//! The lag criteria look at *dispatch*: how long after its intended time the clock issued an
//! arrival. Only the client delays that (its clock woke late, or spent its time sending
//! earlier arrivals), unlike a wait for an in-flight slot, which a slow server causes. The
//! threshold is far above the wake-up noise of a busy small machine (a few milliseconds at worst),
//! so a light run is not flagged when other work shares the box, while a generator that cannot
//! keep up falls further behind every tick and crosses it within a second.
//!
//! Drops at the in-flight bound have two causes, told apart by who held the requests in flight.
//! When the server's own time per request is most of the client's time from send to answer, the
//! server's queue filled the bound: the target is saturated and the drops are its doing. Otherwise
//! the client (or its transport) held them and the drops count against the client.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::vocab::snapshot::{ClientBound, ClientBoundReason, Saturated};

/// An arrival dispatched this far behind its intended time counts against the client.
pub const CLIENT_LAG: Duration = Duration::from_millis(10);
/// Share of a span's arrivals that may be late (or dropped) before the span is flagged.
pub const BOUND_SHARE: f64 = 0.01;
/// Fewer late (or dropped) arrivals than this never flag a span: one of a handful is not a trend.
pub const MIN_COUNT: u64 = 5;
/// Ticks in a row whose worst lag must exceed [`CLIENT_LAG`] and grow for "falling behind".
pub const FALLING_TICKS: usize = 3;
/// Process CPU at or above this share of the cores it may use is "out of CPU".
pub const CPU_SHARE: f64 = 0.9;
/// The server holds the in-flight requests when its own time per request is at least this share
/// of the client's time from send to answer: drops at the bound are then the target's.
pub const SERVER_HELD_SHARE: f64 = 0.8;

/// What the client-bound rule reads over one span (a window, or the measured period).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClientFigures {
    pub arrivals: u64,
    pub behind: u64,
    pub dropped: u64,
    pub lag_max: Duration,
    /// The worst lag grew over the last [`FALLING_TICKS`] ticks (in the span).
    pub falling_behind: bool,
    /// Process CPU over the span as a share of the usable cores, when known.
    pub cpu_share: Option<f64>,
    pub cores: u32,
    /// The client's mean time per successful request from its actual send, in ms.
    pub service_ms: f64,
    /// The server's own time per request over the span (its statistics), in ms, when it says.
    pub server_ms: Option<f64>,
}

impl ClientFigures {
    fn share(&self, n: u64) -> f64 {
        if self.arrivals > 0 {
            n as f64 / self.arrivals as f64
        } else {
            0.0
        }
    }

    /// Enough of the span's arrivals (more than [`BOUND_SHARE`], at least [`MIN_COUNT`]) are `n`.
    fn over(&self, n: u64) -> bool {
        n >= MIN_COUNT && self.share(n) > BOUND_SHARE
    }

    /// The server's time per request when the server held the requests in flight (it is most
    /// of the client's). Without the server's statistics this cannot be told, and the drops
    /// count against the client as before.
    fn server_held_ms(&self) -> Option<f64> {
        self.server_ms
            .filter(|&s| self.service_ms > 0.0 && s >= SERVER_HELD_SHARE * self.service_ms)
    }
}

/// Drops at the in-flight bound that the target caused: the bound filled while its server held
/// the requests. `None` when there were too few drops, or the client held them.
pub fn saturated(f: &ClientFigures) -> Option<Saturated> {
    let server_ms = f.server_held_ms().filter(|_| f.over(f.dropped))?;
    Some(Saturated {
        dropped_share: f.share(f.dropped),
        server_ms,
        service_ms: f.service_ms,
    })
}

/// The flag for a span, or `None` when the generator kept its schedule.
pub fn assess(f: &ClientFigures) -> Option<ClientBound> {
    let mut reasons = Vec::new();
    if f.over(f.behind) {
        reasons.push(ClientBoundReason::LateSends);
    }
    if f.falling_behind {
        reasons.push(ClientBoundReason::FallingBehind);
    }
    // Drops while the server held the requests are the target's (see [`saturated`]).
    if f.over(f.dropped) && f.server_held_ms().is_none() {
        reasons.push(ClientBoundReason::Dropped);
    }
    if f.cpu_share.is_some_and(|c| c >= CPU_SHARE) {
        reasons.push(ClientBoundReason::OutOfCpu);
    }
    (!reasons.is_empty()).then(|| ClientBound {
        reasons,
        behind_ms: f.lag_max.as_secs_f64() * 1000.0,
        late_share: f.share(f.behind),
        dropped_share: f.share(f.dropped),
        cpu_share: f.cpu_share,
        cores: f.cores,
    })
}

/// Whether the worst lag of the last few ticks says the generator is losing ground.
#[derive(Debug, Clone, Default)]
pub struct LagTrend {
    recent: VecDeque<Duration>,
}

impl LagTrend {
    /// Adds a tick's worst lag; true when the last [`FALLING_TICKS`] all exceed [`CLIENT_LAG`]
    /// and each is larger than the one before.
    pub fn push(&mut self, lag_max: Duration) -> bool {
        if self.recent.len() == FALLING_TICKS {
            self.recent.pop_front();
        }
        self.recent.push_back(lag_max);
        self.recent.len() == FALLING_TICKS
            && self.recent.iter().all(|&l| l > CLIENT_LAG)
            && self
                .recent
                .iter()
                .zip(self.recent.iter().skip(1))
                .all(|(a, b)| b > a)
    }
}

/// The cores this process may run on.
pub fn usable_cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// CPU time used by this whole process (every thread) so far, when the platform tells.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        let secs = u64::try_from(t.tv_sec).ok()?;
        let nanos = u32::try_from(t.tv_nsec).ok()?;
        Some(Duration::new(secs, nanos))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Process CPU over a sliding window and since a mark, as a share of the usable cores.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    cores: u32,
    window: Duration,
    /// (wall time, process CPU time), oldest first, spanning at most the window.
    samples: VecDeque<(Instant, Duration)>,
    mark: Option<(Instant, Duration)>,
}

impl CpuMeter {
    pub fn new(window: Duration) -> CpuMeter {
        CpuMeter {
            cores: usable_cores(),
            window,
            samples: VecDeque::new(),
            mark: None,
        }
    }

    pub fn cores(&self) -> u32 {
        self.cores
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Takes this tick's reading (one clock read: cheap enough for the engine's tick).
    pub fn sample(&mut self, now: Instant) {
        if let Some(cpu) = process_cpu_time() {
            self.push(now, cpu);
        }
    }

    /// Adds a reading; tests feed their own.
    pub fn push(&mut self, now: Instant, cpu: Duration) {
        self.samples.push_back((now, cpu));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// The measured period begins at the latest reading.
    pub fn mark(&mut self) {
        self.mark = self.samples.back().copied();
    }

    /// Share of the usable cores used over the window; `None` before two readings.
    pub fn window_share(&self) -> Option<f64> {
        let first = self.samples.front()?;
        let last = self.samples.back()?;
        self.share(*first, *last)
    }

    /// Share of the usable cores used since [`mark`](Self::mark).
    pub fn measured_share(&self) -> Option<f64> {
        self.share(self.mark?, *self.samples.back()?)
    }

    fn share(&self, (t0, c0): (Instant, Duration), (t1, c1): (Instant, Duration)) -> Option<f64> {
        let wall = t1.saturating_duration_since(t0).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        Some(c1.saturating_sub(c0).as_secs_f64() / (wall * f64::from(self.cores.max(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_schedule_kept_is_not_flagged() {
        let f = ClientFigures {
            arrivals: 1000,
            behind: 4,
            dropped: 0,
            lag_max: ms(30),
            falling_behind: false,
            cpu_share: Some(0.5),
            cores: 2,
            ..ClientFigures::default()
        };
        assert_eq!(assess(&f), None);
        // One late arrival of a handful is not a trend either.
        assert_eq!(
            assess(&ClientFigures {
                arrivals: 20,
                behind: 1,
                ..f
            }),
            None
        );
    }

    #[test]
    fn each_criterion_flags_with_its_figures() {
        let base = ClientFigures {
            arrivals: 1000,
            cores: 2,
            ..ClientFigures::default()
        };
        let late = assess(&ClientFigures {
            behind: 20,
            lag_max: ms(12),
            ..base
        })
        .unwrap();
        assert_eq!(late.reasons, vec![ClientBoundReason::LateSends]);
        assert!((late.late_share - 0.02).abs() < 1e-12);
        assert_eq!(late.short(), "client behind by 12 ms");
        assert_eq!(
            late.long(),
            "client behind by 12 ms — these latencies measure this machine, not the GPU"
        );
        let dropped = assess(&ClientFigures {
            dropped: 50,
            ..base
        })
        .unwrap();
        assert_eq!(dropped.reasons, vec![ClientBoundReason::Dropped]);
        assert_eq!(
            dropped.short(),
            "client dropped 5.0% at the in-flight bound"
        );
        let cpu = assess(&ClientFigures {
            cpu_share: Some(0.97),
            ..base
        })
        .unwrap();
        assert_eq!(cpu.reasons, vec![ClientBoundReason::OutOfCpu]);
        assert_eq!(cpu.short(), "client out of CPU (97% of 2 cores)");
        let falling = assess(&ClientFigures {
            falling_behind: true,
            lag_max: ms(2500),
            ..base
        })
        .unwrap();
        assert_eq!(falling.short(), "client behind by 2.5 s");
    }

    #[test]
    fn drops_while_the_server_held_the_requests_are_the_targets() {
        let drops = ClientFigures {
            arrivals: 1000,
            dropped: 400,
            cores: 2,
            service_ms: 290.0,
            ..ClientFigures::default()
        };
        // The server's queue held each request for nearly all of its time out: saturated.
        let held = ClientFigures {
            server_ms: Some(284.0),
            ..drops
        };
        assert_eq!(assess(&held), None);
        let s = saturated(&held).expect("saturated");
        assert!((s.dropped_share - 0.4).abs() < 1e-12);
        assert_eq!(
            s.long(),
            "target saturated: 40.0% dropped at the in-flight bound, the server held each \
             request 284 ms of its 290 ms — the target is the bottleneck, not this machine"
        );
        // The client (its transport) held most of the time: the drops are the client's.
        let client = ClientFigures {
            server_ms: Some(9.0),
            service_ms: 21.0,
            ..drops
        };
        assert_eq!(saturated(&client), None);
        assert_eq!(
            assess(&client).unwrap().reasons,
            vec![ClientBoundReason::Dropped]
        );
        // A server that does not say cannot be told apart: the drops count against the client.
        assert_eq!(saturated(&drops), None);
        assert!(assess(&drops).is_some());
        // Other criteria still flag a saturated tenant's client when they hold.
        let late_too = assess(&ClientFigures {
            behind: 50,
            lag_max: ms(40),
            ..held
        })
        .unwrap();
        assert_eq!(late_too.reasons, vec![ClientBoundReason::LateSends]);
        // Too few drops are not a trend either way.
        assert_eq!(saturated(&ClientFigures { dropped: 3, ..held }), None);
    }

    #[test]
    fn only_a_lag_that_keeps_growing_is_falling_behind() {
        let mut t = LagTrend::default();
        assert!(!t.push(ms(11)));
        assert!(!t.push(ms(20)));
        assert!(t.push(ms(35)));
        assert!(t.push(ms(60)));
        // Caught up a little: no longer falling behind.
        assert!(!t.push(ms(50)));
        // Growing, but under the threshold: scheduling noise.
        let mut quiet = LagTrend::default();
        for l in [1, 3, 6, 9] {
            assert!(!quiet.push(ms(l)));
        }
    }

    #[test]
    fn cpu_share_over_the_window_and_since_the_mark() {
        let mut m = CpuMeter::new(Duration::from_secs(1));
        m.cores = 2;
        let t0 = Instant::now();
        m.push(t0, Duration::ZERO);
        m.mark();
        // One core busy for 2 s, then both for 1 s.
        m.push(t0 + ms(1000), ms(1000));
        m.push(t0 + ms(2000), ms(2000));
        m.push(t0 + ms(3000), ms(4000));
        assert!((m.window_share().unwrap() - 1.0).abs() < 1e-9);
        assert!((m.measured_share().unwrap() - 4.0 / 6.0).abs() < 1e-9);
        assert!(process_cpu_time().is_some() || !cfg!(target_os = "linux"));
    }
}
