//! The `--csv` output: one row per tenant, its columns those of [`CsvRow`].

use serde::Serialize;

use super::{RunResult, TenantBlock};

/// One tenant of a run in the `--csv` output; field order is column order, so the header is
/// written from the same struct as the rows and cannot drift from them.
#[derive(Debug, Default, Serialize)]
pub(super) struct CsvRow<'a> {
    session: &'a str,
    /// The target's name, in multi-target runs only (a single-target CSV keeps its columns).
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    model: &'a str,
    arrival: &'a str,
    target_rate: Option<f64>,
    concurrency: Option<u32>,
    achieved_rate: f64,
    sent: u64,
    ok: u64,
    errors: u64,
    dropped: u64,
    late: u64,
    mean_ms: f64,
    p50_ms: f64,
    p90_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    service_p50_ms: f64,
    service_p99_ms: f64,
    server_queue_ms: Option<f64>,
    server_compute_infer_ms: Option<f64>,
    avg_batch: Option<f64>,
    sla_latency_ms: f64,
    sla_percentile: f64,
    attainment: Option<f64>,
    sla_met: Option<bool>,
    goodput: f64,
    solo_peak: Option<f64>,
    /// The client-bound reasons, `;`-separated; empty when the generator kept its schedule.
    client_bound: String,
    /// The target's server held the requests whose drops filled the in-flight bound.
    target_saturated: bool,
}

impl<'a> CsvRow<'a> {
    pub(super) fn new(session: &'a str, target: Option<&'a str>, t: &'a TenantBlock) -> Self {
        CsvRow {
            session,
            target,
            model: &t.model,
            arrival: &t.arrival,
            target_rate: t.target_rate,
            concurrency: t.concurrency,
            achieved_rate: t.achieved_rate,
            sent: t.sent,
            ok: t.ok,
            errors: t.errors,
            dropped: t.dropped,
            late: t.late,
            mean_ms: t.latency_ms.mean,
            p50_ms: t.latency_ms.p50,
            p90_ms: t.latency_ms.p90,
            p95_ms: t.latency_ms.p95,
            p99_ms: t.latency_ms.p99,
            max_ms: t.latency_ms.max,
            service_p50_ms: t.service_latency_ms.p50,
            service_p99_ms: t.service_latency_ms.p99,
            server_queue_ms: t.server_ms.map(|s| s.queue),
            server_compute_infer_ms: t.server_ms.map(|s| s.compute_infer),
            avg_batch: t.avg_batch,
            sla_latency_ms: t.sla.latency_ms,
            sla_percentile: t.sla.percentile,
            attainment: t.sla.attainment,
            sla_met: t.sla.met,
            goodput: t.goodput,
            solo_peak: t.solo_peak,
            client_bound: t
                .client_bound
                .as_ref()
                .map(|f| {
                    let names: Vec<&str> = f.reasons.iter().map(|r| r.name()).collect();
                    names.join(";")
                })
                .unwrap_or_default(),
            target_saturated: t.saturated.is_some(),
        }
    }
}

/// One CSV row per tenant, with a header row (also when there are no tenants).
pub fn csv(r: &RunResult) -> std::io::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for t in &r.tenants {
        w.serialize(CsvRow::new(&r.session, None, t))?;
    }
    let mut bytes = w.into_inner().map_err(|e| e.into_error())?;
    if r.tenants.is_empty() {
        bytes = crate::session::csv_header_of::<CsvRow>()?;
    }
    String::from_utf8(bytes).map_err(std::io::Error::other)
}
