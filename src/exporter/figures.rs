//! What the exporter serves, kept from the snapshots it has seen.
//!
//! A snapshot carries each tenant's run totals, which restart when the measured period begins and
//! belong to a tenant id that ends when the tenant is removed. Prometheus counters must only grow
//! and survive both, so every snapshot adds the *increase* of each tenant's totals since the one
//! before to counters kept per series (target, tenant label); a snapshot missed on the watch
//! channel loses nothing, since the next one's totals include it. Gauges are the latest
//! snapshot's figures, for the tenants it still has.

use std::collections::BTreeMap;

use crate::vocab::snapshot::{
    ConnState, LATENCY_BUCKET_BOUNDS_US, LatencyBuckets, Phase, Snapshot, TenantId, TenantView,
    Totals,
};

/// The target label of a session with a single `[target]`.
pub const DEFAULT_TARGET: &str = "default";

/// Which series a tenant's figures belong to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    pub target: String,
    /// The model, or `model#id` when another tenant already holds that name.
    pub tenant: String,
    pub model: String,
}

/// A Prometheus histogram's state: per-bucket counts (not yet cumulative) and the sum, seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum_s: f64,
}

impl Histogram {
    /// Bucket upper bounds in seconds, `+Inf` last, each with its own count (the encoder makes
    /// them cumulative).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let bounds = LATENCY_BUCKET_BOUNDS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY));
        bounds
            .enumerate()
            .map(|(i, le)| (le, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }

    /// As [`buckets`](Self::buckets), with cumulative counts (`le` semantics).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.buckets()
            .into_iter()
            .map(|(le, n)| {
                total += n;
                (le, total)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds what `now` holds beyond `before` (the same series, later).
    fn add_increase(&mut self, before: &LatencyBuckets, now: &LatencyBuckets) {
        if self.counts.len() < now.counts.len() {
            self.counts.resize(now.counts.len(), 0);
        }
        for (i, n) in now.counts.iter().enumerate() {
            let was = before.counts.get(i).copied().unwrap_or(0);
            self.counts[i] += n.saturating_sub(was);
        }
        self.sum_s += (now.sum_ms - before.sum_ms).max(0.0) / 1000.0;
    }
}

/// One tenant series' counters, over every tenant that has carried its label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub sent: u64,
    pub ok: u64,
    pub dropped: u64,
    pub late: u64,
    pub within_sla: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    /// From the intended send time.
    pub latency: Histogram,
    /// From the actual send time.
    pub service_latency: Histogram,
}

impl Counters {
    fn add_increase(&mut self, before: &Totals, now: &Totals) {
        self.sent += now.sent.saturating_sub(before.sent);
        self.ok += now.ok.saturating_sub(before.ok);
        self.dropped += now.dropped.saturating_sub(before.dropped);
        self.late += now.late.saturating_sub(before.late);
        self.within_sla += now.ok_within_sla.saturating_sub(before.ok_within_sla);
        for (code, n) in &now.errors_by_code {
            let was = before.errors_by_code.get(code).copied().unwrap_or(0);
            if *n > was {
                *self.errors_by_code.entry(code.clone()).or_default() += n - was;
            }
        }
        self.latency
            .add_increase(&before.latency_buckets, &now.latency_buckets);
        self.service_latency.add_increase(
            &before.service_latency_buckets,
            &now.service_latency_buckets,
        );
    }
}

/// A live tenant's window figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantGauges {
    pub attainment: Option<f64>,
    pub goodput_per_s: f64,
    pub in_flight: u32,
    pub sla_latency_s: f64,
    /// The generator could not keep this tenant's schedule over the window.
    pub client_bound: bool,
    /// The target's server held the requests whose drops filled the in-flight bound.
    pub saturated: bool,
}

/// A target's latest figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetGauges {
    pub connected: bool,
    pub gpu_utilization: Option<f64>,
    pub gpu_sm_activity: Option<f64>,
    pub gpu_memory_used_bytes: Option<f64>,
    pub gpu_memory_total_bytes: Option<f64>,
    pub gpu_power_w: Option<f64>,
    pub usd_per_hour: Option<f64>,
    pub measured_s: f64,
}

