//! Headless output: summary table, JSON and CSV.
//!
//! All three are views of one [`RunResult`], built from the final snapshot so that the headless
//! report and the dashboard can never disagree about a figure.

mod capacity;
mod csv_rows;
mod fleet;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use capacity::{CapacityBlock, CapacityTenant};
use csv_rows::CsvRow;
pub use csv_rows::csv;
pub use fleet::{
    ConnectionBlock, FleetResult, SCHEMA_V2, TargetRun, fleet_csv, fleet_result, fleet_table,
};

use crate::vocab::quantiles::Quantiles;
use crate::vocab::snapshot::{
    ClientBound, CostView, PeakKind, Percentiles, Saturated, Snapshot, TargetKind,
};
use crate::vocab::spec::Load;

pub const SCHEMA: &str = "perseus.run.v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema: String,
    pub session: String,
    pub target: TargetBlock,
    pub duration_s: f64,
    pub tenants: Vec<TenantBlock>,
    pub gpu: Option<GpuBlock>,
    pub cost: Option<CostBlock>,
    /// How far the mix could grow, and the savings there (absent where no capacity was sought).
    #[serde(default)]
    pub capacity: Option<CapacityBlock>,
    /// Set when the load generator was the bottleneck over the measured period (any tenant, or
    /// the process out of CPU): the latencies then measure the client machine.
    #[serde(default)]
    pub client_bound: Option<ClientBound>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetBlock {
    /// `emulated` or `triton`.
    pub kind: String,
    pub gpu: Option<String>,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantBlock {
    pub model: String,
    /// Arrival process label, or `concurrency`.
    pub arrival: String,
    /// Requests per second asked for (`null` for a closed-loop tenant).
    pub target_rate: Option<f64>,
    pub concurrency: Option<u32>,
    /// Successful completions per second over the measured period.
    pub achieved_rate: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub errors_by_code: std::collections::BTreeMap<String, u64>,
    /// The first message of each code in `errors_by_code`.
    pub first_error_by_code: std::collections::BTreeMap<String, String>,
    pub dropped: u64,
    pub late: u64,
    /// From the intended send time.
    pub latency_ms: Percentiles,
    /// From the actual send time.
    pub service_latency_ms: Percentiles,
    pub server_ms: Option<ServerBlock>,
    /// Mean time per request the client saw beyond the server's own (service latency less the
    /// server's time from arrival to response): its transport both ways, which `perseus predict --client-from` takes as the
    /// tenant's turnaround. Absent without server statistics or completions.
    #[serde(default)]
    pub client_ms: Option<f64>,
    /// How late the client sent its requests, from their intended send times (a closed loop's
    /// from its predecessor's response), as quantiles: `perseus predict --client-from` replays it.
    /// Absent before any send, and in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lateness_ms: Option<Quantiles>,
    /// The server's own time per request of this tenant's model at its quantiles: what the GPU
    /// and its queue took, without the client's share. A real-time run reads it from Triton's
    /// request summary as the run ends (its window is the server's last minute, warm-up included,
    /// and it is per model); a prediction from the model. Absent where the server serves no
    /// summaries (Triton without `--metrics-config summary_latencies=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_latency_ms: Option<ServerLatency>,
    /// How far the p95 the client saw (`latency_ms`) exceeds the server's own p95 plus the mean
    /// turnaround (`client_ms`), in ms: the part of the tail that neither the GPU nor the mean
    /// transport explains, which is the client's scheduling (late sends, late wake-ups on
    /// responses). Absent without both figures, and for a tenant that shares its model with
    /// another (the server's p95 is per model); see [`TenantBlock::tail_is_the_clients`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_tail_ms: Option<f64>,
    pub avg_batch: Option<f64>,
    pub sla: SlaBlock,
    pub goodput: f64,
    pub solo_peak: Option<f64>,
    pub solo_peak_kind: String,
    /// Set when the generator could not keep this tenant's schedule over the measured period.
    #[serde(default)]
    pub client_bound: Option<ClientBound>,
    /// Set when this tenant's drops at the in-flight bound were the target's doing (its server
    /// held the requests): the latencies then measure the target's backlog.
    #[serde(default)]
    pub saturated: Option<Saturated>,
}

/// Past this share of the client's p95, the client's own tail ([`TenantBlock::client_tail_ms`])
/// decides that p95 more than the GPU does: the run says so beside its table.
pub const CLIENT_TAIL_SHARE: f64 = 0.10;

impl RunResult {
    /// Sets each tenant's [`client_tail_ms`](TenantBlock::client_tail_ms) once the server's p95
    /// and the turnarounds are known. A server keeps its summaries per model, so a tenant that
    /// shares its model with another has no p95 of its own at the server, and gets none.
    pub fn fill_client_tails(&mut self) {
        let models: Vec<String> = self.tenants.iter().map(|t| t.model.clone()).collect();
        for t in &mut self.tenants {
            if models.iter().filter(|m| **m == t.model).count() == 1 {
                t.fill_client_tail();
            } else {
                t.client_tail_ms = None;
            }
        }
    }
}

impl TenantBlock {
    /// Sets [`client_tail_ms`](Self::client_tail_ms) from the figures it compares, once both
    /// the server's p95 and the turnaround are known.
    fn fill_client_tail(&mut self) {
        self.client_tail_ms = self
            .server_latency_ms
            .and_then(|s| s.p95)
            .zip(self.client_ms)
            .filter(|_| self.ok > 0)
            .map(|(server, turnaround)| self.latency_ms.p95 - server - turnaround);
    }

    /// Whether more than [`CLIENT_TAIL_SHARE`] of the client's p95 is its own tail, so that p95
    /// measures the client machine's scheduling more than the modelled GPU.
    /// A saturated target's tail is the wait for a slot its backlog imposed, not the client's.
    pub fn tail_is_the_clients(&self) -> bool {
        self.saturated.is_none()
            && self
                .client_tail_ms
                .is_some_and(|tail| tail > CLIENT_TAIL_SHARE * self.latency_ms.p95)
    }
}

/// Server-side request duration at Triton's default summary quantiles, in milliseconds; a
/// quantile the server left out (nothing in its window) is absent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerLatency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

impl ServerLatency {
    /// From (quantile, ms) points such as a summary's; `None` when none is one of the four.
    pub fn from_points(points: &[(f64, f64)]) -> Option<ServerLatency> {
        let at = |q: f64| {
            points
                .iter()
                .find(|(pq, _)| (pq - q).abs() < 1e-9)
                .map(|(_, ms)| *ms)
        };
        let s = ServerLatency {
            p50: at(0.5),
            p90: at(0.9),
            p95: at(0.95),
            p99: at(0.99),
        };
        (s != ServerLatency::default()).then_some(s)
    }
}

/// Mean server-side time per request, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerBlock {
    pub queue: f64,
    pub compute_input: f64,
    pub compute_infer: f64,
    pub compute_output: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SlaBlock {
    pub latency_ms: f64,
    pub percentile: f64,
    pub attainment: Option<f64>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuBlock {
    /// The source most figures came from (`nvml`, `metrics`, `emulator`).
    pub source: Option<String>,
    pub name: Option<String>,
    pub util_mean: Option<f64>,
    pub sm_activity_mean: Option<f64>,
    pub memory_used_mb: Option<f64>,
    pub memory_total_mb: Option<f64>,
    pub power_w_mean: Option<f64>,
    /// Which source each figure came from.
    pub sources: std::collections::BTreeMap<String, String>,
    /// Sources that could not be used, with the reason.
    pub unavailable: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostBlock {
    pub instance: Option<String>,
    pub usd_per_hour: f64,
    pub throughput_per_s: f64,
    pub usd_per_million: Option<f64>,
    pub goodput_usd_per_million: Option<f64>,
    pub dedicated_equivalents: Option<f64>,
    pub dedicated_instances: Option<u32>,
    pub monthly_usd: f64,
}

impl From<CostView> for CostBlock {
    fn from(v: CostView) -> Self {
        CostBlock {
            instance: v.instance,
            usd_per_hour: v.usd_per_hour,
            throughput_per_s: v.throughput_per_s,
            usd_per_million: v.usd_per_million,
            goodput_usd_per_million: v.goodput_usd_per_million,
            dedicated_equivalents: v.dedicated_equivalents,
            dedicated_instances: v.dedicated_instances,
            monthly_usd: v.monthly_usd,
        }
    }
}

impl From<crate::telemetry::GpuSummary> for GpuBlock {
    fn from(g: crate::telemetry::GpuSummary) -> Self {
        GpuBlock {
            source: g.source.map(|s| s.label().to_string()),
            name: g.name,
            util_mean: g.util_mean,
            sm_activity_mean: g.sm_activity_mean,
            memory_used_mb: g.memory_used_mb,
            memory_total_mb: g.memory_total_mb,
            power_w_mean: g.power_w_mean,
            sources: g
                .sources
                .into_iter()
                .map(|(k, v)| (k, v.label().to_string()))
                .collect(),
            unavailable: g.unavailable,
        }
    }
}

/// Builds the result of a finished headless run from its final snapshot.
pub fn run_result(
    snap: &Snapshot,
    gpu: Option<GpuBlock>,
    price: Option<&crate::cost::ResolvedPrice>,
) -> RunResult {
    let tenants: Vec<TenantBlock> = snap.tenants.iter().map(tenant_block).collect();
    let cost = price.map(|p| {
        let inputs: Vec<_> = snap
            .tenants
            .iter()
            .map(|t| crate::cost::TenantLoad {
                achieved_per_s: t.totals.achieved_per_s,
                goodput_per_s: t.totals.goodput_per_s,
                solo_peak: t.solo_peak,
            })
            .collect();
        CostBlock::from(crate::cost::cost_view(p, &inputs))
    });
    // The emulator's metrics carry no device name; the target knows which GPU it plays.
    let gpu = gpu.map(|mut g| {
        if g.name.is_none() {
            g.name = snap.target.gpu.clone();
        }
        g
    });
    RunResult {
        schema: SCHEMA.to_string(),
        session: snap.session.clone(),
        target: TargetBlock {
            kind: match snap.target.kind {
                TargetKind::Emulated => "emulated",
                TargetKind::Triton => "triton",
            }
            .to_string(),
            gpu: snap.target.gpu.clone(),
            address: snap.target.address.clone(),
        },
        duration_s: snap.measured_s,
        tenants,
        gpu,
        cost,
        capacity: snap.capacity.as_ref().map(CapacityBlock::from),
        client_bound: snap.client.totals.clone(),
    }
}

fn tenant_block(t: &crate::vocab::snapshot::TenantView) -> TenantBlock {
    let (arrival, target_rate, concurrency) = match &t.load {
        Load::Rate { per_s, arrival } => (arrival.label().to_string(), Some(*per_s), None),
        Load::Concurrency(n) => ("concurrency".to_string(), None, Some(*n)),
    };
    let tot = &t.totals;
    TenantBlock {
        model: t.model.clone(),
        arrival,
        target_rate,
        concurrency,
        achieved_rate: tot.achieved_per_s,
        sent: tot.sent,
        ok: tot.ok,
        errors: tot.errors,
        errors_by_code: tot.errors_by_code.clone(),
        first_error_by_code: tot.first_error_by_code.clone(),
        dropped: tot.dropped,
        late: tot.late,
        latency_ms: tot.latency_ms,
        service_latency_ms: tot.service_latency_ms,
        server_ms: tot.server.map(|s| ServerBlock {
            queue: s.queue_us / 1000.0,
            compute_input: s.compute_input_us / 1000.0,
            compute_infer: s.compute_infer_us / 1000.0,
            compute_output: s.compute_output_us / 1000.0,
        }),
        client_ms: tot
            .server
            .and_then(|s| s.request_us)
            .filter(|_| tot.ok > 0)
            .map(|server_us| (tot.service_latency_ms.mean - server_us / 1000.0).max(0.0)),
        send_lateness_ms: tot.send_lateness_ms.clone(),
        server_latency_ms: None,
        client_tail_ms: None,
        avg_batch: tot.server.map(|s| s.avg_batch),
        sla: SlaBlock {
            latency_ms: t.sla.latency_ms,
            percentile: t.sla.percentile,
            attainment: tot.attainment,
            met: tot.sla_met,
        },
        goodput: tot.goodput_per_s,
        solo_peak: t.solo_peak.per_s,
        solo_peak_kind: match t.solo_peak.kind {
            PeakKind::Computed => "computed",
            PeakKind::Measured => "measured",
            PeakKind::Unknown => "unknown",
        }
        .to_string(),
        client_bound: tot.client_bound.clone(),
        saturated: tot.saturated.clone(),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// A latency percentile for the table, "–" for a tenant with no successful request to measure.
fn latency(t: &TenantBlock, ms: f64) -> String {
    if t.ok > 0 {
        format!("{ms:.2}")
    } else {
        "–".into()
    }
}

/// The summary table printed on stdout at the end of `perseus run`.
pub fn table(r: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} {} at {} — {:.1} s measured",
        r.session,
        r.target.kind,
        r.target.gpu.as_deref().unwrap_or("?"),
        r.target.address,
        r.duration_s
    );
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>9} {:>8} {:>8} {:>8} {:>10} {:>8} {:>14} {:>8} {:>7} {:>6} {:>6}",
        "model",
        "target/s",
        "achieved",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "server p95",
        "queue ms",
        "SLA",
        "attain",
        "errors",
        "drops",
        "late"
    );
    for t in &r.tenants {
        let target = match (t.target_rate, t.concurrency) {
            (Some(r), _) => format!("{r:.1}"),
            (None, Some(c)) => format!("c={c}"),
            _ => "–".into(),
        };
        let sla = format!(
            "p{}≤{}ms {}",
            t.sla.percentile,
            t.sla.latency_ms,
            match t.sla.met {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            }
        );
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>9.1} {:>8} {:>8} {:>8} {:>10} {:>8} {:>14} {:>8} {:>7} {:>6} {:>6}",
            t.model,
            target,
            t.achieved_rate,
            latency(t, t.latency_ms.p50),
            latency(t, t.latency_ms.p95),
            latency(t, t.latency_ms.p99),
            opt(t.server_latency_ms.and_then(|s| s.p95), 2),
            opt(t.server_ms.map(|s| s.queue), 2),
            sla,
            t.sla
                .attainment
                .map(|a| format!("{:.1}%", a * 100.0))
                .unwrap_or_else(|| "–".into()),
            t.errors,
            t.dropped,
            t.late
        );
    }
    write_client_bound(&mut out, r);
    write_saturated(&mut out, r);
    write_client_tail(&mut out, r);
    if let Some(g) = &r.gpu {
        let _ = writeln!(
            out,
            "GPU ({}): {} · util {} · SM {} · memory {}/{} MiB · power {} W",
            g.source.as_deref().unwrap_or("no source"),
            g.name.as_deref().unwrap_or("?"),
            g.util_mean
                .map(|u| format!("{:.0}%", u * 100.0))
                .unwrap_or_else(|| "–".into()),
            g.sm_activity_mean
                .map(|u| format!("{:.0}%", u * 100.0))
                .unwrap_or_else(|| "–".into()),
            opt(g.memory_used_mb, 0),
            opt(g.memory_total_mb, 0),
            opt(g.power_w_mean, 1)
        );
        for u in &g.unavailable {
            let _ = writeln!(out, "  ({u})");
        }
    }
    if let Some(c) = &r.cost {
        let _ = writeln!(
            out,
            "Cost ({} ${:.3}/h): {:.1} inf/s · ${} per 1M · goodput ${} per 1M · monthly ${:.0}",
            c.instance.as_deref().unwrap_or("literal price"),
            c.usd_per_hour,
            c.throughput_per_s,
            opt(c.usd_per_million, 4),
            opt(c.goodput_usd_per_million, 4),
            c.monthly_usd
        );
        let _ = writeln!(
            out,
            "At the operating point: dedicated equivalents {} · dedicated GPUs {}",
            opt(c.dedicated_equivalents, 3),
            c.dedicated_instances
                .map(|n| n.to_string())
                .unwrap_or_else(|| "–".into()),
        );
    }
    if let Some(c) = &r.capacity {
        let _ = writeln!(out, "{}", capacity::summary_line(c));
    }
    out
}

