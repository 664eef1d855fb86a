//! CSV export of a recording: one row per tick and tenant, for spreadsheets and plotting scripts.
//!
//! Window figures (rates, percentiles, attainment, counts) describe the sliding window ending at
//! that tick; `total_*` columns are the measured period so far, as in the headless report. Empty
//! cells mean "not known", never zero.

use std::io::{self, Write};

use super::recording::Recording;
use crate::vocab::snapshot::{Phase, Reading, Snapshot, TenantView};
use crate::vocab::spec::Load;

/// Column names, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "elapsed_s",
    "measured_s",
    "phase",
    "tenant_id",
    "model",
    "paused",
    "load",
    "target",
    "arrival",
    "batch",
    "offered_per_s",
    "achieved_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "service_p99_ms",
    "sla_latency_ms",
    "sla_percentile",
    "attainment",
    "sla_met",
    "goodput_per_s",
    "errors",
    "dropped",
    "late",
    "in_flight",
    "total_sent",
    "total_ok",
    "total_errors",
    "total_dropped",
    "total_late",
    "total_achieved_per_s",
    "server_queue_us",
    "server_compute_infer_us",
    "server_avg_batch",
    "gpu_util",
    "gpu_sm_activity",
    "gpu_memory_used_mb",
    "gpu_power_w",
    "usd_per_hour",
    "usd_per_million",
    "goodput_usd_per_million",
    "dedicated_equivalents",
];

/// A CSV field, quoted when it holds a separator, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(String::new, |v| v.to_string())
}

fn reading(r: Option<Reading>) -> Option<f64> {
    r.map(|r| r.value)
}

fn phase(p: Phase) -> &'static str {
    match p {
        Phase::Connecting => "connecting",
        Phase::WarmingUp => "warming_up",
        Phase::Measuring => "measuring",
        Phase::Finished => "finished",
    }
}

fn row(snap: &Snapshot, t: &TenantView) -> Vec<String> {
    let (load, target, arrival) = match &t.load {
        Load::Rate { per_s, arrival } => ("rate", per_s.to_string(), arrival.label()),
        Load::Concurrency(n) => ("concurrency", n.to_string(), ""),
    };
    let w = &t.window;
    let cost = snap.cost.as_ref();
    vec![
        snap.seq.to_string(),
        snap.elapsed_s.to_string(),
        snap.measured_s.to_string(),
        phase(snap.phase).to_string(),
        t.id.to_string(),
        csv_field(&t.model),
        t.paused.to_string(),
        load.to_string(),
        target,
        arrival.to_string(),
        t.batch.to_string(),
        w.offered_per_s.to_string(),
        w.achieved_per_s.to_string(),
        w.latency_ms.p50.to_string(),
        w.latency_ms.p95.to_string(),
        w.latency_ms.p99.to_string(),
        w.service_latency_ms.p99.to_string(),
        t.sla.latency_ms.to_string(),
        t.sla.percentile.to_string(),
        opt(w.attainment),
        w.sla_met.map_or_else(String::new, |m| m.to_string()),
        w.goodput_per_s.to_string(),
        w.errors.to_string(),
        w.dropped.to_string(),
        w.late.to_string(),
        w.in_flight.to_string(),
        t.totals.sent.to_string(),
        t.totals.ok.to_string(),
        t.totals.errors.to_string(),
        t.totals.dropped.to_string(),
        t.totals.late.to_string(),
        t.totals.achieved_per_s.to_string(),
        opt(t.server.map(|s| s.queue_us)),
        opt(t.server.map(|s| s.compute_infer_us)),
        opt(t.server.map(|s| s.avg_batch)),
        opt(reading(snap.gpu.utilization)),
        opt(reading(snap.gpu.sm_activity)),
        opt(reading(snap.gpu.memory_used_bytes).map(|b| b / (1024.0 * 1024.0))),
        opt(reading(snap.gpu.power_w)),
        opt(cost.map(|c| c.usd_per_hour)),
        opt(cost.and_then(|c| c.usd_per_million)),
        opt(cost.and_then(|c| c.goodput_usd_per_million)),
        opt(cost.and_then(|c| c.dedicated_equivalents)),
    ]
}

/// Writes the header row and one row per snapshot and tenant; returns the number of data rows.
pub fn export_csv(rec: &Recording, out: &mut impl Write) -> io::Result<usize> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))?;
    let mut rows = 0;
    for snap in &rec.snapshots {
        for t in &snap.tenants {
            writeln!(out, "{}", row(snap, t).join(","))?;
            rows += 1;
        }
    }
    out.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        assert_eq!(csv_field("resnet50"), "resnet50");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