/// A tenant id's series and the totals it last reported.
#[derive(Debug, Clone)]
struct Seen {
    key: SeriesKey,
    last: Totals,
}

/// Everything the exporter serves.
#[derive(Debug, Default)]
pub struct Figures {
    seen: BTreeMap<(String, TenantId), Seen>,
    pub counters: BTreeMap<SeriesKey, Counters>,
    pub tenants: BTreeMap<SeriesKey, TenantGauges>,
    pub targets: BTreeMap<String, TargetGauges>,
}

impl Figures {
    /// Takes in one snapshot of the single target of a run, labelled [`DEFAULT_TARGET`].
    pub fn update(&mut self, snap: &Snapshot) {
        self.update_target(DEFAULT_TARGET, snap);
    }

    /// Takes in one snapshot of the target labelled `target`, leaving the other targets' series
    /// as they are. Counters move only in the measured period, as the run's totals do, so that a
    /// finished run's counters equal its JSON figures.
    pub fn update_target(&mut self, target: &str, snap: &Snapshot) {
        self.seen
            .retain(|(t, id), _| t != target || snap.tenants.iter().any(|tenant| tenant.id == *id));
        self.tenants.retain(|k, _| k.target != target);
        let counting = matches!(snap.phase, Phase::Measuring | Phase::Finished);
        for t in &snap.tenants {
            let key = self.key_for(target, t);
            if counting {
                self.count(target, t, key.clone());
            }
            self.tenants.insert(key, tenant_gauges(t));
        }
        self.targets.insert(target.to_string(), target_gauges(snap));
    }

    /// The series of a tenant id: fixed when the id is first seen, so a label never moves to
    /// another tenant while both exist.
    fn key_for(&mut self, target: &str, t: &TenantView) -> SeriesKey {
        if let Some(seen) = self.seen.get(&(target.to_string(), t.id)) {
            return seen.key.clone();
        }
        let taken = |name: &str| {
            self.seen
                .values()
                .any(|s| s.key.target == target && s.key.tenant == name)
        };
        let tenant = if taken(&t.model) {
            format!("{}#{}", t.model, t.id)
        } else {
            t.model.clone()
        };
        let key = SeriesKey {
            target: target.to_string(),
            tenant,
            model: t.model.clone(),
        };
        self.seen.insert(
            (target.to_string(), t.id),
            Seen {
                key: key.clone(),
                last: Totals::default(),
            },
        );
        key
    }

    fn count(&mut self, target: &str, t: &TenantView, key: SeriesKey) {
        let Some(seen) = self.seen.get_mut(&(target.to_string(), t.id)) else {
            return;
        };
        // Totals that went back started afresh (a new measured period): count them from zero.
        if t.totals.sent < seen.last.sent || t.totals.ok < seen.last.ok {
            seen.last = Totals::default();
        }
        self.counters
            .entry(key)
            .or_default()
            .add_increase(&seen.last, &t.totals);
        seen.last = t.totals.clone();
    }
}

fn tenant_gauges(t: &TenantView) -> TenantGauges {
    TenantGauges {
        attainment: t.window.attainment,
        goodput_per_s: t.window.goodput_per_s,
        in_flight: t.window.in_flight,
        sla_latency_s: t.sla.latency_ms / 1000.0,
        client_bound: t.window.client_bound.is_some(),
        saturated: t.window.saturated.is_some(),
    }
}

fn target_gauges(snap: &Snapshot) -> TargetGauges {
    let g = &snap.gpu;
    TargetGauges {
        connected: snap.connection.state == ConnState::Connected,
        gpu_utilization: g.utilization.map(|r| r.value),
        gpu_sm_activity: g.sm_activity.map(|r| r.value),
        gpu_memory_used_bytes: g.memory_used_bytes.map(|r| r.value),
        gpu_memory_total_bytes: g.memory_total_bytes.map(|r| r.value),
        gpu_power_w: g.power_w.map(|r| r.value),
        usd_per_hour: snap.cost.as_ref().map(|c| c.usd_per_hour),
        measured_s: snap.measured_s,
    }
}