/// The warning that the load generator was the bottleneck, per tenant and for the process.
fn write_client_bound(out: &mut String, r: &RunResult) {
    let Some(run) = &r.client_bound else {
        return;
    };
    let _ = writeln!(
        out,
        "warning: the load generator was the bottleneck ({}): these latencies measure this \
         machine, not the GPU",
        run.reason_names()
    );
    for t in &r.tenants {
        if let Some(f) = &t.client_bound {
            let _ = writeln!(
                out,
                "  {}: {} ({:.1}% of arrivals late, {:.1}% dropped)",
                t.model,
                f.short(),
                f.late_share * 100.0,
                f.dropped_share * 100.0
            );
        }
    }
    if let Some(cpu) = run.cpu_share {
        let _ = writeln!(
            out,
            "  process CPU {:.0}% of {} cores",
            cpu * 100.0,
            run.cores
        );
    }
}

/// The warning that the target, not this machine, was the bottleneck of the tenants it saturated.
fn write_saturated(out: &mut String, r: &RunResult) {
    let saturated: Vec<(&TenantBlock, &Saturated)> = r
        .tenants
        .iter()
        .filter_map(|t| t.saturated.as_ref().map(|s| (t, s)))
        .collect();
    if saturated.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "warning: the target was saturated (drops at the in-flight bound while its server held \
         the requests): these latencies measure its backlog, the wait for a free slot included, \
         not this machine"
    );
    for (t, s) in saturated {
        let _ = writeln!(out, "  {}: {}, {}", t.model, s.short(), s.held());
    }
}

/// The tenants whose p95 is more the client's tail than the GPU's, each with its share: a p95
/// that looks like the GPU's but is not must say so (DESIGN §4).
fn write_client_tail(out: &mut String, r: &RunResult) {
    let tails: Vec<&TenantBlock> = r
        .tenants
        .iter()
        .filter(|t| t.tail_is_the_clients())
        .collect();
    if tails.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "note: part of these p95s is the client's scheduling (late sends and wake-ups), beyond \
         the server's p95 and the mean transport, not the GPU:"
    );
    for t in tails {
        let tail = t.client_tail_ms.unwrap_or(0.0);
        let _ = writeln!(
            out,
            "  {}: {:.2} of {:.2} ms ({:.0}%)",
            t.model,
            tail,
            t.latency_ms.p95,
            100.0 * tail / t.latency_ms.p95
        );
    }
}

#[cfg(test)]
mod tests;
