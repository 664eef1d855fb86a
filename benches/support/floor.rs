//! What the machine itself allows: the send-time (or delivery) error of an ideal clock thread.
//!
//! A thread that never sleeps still loses its CPU now and then: to the kernel, to other processes,
//! and on a virtual machine to the hypervisor (steal time). Anything due while it is off the CPU is
//! late by the rest of that gap, however good the code. This spins on the clock for a while,
//! records every gap, and replays a constant schedule at a given rate against them, so a benchmark
//! can print its own error next to the floor measured in the same run.

use std::time::{Duration, Instant};

/// Gaps longer than this count as "the thread was off the CPU"; shorter ones are the loop itself.
const GAP_NS: u64 = 2_000;

pub struct ClockGaps {
    span_ns: u64,
    /// (start, end) of every gap, ns from the start of the measurement, in order.
    gaps: Vec<(u64, u64)>,
}

impl ClockGaps {
    /// Spins on `Instant::now()` for `span` on the calling thread.
    pub fn measure(span: Duration) -> ClockGaps {
        let start = Instant::now();
        let span_ns = span.as_nanos() as u64;
        let mut gaps = Vec::new();
        let mut last = 0u64;
        loop {
            let now = start.elapsed().as_nanos() as u64;
            if now - last > GAP_NS {
                gaps.push((last, now));
            }
            last = now;
            if now >= span_ns {
                break;
            }
            std::hint::spin_loop();
        }
        ClockGaps { span_ns, gaps }
    }

    /// Share of the span the thread was off the CPU.
    pub fn lost_fraction(&self) -> f64 {
        self.gaps.iter().map(|(a, b)| b - a).sum::<u64>() as f64 / self.span_ns as f64
    }

    /// Quantiles (µs) of the error an ideal clock would see sending at `rate` per second: an event
    /// due inside a gap goes out when the gap ends.
    pub fn ideal_error_us(&self, rate: f64, quantiles: &[f64]) -> Vec<u64> {
        let step = (1e9 / rate) as u64;
        let mut errors = Vec::with_capacity((self.span_ns / step) as usize + 1);
        let mut g = 0;
        let mut due = 0;
        while due < self.span_ns {
            while g < self.gaps.len() && self.gaps[g].1 <= due {
                g += 1;
            }
            let late = match self.gaps.get(g) {
                Some(&(a, b)) if a < due => b - due,
                _ => 0,
            };
            errors.push(late / 1_000);
            due += step;
        }
        errors.sort_unstable();
        quantiles
            .iter()
            .map(|q| {
                let i = ((errors.len() as f64 * q) as usize).min(errors.len().saturating_sub(1));
                errors.get(i).copied().unwrap_or(0)
            })
            .collect()
    }
}

/// CPU time the hypervisor took from this virtual machine so far (all CPUs, ms), from the `steal`
/// column of `/proc/stat`; `None` where there is no such figure.
pub fn steal_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?;
    let ticks: u64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    // USER_HZ is 100 on every Linux configuration that matters here.
    Some(ticks * 10)
}

/// Steal since an earlier [`steal_ms`] reading.
pub fn steal_since(start: Option<u64>) -> Option<u64> {
    steal_ms()
        .zip(start)
        .map(|(now, then)| now.saturating_sub(then))
}

/// [`ClockGaps::measure`] on a blocking thread, with the steal during it.
pub async fn measure_floor(span: Duration) -> (ClockGaps, Option<u64>) {
    let start = steal_ms();
    let gaps = tokio::task::spawn_blocking(move || ClockGaps::measure(span))
        .await
        .expect("the floor measurement does not panic");
    (gaps, steal_since(start))
}
