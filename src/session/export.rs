//! CSV export of a recording: one row per tick and tenant, for spreadsheets and plotting scripts.
//!
//! Window figures (rates, percentiles, attainment, counts) describe the sliding window ending at
//! that tick; `total_*` columns are the measured period so far, as in the headless report. Empty
//! cells mean "not known", never zero. The columns are the fields of [`Row`], written by the `csv`
//! crate, so the header cannot drift from the rows and quoting is the library's.

use std::io::{self, Write};

use serde::Serialize;

use crate::vocab::snapshot::{Phase, Reading, Snapshot, TenantView};
use crate::vocab::spec::Load;

/// One tenant at one tick; field order is column order.
#[derive(Debug, Default, Serialize)]
struct Row<'a> {
    seq: u64,
    elapsed_s: f64,
    measured_s: f64,
    phase: &'static str,
    tenant_id: String,
    model: &'a str,
    paused: bool,
    load: &'static str,
    target: String,
    arrival: &'a str,
    batch: u32,
    offered_per_s: f64,
    achieved_per_s: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    service_p99_ms: f64,
    sla_latency_ms: f64,
    sla_percentile: f64,
    attainment: Option<f64>,
    sla_met: Option<bool>,
    goodput_per_s: f64,
    errors: u64,
    dropped: u64,
    late: u64,
    in_flight: u32,
    total_sent: u64,
    total_ok: u64,
    total_errors: u64,
    total_dropped: u64,
    total_late: u64,
    total_achieved_per_s: f64,
    server_queue_us: Option<f64>,
    server_compute_infer_us: Option<f64>,
    server_avg_batch: Option<f64>,
    gpu_util: Option<f64>,
    gpu_sm_activity: Option<f64>,
    gpu_memory_used_mb: Option<f64>,
    gpu_power_w: Option<f64>,
    usd_per_hour: Option<f64>,
    usd_per_million: Option<f64>,
    goodput_usd_per_million: Option<f64>,
    dedicated_equivalents: Option<f64>,
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

fn row<'a>(snap: &'a Snapshot, t: &'a TenantView) -> Row<'a> {
    let (load, target, arrival) = match &t.load {
        Load::Rate { per_s, arrival } => ("rate", per_s.to_string(), arrival.label()),
        Load::Concurrency(n) => ("concurrency", n.to_string(), ""),
    };
    let w = &t.window;
    let cost = snap.cost.as_ref();
    Row {
        seq: snap.seq,
        elapsed_s: snap.elapsed_s,
        measured_s: snap.measured_s,
        phase: phase(snap.phase),
        tenant_id: t.id.to_string(),
        model: &t.model,
        paused: t.paused,
        load,
        target,
        arrival,
        batch: t.batch,
        offered_per_s: w.offered_per_s,
        achieved_per_s: w.achieved_per_s,
        p50_ms: w.latency_ms.p50,
        p95_ms: w.latency_ms.p95,
        p99_ms: w.latency_ms.p99,
        service_p99_ms: w.service_latency_ms.p99,
        sla_latency_ms: t.sla.latency_ms,
        sla_percentile: t.sla.percentile,
        attainment: w.attainment,
        sla_met: w.sla_met,
        goodput_per_s: w.goodput_per_s,
        errors: w.errors,
        dropped: w.dropped,
        late: w.late,
        in_flight: w.in_flight,
        total_sent: t.totals.sent,
        total_ok: t.totals.ok,
        total_errors: t.totals.errors,
        total_dropped: t.totals.dropped,
        total_late: t.totals.late,
        total_achieved_per_s: t.totals.achieved_per_s,
        server_queue_us: t.server.map(|s| s.queue_us),
        server_compute_infer_us: t.server.map(|s| s.compute_infer_us),
        server_avg_batch: t.server.map(|s| s.avg_batch),
        gpu_util: reading(snap.gpu.utilization),
        gpu_sm_activity: reading(snap.gpu.sm_activity),
        gpu_memory_used_mb: reading(snap.gpu.memory_used_bytes).map(|b| b / (1024.0 * 1024.0)),
        gpu_power_w: reading(snap.gpu.power_w),
        usd_per_hour: cost.map(|c| c.usd_per_hour),
        usd_per_million: cost.and_then(|c| c.usd_per_million),
        goodput_usd_per_million: cost.and_then(|c| c.goodput_usd_per_million),
        dedicated_equivalents: cost.and_then(|c| c.dedicated_equivalents),
    }
}

/// The header line a serde row type gives, for CSV output that has no rows to carry it.
pub fn csv_header_of<T: Serialize + Default>() -> io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default())?;
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    Ok(bytes[..end].to_vec())
}

/// Writes the header row and one row per snapshot and tenant, reading the snapshots one at a time;
/// returns the number of data rows.
pub fn export_csv(
    snapshots: impl IntoIterator<Item = Snapshot>,
    out: &mut impl Write,
) -> io::Result<usize> {
    let mut w = csv::Writer::from_writer(&mut *out);
    let mut rows = 0;
    for snap in snapshots {
        for t in &snap.tenants {
            w.serialize(row(&snap, t))?;
            rows += 1;
        }
    }
    w.flush()?;
    drop(w);
    if rows == 0 {
        out.write_all(&csv_header_of::<Row>()?)?;
    }
    out.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_without_rows_still_has_its_header() {
        let mut out = Vec::new();
        assert_eq!(export_csv(std::iter::empty(), &mut out).unwrap(), 0);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("seq,elapsed_s,measured_s,phase,"),
            "{text}"
        );
        assert!(text.ends_with(",dedicated_equivalents\n"), "{text}");
        assert_eq!(text.lines().count(), 1);
    }
}
