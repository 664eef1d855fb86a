//! Per-tenant drivers and the one clock that schedules every open-loop tenant.
//!
//! Open-loop arrivals are not timed by tokio's timer, whose 1 ms granularity alone would exceed the
//! send-time error budget (p99 ≤ 200 µs). On Linux a nanosecond timer on the runtime's I/O driver
//! wakes the clock's task at the earliest due arrival, and the worker it wakes sends it (see
//! [`clock`]); elsewhere a thread sleeps to it with its timer slack tightened (see
//! [`crate::timing`]) and polls the send itself up to the gRPC connection. Either way an arrival
//! costs one wake-up. Latency is measured from the *intended* send time, so a late client never
//! hides queueing (no coordinated omission). Closed-loop tenants are tokio tasks
//! that keep N requests in flight.
//!
//! The parts: [`shared`] holds what one tenant's send path shares between the clock and the
//! request tasks, [`send`] sends one arrival (or queues it behind the in-flight bound), [`clock`] is
//! the open-loop clock, [`parked`] holds the sends a clock thread has started and not yet handed
//! to the runtime, and [`closed`] keeps a closed-loop tenant's requests in flight.

mod clock;
mod closed;
mod parked;
mod send;
mod shared;

use std::time::Duration;

pub use clock::Clock;
pub use closed::ClosedLoop;
pub use send::send_one;
pub use shared::{ByteBudget, MAX_RUN_IN_FLIGHT_BYTES, MAX_TENANT_IN_FLIGHT_BYTES, TenantShared};

/// A send later than this after its intended time counts as `late`.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);
