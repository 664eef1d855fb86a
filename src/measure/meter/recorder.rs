//! The recording side of a tenant's meter, for load-generator tasks (see the module above).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::measure::client::CLIENT_LAG;
use crate::measure::histogram::LatencyHistogram;
use crate::measure::window::Interval;

#[derive(Debug, Default)]
pub(super) struct Live {
    /// Records of requests sent in the measured period (or before one began): window and totals.
    pub(super) interval: Interval,
    /// Records of requests sent before the measured period began that resolved after: they belong
    /// in the live window but never in the run's totals (DESIGN §4, warm-up).
    pub(super) before: Interval,
    /// How late each request of the measured period was sent, from its intended time: kept apart
    /// from the interval because only the run's totals need it, not every slot of the window.
    pub(super) lateness: LatencyHistogram<u32>,
    pub(super) in_flight: u32,
    /// When the measured period began; `None` while no period has begun.
    pub(super) measure_from: Option<Instant>,
    /// The first message seen for each error code, over the whole run: what the server said is
    /// what the user can act on, and the first one is where the trouble began.
    pub(super) first_messages: BTreeMap<String, String>,
}

impl Live {
    /// The interval a record of a request sent (or, for a drop, arriving) at `at` belongs in.
    pub(super) fn bucket(&mut self, at: Instant) -> &mut Interval {
        if self.measure_from.is_some_and(|from| at < from) {
            &mut self.before
        } else {
            &mut self.interval
        }
    }
}

/// The recording side of a [`TenantMeter`], for load-generator tasks.
#[derive(Debug, Clone)]
pub struct TenantRecorder {
    pub(super) live: Arc<Mutex<Live>>,
    pub(super) sla_latency: Duration,
}

impl TenantRecorder {
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Live) -> R) -> R {
        // A panic elsewhere while holding this lock cannot leave the counters in a state worse
        // than "one record missing", so a poisoned lock is used as is.
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut live)
    }

    /// A request went out at `sent_at`. Every `record_ok`/`record_error` must follow one
    /// `record_sent` and carry the same `sent_at`, which decides the period it counts in.
    pub fn record_sent(&self, sent_at: Instant) {
        self.with(|l| {
            l.bucket(sent_at).sent += 1;
            l.in_flight = l.in_flight.saturating_add(1);
        });
    }

    /// The request sent at `sent_at` went out later than its intended send time.
    pub fn record_late(&self, sent_at: Instant) {
        self.with(|l| l.bucket(sent_at).late += 1);
    }

    /// The request sent at `sent_at` went out `lateness` after its intended send time (for a
    /// closed loop, after its predecessor's response); beyond `late_after` it also counts as late.
    pub fn record_lateness(&self, sent_at: Instant, lateness: Duration, late_after: Duration) {
        let late = lateness > late_after;
        self.with(|l| {
            let measured = l.measure_from.is_none_or(|from| sent_at >= from);
            let i = l.bucket(sent_at);
            i.late += u64::from(late);
            if measured {
                l.lateness.record(lateness);
            }
        });
    }

    /// A successful completion of the request sent at `sent_at`: latency from the intended send
    /// time and from the actual send.
    pub fn record_ok(
        &self,
        sent_at: Instant,
        intended_latency: Duration,
        service_latency: Duration,
    ) {
        let within = intended_latency <= self.sla_latency;
        self.with(|l| {
            let i = l.bucket(sent_at);
            i.latency.record(intended_latency);
            i.service.record(service_latency);
            i.ok += 1;
            i.ok_within_sla += u64::from(within);
            l.in_flight = l.in_flight.saturating_sub(1);
        });
    }

    /// A failed request sent at `sent_at` (a deadline expiry is an error too), by status name.
    pub fn record_error(&self, sent_at: Instant, code: &str) {
        self.with(|l| {
            l.bucket(sent_at).count_error(code);
            l.in_flight = l.in_flight.saturating_sub(1);
        });
    }

    /// As [`Self::record_error`], keeping `message()` when it is the first error of this code. The
    /// message is built only then, so a storm of one error costs nothing more than counting it.
    pub fn record_error_message(
        &self,
        sent_at: Instant,
        code: &str,
        message: impl FnOnce() -> String,
    ) {
        self.with(|l| {
            l.bucket(sent_at).count_error(code);
            l.in_flight = l.in_flight.saturating_sub(1);
            if !l.first_messages.contains_key(code) {
                l.first_messages
                    .insert(code.to_string(), bounded(message()));
            }
        });
    }

    /// The generator dispatched the arrival intended for `intended` `lag` after that time
    /// (for a closed loop, after its predecessor's response). What happens to it next is recorded as a send or a drop.
    pub fn record_dispatch(&self, intended: Instant, lag: Duration) {
        let behind = lag > CLIENT_LAG;
        self.with(|l| {
            let i = l.bucket(intended);
            i.arrivals += 1;
            i.behind += u64::from(behind);
            i.lag_max = i.lag_max.max(lag);
        });
    }

    /// An arrival at `arrived_at` that found the in-flight bound reached and was never sent.
    pub fn record_drop(&self, arrived_at: Instant) {
        self.with(|l| l.bucket(arrived_at).dropped += 1);
    }
}

/// Longest error message kept: a server may send a whole stack trace, and every snapshot carries it.
const MAX_MESSAGE_CHARS: usize = 500;

fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    }
}
