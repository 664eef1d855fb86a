//! The exposition: [`Figures`] as OpenMetrics families under the `perseus_` prefix.
//!
//! The figures are totals the engine already counted, not events the exporter sees, so they are
//! written through a prometheus-client [`Collector`] at scrape time instead of instrumented
//! `Counter`s and `Histogram`s (which only take increments and single observations).

use std::fmt::Error;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::exporter::figures::{Figures, Histogram, SeriesKey};

/// Every family the exporter declares, as `(name, type)`: the README's table and the tests read it.
pub const FAMILIES: &[(&str, &str)] = &[
    ("perseus_requests_sent", "counter"),
    ("perseus_requests_ok", "counter"),
    ("perseus_requests_dropped", "counter"),
    ("perseus_requests_late", "counter"),
    ("perseus_requests_within_sla", "counter"),
    ("perseus_requests_errors", "counter"),
    ("perseus_latency_seconds", "histogram"),
    ("perseus_service_latency_seconds", "histogram"),
    ("perseus_sla_attainment_ratio", "gauge"),
    ("perseus_goodput_requests_per_second", "gauge"),
    ("perseus_in_flight_requests", "gauge"),
    ("perseus_sla_latency_seconds", "gauge"),
    ("perseus_client_bound", "gauge"),
    ("perseus_target_saturated", "gauge"),
    ("perseus_target_connected", "gauge"),
    ("perseus_measured_seconds", "gauge"),
    ("perseus_gpu_utilization_ratio", "gauge"),
    ("perseus_gpu_sm_activity_ratio", "gauge"),
    ("perseus_gpu_memory_used_bytes", "gauge"),
    ("perseus_gpu_memory_total_bytes", "gauge"),
    ("perseus_gpu_power_watts", "gauge"),
    ("perseus_cost_usd_per_hour", "gauge"),
];

/// The registry a scrape encodes: one collector over the shared figures.
pub fn registry(figures: Arc<Mutex<Figures>>) -> Registry {
    let mut registry = Registry::with_prefix("perseus");
    registry.register_collector(Box::new(FiguresCollector(figures)));
    registry
}

/// The OpenMetrics text of a registry, `# EOF` included.
pub fn exposition(registry: &Registry) -> Result<String, Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[derive(Debug)]
struct FiguresCollector(Arc<Mutex<Figures>>);

impl Collector for FiguresCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        // The updater holds the lock only to add one snapshot; encoding a poisoned (half-added)
        // snapshot's figures is still better than failing the scrape.
        let f = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        tenant_counters(&mut enc, &f)?;
        histogram(
            &mut enc,
            "latency",
            "Latency from the intended send time (open loop: no coordinated omission), measured requests.",
            f.counters.iter().map(|(k, c)| (k, &c.latency)),
        )?;
        histogram(
            &mut enc,
            "service_latency",
            "Latency from the actual send time, measured requests.",
            f.counters.iter().map(|(k, c)| (k, &c.service_latency)),
        )?;
        tenant_gauges(&mut enc, &f)?;
        target_gauges(&mut enc, &f)
    }
}

fn tenant_labels(k: &SeriesKey) -> [(&'static str, &str); 3] {
    [
        ("target", k.target.as_str()),
        ("tenant", k.tenant.as_str()),
        ("model", k.model.as_str()),
    ]
}

fn tenant_counters(enc: &mut DescriptorEncoder, f: &Figures) -> Result<(), Error> {
    type Pick = fn(&crate::exporter::figures::Counters) -> u64;
    let plain: [(&str, &str, Pick); 5] = [
        (
            "requests_sent",
            "Requests sent in the measured period.",
            |c| c.sent,
        ),
        (
            "requests_ok",
            "Successful completions of requests sent in the measured period.",
            |c| c.ok,
        ),
        (
            "requests_dropped",
            "Arrivals dropped at the in-flight bound (never sent); offered = sent + dropped.",
            |c| c.dropped,
        ),
        (
            "requests_late",
            "Requests sent later than their intended send time.",
            |c| c.late,
        ),
        (
            "requests_within_sla",
            "Successful completions within the SLA latency (goodput).",
            |c| c.within_sla,
        ),
    ];
    for (name, help, pick) in plain {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (k, c) in &f.counters {
            let labels = tenant_labels(k);
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&pick(c), None)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "requests_errors",
        "Failed requests (deadline expiries included) by gRPC status name.",
        None,
        MetricType::Counter,
    )?;
    for (k, c) in &f.counters {
        for (code, n) in &c.errors_by_code {
            let [t, te, mo] = tenant_labels(k);
            let labels = [t, te, mo, ("code", code.as_str())];
            m.encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
    }
    Ok(())
}

fn histogram<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (&'a SeriesKey, &'a Histogram)>,
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (k, h) in rows {
        let labels = tenant_labels(k);
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_s,
            h.count(),
            &h.buckets(),
            None,
        )?;
    }
    Ok(())
}

