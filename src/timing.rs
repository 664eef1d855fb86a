//! Waiting for an instant more precisely than an OS sleep allows: the load generator's clock thread
//! (arrivals) uses the timer slack and the spin budget, the emulator's (completions) the timer slack
//! and the learned wake margin — its spin yields, for the reason given there.
//!
//! Two things make a plain sleep miss by far more than the send-time budget on a small Linux machine:
//! - *Timer slack*: the kernel may fire a sleeping thread's timer up to 50 µs late (the default) to
//!   batch wake-ups. A clock thread asks for 1 ns instead.
//! - *Yielding while spinning*: under EEVDF (Linux ≥ 6.6) `sched_yield` moves the caller's deadline a
//!   whole slice into the future, so a spin loop that yields can lose its core for a millisecond or
//!   more whenever another thread is runnable there. The last stretch before an instant is therefore
//!   spun without yielding.
//!
//! A spin that never yields takes a core from the work it is timing, so it runs on a budget: a share
//! of one core per 100 ms. Past it the thread sleeps all the way to the instant, which with the tight
//! slack is late only by the wake-up. At a few hundred events a second the budget never binds; at
//! thousands it keeps the clock from starving the server and the client it runs next to.
//!
//! Even with 1 ns of slack a sleep ends late by the machine's wake-up latency, which no constant
//! fits: a virtual machine wakes a sleeper far later than bare metal does. [`WakeMargin`] learns it
//! from the thread's own sleeps, so the spin before an instant is as long as this machine needs and
//! no longer.

use std::time::{Duration, Instant};

/// Asks the kernel to fire this thread's timers on time rather than up to 50 µs late. Best effort:
/// where it is not available the spin margins still absorb the default slack.
pub(crate) fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // One nanosecond is the smallest slack the kernel accepts (zero means "reset to default").
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    }
}

/// How much of one core a clock thread may spend spinning, accounted per window.
pub(crate) struct SpinBudget {
    per_window: Duration,
    window_start: Instant,
    spent: Duration,
}

const BUDGET_WINDOW: Duration = Duration::from_millis(100);

impl SpinBudget {
    /// `share` of one core, between 0 and 1.
    pub(crate) fn new(share: f64) -> SpinBudget {
        SpinBudget {
            per_window: BUDGET_WINDOW.mul_f64(share.clamp(0.0, 1.0)),
            window_start: Instant::now(),
            spent: Duration::ZERO,
        }
    }

    /// Spins until `deadline` or until `keep_waiting` says stop, without giving up the core, if the
    /// budget allows; returns false without waiting when it does not (the caller sleeps instead).
    pub(crate) fn spin_until(
        &mut self,
        deadline: Instant,
        mut keep_waiting: impl FnMut() -> bool,
    ) -> bool {
        let start = Instant::now();
        if start.duration_since(self.window_start) >= BUDGET_WINDOW {
            self.window_start = start;
            self.spent = Duration::ZERO;
        }
        if self.spent >= self.per_window {
            return false;
        }
        let mut now = start;
        while now < deadline && keep_waiting() {
            std::hint::spin_loop();
            now = Instant::now();
        }
        self.spent += now.duration_since(start);
        true
    }
}

/// How early a clock thread must stop sleeping to be awake at an instant: a recent high of how late
/// its timed sleeps woke, with headroom. Each late wake-up raises it at once; it then decays by a
/// small step per sleep, so one wake-up delayed by the hypervisor costs a few dozen longer spins,
/// not a permanently longer one. Bounded on both sides: a floor, because an occasional wake-up
/// is always later than the recent ones; a ceiling, because a multi-millisecond stall is not
/// something spinning can cover.
pub(crate) struct WakeMargin {
    margin_ns: f64,
    floor_ns: f64,
    ceiling_ns: f64,
}

/// Margin over the lateness just seen.
const WAKE_HEADROOM: f64 = 1.25;
/// Per sleep: after a spike the margin halves in about 35 sleeps.
const WAKE_DECAY: f64 = 0.98;

