//! Per-tenant drivers and the one clock that schedules every open-loop tenant.
//!
//! Open-loop arrivals are timed by a dedicated OS thread rather than tokio's timer, whose 1 ms
//! granularity alone would exceed the send-time error budget (p99 ≤ 200 µs). The thread sleeps until
//! the earliest due arrival with its timer slack tightened (see [`crate::timing`]). It then issues
//! the request itself — the first poll of the send runs on the clock thread, up to handing the request
//! to the gRPC connection — and only the wait for the response moves to the tokio runtime, when the
//! response (or the deadline) wakes it. Spawning first would add a runtime worker's wake-up to every
//! send, and on a busy small machine that wake-up, not the clock, is what makes sends late. Latency is measured from the *intended* send time, so a
//! late client never hides queueing (no coordinated omission). Closed-loop tenants are tokio tasks
//! that keep N requests in flight.
//!
//! The parts: [`shared`] holds what one tenant's send path shares between the clock thread and the
//! request tasks, [`send`] sends one arrival (or queues it behind the in-flight bound), [`clock`] is
//! the open-loop clock thread, and [`closed`] keeps a closed-loop tenant's requests in flight.

mod clock;
mod closed;
mod send;
mod shared;

use std::time::Duration;

pub use clock::Clock;
pub use closed::ClosedLoop;
pub use send::send_one;
pub use shared::{ByteBudget, MAX_RUN_IN_FLIGHT_BYTES, MAX_TENANT_IN_FLIGHT_BYTES, TenantShared};

/// A send later than this after its intended time counts as `late`.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);