/// A gauge family over `rows` of (labels, value), skipping rows without a value.
fn gauge<'a, L: prometheus_client::encoding::EncodeLabelSet + 'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: impl Iterator<Item = (L, Option<f64>)>,
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in rows {
        if let Some(v) = value {
            m.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

fn tenant_gauges(enc: &mut DescriptorEncoder, f: &Figures) -> Result<(), Error> {
    let ratio = Unit::Other("ratio".into());
    let rows = || f.tenants.iter().map(|(k, g)| (tenant_labels(k), g));
    gauge(
        enc,
        "sla_attainment",
        "Fraction of the window's requests that completed within the SLA (errors and drops are misses); absent with no requests.",
        Some(&ratio),
        rows().map(|(l, g)| (l, g.attainment)),
    )?;
    gauge(
        enc,
        "goodput_requests_per_second",
        "Completions within the SLA per second over the window.",
        None,
        rows().map(|(l, g)| (l, Some(g.goodput_per_s))),
    )?;
    gauge(
        enc,
        "in_flight_requests",
        "Requests outstanding at the server now.",
        None,
        rows().map(|(l, g)| (l, Some(f64::from(g.in_flight)))),
    )?;
    gauge(
        enc,
        "sla_latency",
        "The tenant's SLA latency (at its SLA percentile).",
        Some(&Unit::Seconds),
        rows().map(|(l, g)| (l, Some(g.sla_latency_s))),
    )?;
    gauge(
        enc,
        "client_bound",
        "1 while the load generator cannot keep the tenant's schedule (its latencies then measure the client machine), else 0.",
        None,
        rows().map(|(l, g)| (l, Some(f64::from(u8::from(g.client_bound))))),
    )?;
    gauge(
        enc,
        "target_saturated",
        "1 while the tenant's drops at the in-flight bound are the target's (its server holds the requests), else 0.",
        None,
        rows().map(|(l, g)| (l, Some(f64::from(u8::from(g.saturated))))),
    )
}

fn target_gauges(enc: &mut DescriptorEncoder, f: &Figures) -> Result<(), Error> {
    let ratio = Unit::Other("ratio".into());
    let rows = || f.targets.iter().map(|(t, g)| ([("target", t.as_str())], g));
    gauge(
        enc,
        "target_connected",
        "1 while the target answers, 0 while it is unreachable.",
        None,
        rows().map(|(l, g)| (l, Some(f64::from(u8::from(g.connected))))),
    )?;
    gauge(
        enc,
        "measured",
        "Seconds of the measured period so far (0 during warm-up).",
        Some(&Unit::Seconds),
        rows().map(|(l, g)| (l, Some(g.measured_s))),
    )?;
    gauge(
        enc,
        "gpu_utilization",
        "Fraction of time the GPU ran anything (NVML's definition).",
        Some(&ratio),
        rows().map(|(l, g)| (l, g.gpu_utilization)),
    )?;
    gauge(
        enc,
        "gpu_sm_activity",
        "Time-averaged fraction of SM capacity in use, where the source knows it.",
        Some(&ratio),
        rows().map(|(l, g)| (l, g.gpu_sm_activity)),
    )?;
    gauge(
        enc,
        "gpu_memory_used",
        "GPU memory in use.",
        Some(&Unit::Bytes),
        rows().map(|(l, g)| (l, g.gpu_memory_used_bytes)),
    )?;
    gauge(
        enc,
        "gpu_memory_total",
        "GPU memory in all.",
        Some(&Unit::Bytes),
        rows().map(|(l, g)| (l, g.gpu_memory_total_bytes)),
    )?;
    gauge(
        enc,
        "gpu_power",
        "GPU power draw.",
        Some(&Unit::Other("watts".into())),
        rows().map(|(l, g)| (l, g.gpu_power_w)),
    )?;
    gauge(
        enc,
        "cost_usd_per_hour",
        "The target's price per hour.",
        None,
        rows().map(|(l, g)| (l, g.usd_per_hour)),
    )
}