impl WakeMargin {
    /// Starts at the ceiling: until it has seen this machine wake, spinning too long is the safe error.
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> WakeMargin {
        let floor_ns = floor.as_nanos() as f64;
        let ceiling_ns = (ceiling.as_nanos() as f64).max(floor_ns);
        WakeMargin {
            margin_ns: ceiling_ns,
            floor_ns,
            ceiling_ns,
        }
    }

    pub(crate) fn margin(&self) -> Duration {
        Duration::from_nanos(self.margin_ns as u64)
    }

    /// Learns from a sleep that was to end at `target` and ended at `woke`. A sleep cut short (an
    /// unpark, a spurious wake-up) says nothing about the timer and is ignored.
    pub(crate) fn record(&mut self, target: Instant, woke: Instant) {
        let Some(late) = woke.checked_duration_since(target) else {
            return;
        };
        let wanted = late.as_nanos() as f64 * WAKE_HEADROOM;
        self.margin_ns = (self.margin_ns * WAKE_DECAY)
            .max(wanted)
            .clamp(self.floor_ns, self.ceiling_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wake_margin_covers_late_wakeups_then_decays_to_the_floor() {
        let floor = Duration::from_micros(20);
        let ceiling = Duration::from_micros(500);
        let mut margin = WakeMargin::new(floor, ceiling);
        assert_eq!(
            margin.margin(),
            ceiling,
            "unlearned, it errs on the long side"
        );

        let target = Instant::now();
        // Prompt wake-ups bring it down to the floor, never below.
        for _ in 0..1_000 {
            margin.record(target, target + Duration::from_micros(2));
        }
        assert_eq!(margin.margin(), floor);

        // One late wake-up is covered at once, with headroom.
        margin.record(target, target + Duration::from_micros(80));
        assert_eq!(margin.margin(), Duration::from_micros(100));
        // A stall beyond the ceiling is not chased.
        margin.record(target, target + Duration::from_millis(5));
        assert_eq!(margin.margin(), ceiling);
        // A sleep cut short teaches nothing.
        margin.record(target + Duration::from_millis(1), target);
        assert_eq!(margin.margin(), ceiling);
        // And the spike fades: a few dozen prompt sleeps later it is well down again.
        for _ in 0..100 {
            margin.record(target, target + Duration::from_micros(2));
        }
        assert!(margin.margin() < Duration::from_micros(100));
    }

    #[test]
    fn spinning_reaches_the_deadline_and_is_charged() {
        let mut budget = SpinBudget::new(1.0);
        let before = Instant::now();
        let deadline = before + Duration::from_micros(300);
        assert!(budget.spin_until(deadline, || true));
        assert!(Instant::now() >= deadline);
        // Charged for the spin: something, and no more than the whole call took.
        assert!(budget.spent > Duration::ZERO);
        assert!(budget.spent <= before.elapsed());
    }

    #[test]
    fn an_exhausted_budget_refuses_until_the_next_window() {
        let mut budget = SpinBudget::new(0.001); // 100 µs per 100 ms
        assert!(budget.spin_until(Instant::now() + Duration::from_micros(200), || true));
        let spent = budget.spent;
        let mut polled = false;
        assert!(
            !budget.spin_until(Instant::now() + Duration::from_millis(5), || {
                polled = true;
                true
            })
        );
        assert!(!polled, "a refusal must not start spinning");
        assert_eq!(budget.spent, spent, "nor be charged");
        budget.window_start = Instant::now()
            .checked_sub(BUDGET_WINDOW)
            .expect("the monotonic clock has run for 100 ms");
        assert!(budget.spin_until(Instant::now() + Duration::from_micros(10), || true));
    }

    #[test]
    fn keep_waiting_stops_the_spin_early() {
        let mut budget = SpinBudget::new(1.0);
        let mut polls = 0;
        assert!(
            budget.spin_until(Instant::now() + Duration::from_secs(60), || {
                polls += 1;
                polls < 3
            })
        );
        assert_eq!(polls, 3, "the spin ended when told to, not at the deadline");
    }
}
