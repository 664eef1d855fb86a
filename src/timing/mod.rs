//! Waking on time without spinning: the load generator's clock (arrivals) and the emulator's
//! (completions) both sleep to their next instant. A clock thread wakes the tasks it serves through
//! a [`doorbell`]; on Linux the emulator's clock is a [`timer`] on the runtime instead, which wakes
//! the served task's worker itself.
//!
//! A plain sleep on Linux may end up to 50 µs late by default: the kernel's *timer slack* lets it
//! batch wake-ups. A clock thread asks for 1 ns instead, after which a sleep ends late only by the
//! machine's wake-up latency (tens of microseconds, more on a virtual machine under load).
//!
//! Neither clock spins. A spin buys a few more microseconds of accuracy at the price of a core,
//! and on a small machine that core is the one the server and the client need: the requests the
//! clock times then wait for CPU instead, later than any sleep would have made them. (A spin that
//! yields is worse still: under EEVDF, Linux ≥ 6.6, `sched_yield` pushes the caller's deadline a
//! whole slice out, so it can lose its core for a millisecond whenever another thread is runnable.)

pub(crate) mod doorbell;
#[cfg(target_os = "linux")]
pub(crate) mod timer;

/// Asks the kernel to fire this thread's timers on time rather than up to 50 µs late. Best effort:
/// where it is not available a sleep is late by the default slack as well.
pub(crate) fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        // One nanosecond is the smallest slack the kernel accepts (zero means "reset to default").
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_slack_is_tightened_for_the_calling_thread_only() {
        let before = rustix::thread::current_timer_slack().expect("prctl");
        let inside = std::thread::spawn(|| {
            super::tighten_timer_slack();
            rustix::thread::current_timer_slack().expect("prctl")
        })
        .join()
        .expect("the thread ran");
        assert_eq!(inside, 1);
        assert_eq!(
            rustix::thread::current_timer_slack().expect("prctl"),
            before,
            "other threads keep theirs"
        );
    }
}
