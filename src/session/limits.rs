//! The largest values a session, the config file or a flag may ask for.
//!
//! Each bound is far above any sensible run and far below what breaks: a clock that overflows
//! adding a warm-up to `Instant::now()`, a gRPC timeout the transport rejects, or set-up memory
//! that grows with the tenant count. Refusing at parse time names the file, line and key at once
//! instead of failing (or panicking) minutes into a run. README's session section lists them.

use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A headless run's measured duration (`duration`, `--duration`).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The warm-up before measuring (`warmup`, `--warmup`).
pub const MAX_WARMUP: Duration = DAY;
/// The sliding window for percentiles and attainment (`window`, `perseus probe --window`).
pub const MAX_WINDOW: Duration = HOUR;
/// The engine's tick (`tick` in a session or the config file).
pub const MAX_TICK: Duration = Duration::from_secs(60);
/// One request's deadline (a tenant's `deadline`).
pub const MAX_DEADLINE: Duration = HOUR;
/// The mean length of a burst and of the quiet between bursts (`burst.on`, `burst.off`).
pub const MAX_BURST_PHASE: Duration = HOUR;
/// Tenants in one session: each holds its own load generator, histograms and connections.
pub const MAX_TENANTS: usize = 64;
