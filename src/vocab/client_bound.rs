//! Whether a run's figures measure the client machine rather than the target (DESIGN §4,
//! client-bound): the flag every output carries beside the figures it qualifies.

use serde::{Deserialize, Serialize};

/// Why a tenant's (or a run's) figures measure the client machine rather than the target
/// (DESIGN §4, client-bound). Carried with the figures that decided it, so every output can say
/// how far behind the generator was rather than only that it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientBound {
    /// Every criterion that held, in [`ClientBoundReason`] order.
    pub reasons: Vec<ClientBoundReason>,
    /// How far behind its ideal clock the generator dispatched an arrival, at worst, in ms.
    pub behind_ms: f64,
    /// Share of arrivals dispatched more than the lag threshold behind their intended time.
    pub late_share: f64,
    /// Share of arrivals dropped at the in-flight bound (count or bytes).
    pub dropped_share: f64,
    /// Process CPU time over the span divided by the cores the process may use, when known.
    pub cpu_share: Option<f64>,
    /// The cores the process may use.
    pub cores: u32,
}

/// One criterion of [`ClientBound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientBoundReason {
    /// Over 1% of arrivals went out more than the lag threshold behind schedule.
    LateSends,
    /// The generator's lag grew tick after tick: it is not catching up.
    FallingBehind,
    /// Over 1% of arrivals were dropped at the in-flight bound.
    Dropped,
    /// The process used nearly all the CPU it may use.
    OutOfCpu,
}

impl ClientBound {
    /// A short statement for narrow places (80 columns, a progress line).
    pub fn short(&self) -> String {
        let lag = self.reasons.iter().any(|r| {
            matches!(
                r,
                ClientBoundReason::LateSends | ClientBoundReason::FallingBehind
            )
        });
        if lag {
            return format!("client behind by {}", duration_text(self.behind_ms));
        }
        if self.reasons.contains(&ClientBoundReason::OutOfCpu) {
            let pct = self.cpu_share.unwrap_or(1.0) * 100.0;
            return format!("client out of CPU ({pct:.0}% of {} cores)", self.cores);
        }
        format!(
            "client dropped {:.1}% at the in-flight bound",
            self.dropped_share * 100.0
        )
    }

    /// The short statement and what it means for the figures.
    pub fn long(&self) -> String {
        format!(
            "{} — these latencies measure this machine, not the GPU",
            self.short()
        )
    }

    /// Every reason by name, for logs and tables.
    pub fn reason_names(&self) -> String {
        let names: Vec<&str> = self.reasons.iter().map(|r| r.name()).collect();
        names.join(", ")
    }

    /// The union of several flags: every reason, the worst figures.
    pub fn merge<'a>(flags: impl IntoIterator<Item = &'a ClientBound>) -> Option<ClientBound> {
        let mut out: Option<ClientBound> = None;
        for f in flags {
            let o = out.get_or_insert_with(|| ClientBound {
                cores: f.cores,
                ..ClientBound::default()
            });
            o.reasons.extend(f.reasons.iter().copied());
            o.behind_ms = o.behind_ms.max(f.behind_ms);
            o.late_share = o.late_share.max(f.late_share);
            o.dropped_share = o.dropped_share.max(f.dropped_share);
            o.cpu_share = match (o.cpu_share, f.cpu_share) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(o) = &mut out {
            o.reasons.sort();
            o.reasons.dedup();
        }
        out
    }
}

impl ClientBoundReason {
    pub fn name(self) -> &'static str {
        match self {
            ClientBoundReason::LateSends => "late sends",
            ClientBoundReason::FallingBehind => "falling behind",
            ClientBoundReason::Dropped => "drops at the in-flight bound",
            ClientBoundReason::OutOfCpu => "out of CPU",
        }
    }
}

/// A duration given in ms, in the unit that reads best: "850 µs", "12 ms", "3.4 s".
fn duration_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// Why a tenant's drops at the in-flight bound are the target's doing, not the client's: the
/// server itself held the requests in flight for most of the time they were out (its queue was
/// full), so the bound filled because the target could not keep up. Its latencies measure the
/// target's backlog, including the wait for a free slot that the backlog imposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Saturated {
    /// Share of arrivals dropped at the in-flight bound.
    pub dropped_share: f64,
    /// The server's own time per request (its statistics), in ms.
    pub server_ms: f64,
    /// The client's mean time per request from its actual send to the answer, in ms.
    pub service_ms: f64,
}

impl Saturated {
    /// A short statement for narrow places.
    pub fn short(&self) -> String {
        format!(
            "target saturated: {:.1}% dropped at the in-flight bound",
            self.dropped_share * 100.0
        )
    }

    /// Who held the requests, by how much.
    pub fn held(&self) -> String {
        format!(
            "the server held each request {} of its {}",
            duration_text(self.server_ms),
            duration_text(self.service_ms)
        )
    }

    /// The short statement and what it means for the figures.
    pub fn long(&self) -> String {
        format!(
            "{}, {} — the target is the bottleneck, not this machine",
            self.short(),
            self.held()
        )
    }
}

/// The run as a whole: is the load generator the bottleneck? Per-tenant flags are on
/// [`WindowStats`] and [`Totals`]; this is their union with the process-wide CPU criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClientView {
    /// Over the window.
    pub window: Option<ClientBound>,
    /// Over the measured period.
    pub totals: Option<ClientBound>,
    /// Process CPU over the window, as a share of the cores it may use, when known.
    pub cpu_share: Option<f64>,
    pub cores: u32,
}
