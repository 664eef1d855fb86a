//! A timer that fires to the nanosecond through the async runtime's own I/O driver: a Linux
//! `timerfd`, which becomes readable at the instant it is armed for.
//!
//! tokio's own timer rounds to the millisecond, which is why the clocks had threads of their own.
//! A thread that sleeps to an instant and then wakes a task costs two wake-ups per event (its own
//! and the worker's) and a message between them; a timerfd wakes the worker asleep in the I/O
//! driver directly, and arming it is one system call that wakes nobody. Its expiry is a kernel
//! high-resolution timer, so it is not subject to a thread's timer slack.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::unix::AsyncFd;

const NANOS_PER_S: u64 = 1_000_000_000;

/// A one-shot timer armed in nanoseconds since an epoch ([`Instant`]), awaited on the runtime.
pub(crate) struct PreciseTimer {
    fd: AsyncFd<OwnedFd>,
    epoch: Instant,
    /// `CLOCK_MONOTONIC` (the clock [`Instant`] reads on Linux) at the epoch, in ns.
    origin_ns: u128,
}

impl PreciseTimer {
    /// A disarmed timer whose instants count from `epoch`. Needs the runtime's context (the timer
    /// is registered with its I/O driver).
    pub(crate) fn new(epoch: Instant) -> io::Result<PreciseTimer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let now_ns = now.tv_sec as u128 * u128::from(NANOS_PER_S) + now.tv_nsec as u128;
        // `AsyncFd::new` is deprecated because a generic inner type's descriptor could change under
        // it; an `OwnedFd`'s cannot, and its replacement is `unsafe`, which this crate forbids.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(PreciseTimer {
            fd,
            epoch,
            origin_ns: now_ns.saturating_sub(epoch.elapsed().as_nanos()),
        })
    }

    /// The instant that [`PreciseTimer::arm_at`] counts from.
    pub(crate) fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Arms the timer for `at_ns` after the epoch, replacing any earlier setting; an instant that
    /// has passed fires at once, and `u64::MAX` disarms it.
    pub(crate) fn arm_at(&self, at_ns: u64) -> io::Result<()> {
        let it_value = if at_ns == u64::MAX {
            Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        } else {
            // An absolute zero would disarm the timer; the origin is never zero in practice.
            let abs = (self.origin_ns + u128::from(at_ns)).max(1);
            Timespec {
                tv_sec: i64::try_from(abs / u128::from(NANOS_PER_S)).unwrap_or(i64::MAX),
                tv_nsec: (abs % u128::from(NANOS_PER_S)) as _,
            }
        };
        let setting = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value,
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &setting)?;
        Ok(())
    }

    /// Resolves once the timer has fired since it was last armed (or last heard).
    pub(crate) async fn fired(&self) -> io::Result<()> {
        loop {
            let mut ready = self.fd.readable().await?;
            // Re-arming resets what a read would return, so a readiness seen before it can be
            // stale: the read then finds nothing and the wait goes on.
            match ready.try_io(|fd| {
                let mut expirations = [0u8; 8];
                rustix::io::read(fd.get_ref(), &mut expirations)
                    .map(drop)
                    .map_err(io::Error::from)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn it_fires_at_the_instant_it_was_armed_for_and_not_before() {
        runtime().block_on(async {
            let epoch = Instant::now();
            let timer = PreciseTimer::new(epoch).expect("timerfd");
            let at = Duration::from_millis(30);
            timer.arm_at(at.as_nanos() as u64).expect("arms");
            timer.fired().await.expect("fires");
            assert!(epoch.elapsed() >= at, "fired early: {:?}", epoch.elapsed());
        });
    }

    #[test]
    fn re_arming_replaces_the_setting_and_max_disarms() {
        runtime().block_on(async {
            let epoch = Instant::now();
            let timer = PreciseTimer::new(epoch).expect("timerfd");
            // Armed far out, then brought forward: the earlier setting is the one that fires.
            timer.arm_at(3_600 * NANOS_PER_S).expect("arms");
            timer.arm_at(20_000_000).expect("re-arms");
            tokio::time::timeout(Duration::from_secs(10), timer.fired())
                .await
                .expect("the earlier setting fires")
                .expect("reads");
            // Armed, then disarmed: nothing fires.
            timer.arm_at(10_000_000).expect("arms");
            timer.arm_at(u64::MAX).expect("disarms");
            assert!(
                tokio::time::timeout(Duration::from_millis(100), timer.fired())
                    .await
                    .is_err(),
                "a disarmed timer fired"
            );
            // An instant already past fires at once.
            timer.arm_at(0).expect("arms in the past");
            tokio::time::timeout(Duration::from_secs(10), timer.fired())
                .await
                .expect("a past instant fires")
                .expect("reads");
        });
    }
}
