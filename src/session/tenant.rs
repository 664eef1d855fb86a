//! One `[[tenant]]` of a session file: model, load, SLA and server-side settings.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use toml::de::DeValue;

use super::inputs::parse_inputs;
use super::limits;
use super::parse::{absolute, choose, nonempty, opt_duration};
use super::spanned::{Doc, Field, Result, SessionError, Table, did_you_mean};
use crate::vocab::spec::{Arrival, DynamicBatching, InputData, Load, Sla, TenantSpec};

/// The SLA a tenant gets when its session gives none.
pub const DEFAULT_SLA: Sla = Sla {
    latency_ms: 100.0,
    percentile: 95.0,
};

/// Bursty arrivals without a `burst` table.
pub const DEFAULT_BURST_FACTOR: f64 = 4.0;
pub const DEFAULT_BURST_ON: Duration = Duration::from_secs(2);
pub const DEFAULT_BURST_OFF: Duration = Duration::from_secs(8);

const MAX_RATE: f64 = 1_000_000.0;
const MAX_TRACE_GAPS: usize = 10_000_000;

const TENANT_KEYS: &[&str] = &[
    "model",
    "rate",
    "concurrency",
    "arrival",
    "burst",
    "batch",
    "sla",
    "instances",
    "dynamic_batching",
    "data",
    "max_in_flight",
    "deadline",
    "inputs",
    "target",
];

pub(super) fn parse_tenant(
    f: Field<'_, '_, '_>,
    catalog: Option<&BTreeMap<String, u32>>,
    base: &Path,
) -> Result<TenantSpec> {
    let doc = f.doc;
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a [[tenant]] table")?,
        TENANT_KEYS,
    )?;
    let missing =
        |key: &str, what: &str| doc.error(f.span(), &t.key(key), format!("missing: {what}"));

    let model_field = t
        .get("model")
        .ok_or_else(|| missing("model", "expected the model to serve, such as 'resnet50'"))?;
    let model = nonempty(&model_field, "a model name such as 'resnet50'")?.to_string();
    let max_batch = match catalog {
        Some(known) => match known.get(&model) {
            Some(b) => Some((*b).max(1)),
            None => {
                let names: Vec<String> = known.keys().cloned().collect();
                choose(model_field, "model", &model, Some(names))?;
                None
            }
        },
        None => None,
    };

    let load = parse_load(&t, base, &missing)?;

    let batch = match t.get("batch") {
        Some(b) => batch_size(&b, &model, max_batch, "a batch size (images per request)")?,
        None => 1,
    };
    let sla = match t.get("sla") {
        Some(s) => parse_sla(doc, s)?,
        None => DEFAULT_SLA,
    };
    let instances = match t.get("instances") {
        Some(i) => Some(i.u32("a server-side instance count", 1, 64)?),
        None => None,
    };
    let dynamic_batching = match t.get("dynamic_batching") {
        Some(d) => Some(parse_batching(doc, d, &model, max_batch)?),
        None => None,
    };
    let data = match t.get("data") {
        Some(d) => match d.str("\"zero\" or \"random\"")? {
            "zero" => InputData::Zero,
            "random" => InputData::Random,
            other => {
                return Err(d.fail(format!("expected \"zero\" or \"random\", found '{other}'")));
            }
        },
        None => InputData::Zero,
    };
    let max_in_flight = match t.get("max_in_flight") {
        Some(m) => m.u32("an in-flight bound", 1, 1_000_000)?,
        None => TenantSpec::DEFAULT_MAX_IN_FLIGHT,
    };
    let deadline = match t.get("deadline") {
        Some(d) => d.duration(limits::MAX_DEADLINE)?,
        None => TenantSpec::DEFAULT_DEADLINE,
    };
    let inputs = match t.get("inputs") {
        Some(i) => parse_inputs(doc, i)?,
        None => Vec::new(),
    };
    Ok(TenantSpec {
        model,
        load,
        batch,
        sla,
        instances,
        dynamic_batching,
        data,
        max_in_flight,
        deadline,
        inputs,
    })
}

fn batch_size(f: &Field<'_, '_, '_>, model: &str, max: Option<u32>, what: &str) -> Result<u32> {
    match max {
        Some(max) => {
            let v = f.integer(what, 1, u64::MAX)?;
            if v > u64::from(max) {
                return Err(f.fail(format!(
                    "{v} is above {model}'s max batch {max}: expected {what} between 1 and {max}"
                )));
            }
            Ok(v as u32)
        }
        None => f.u32(what, 1, 1 << 20),
    }
}

fn parse_load(
    t: &Table<'_, '_, '_>,
    base: &Path,
    missing: &dyn Fn(&str, &str) -> SessionError,
) -> Result<Load> {
    let rate = match t.get("rate") {
        Some(r) => {
            let what = "a rate in requests per second above zero";
            let v = r.number(what)?;
            if v <= 0.0 || v > MAX_RATE {
                return Err(r.fail(format!("expected {what} (at most {MAX_RATE}), found {v}")));
            }
            Some(v)
        }
        None => None,
    };
    if let Some(c) = t.get("concurrency") {
        if t.get("rate").is_some() {
            return Err(
                c.fail("give either rate (open loop) or concurrency (closed loop), not both")
            );
        }
        for key in ["arrival", "burst"] {
            if let Some(a) = t.get(key) {
                return Err(a.fail(format!(
                    "'{key}' applies to an open-loop rate, not to concurrency"
                )));
            }
        }
        return Ok(Load::Concurrency(c.u32(
            "a number of requests in flight",
            1,
            100_000,
        )?));
    }
    let arrival = match t.get("arrival") {
        None => Arrival::Poisson,
        Some(a) => match a.value.get_ref() {
            DeValue::Table(_) => parse_trace(t, a, base)?,
            _ => {
                let what = "\"poisson\", \"constant\", \"bursty\" or { trace = \"file\" }";
                match a.str(what)? {
                    "poisson" => Arrival::Poisson,
                    "constant" => Arrival::Constant,
                    "bursty" => parse_burst(t)?,
                    other => {
                        let hint = did_you_mean(other, ["poisson", "constant", "bursty"])
                            .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"));
                        return Err(a.fail(format!("expected {what}, found '{other}'{hint}")));
                    }
                }
            }
        },
    };
    if !matches!(arrival, Arrival::Bursty { .. })
        && let Some(b) = t.get("burst")
    {
        return Err(b.fail("'burst' applies only to arrival = \"bursty\""));
    }
    let per_s = match (&arrival, rate) {
        (_, Some(r)) => r,
        (Arrival::Trace { gaps_us, .. }, None) => {
            let total_us: f64 = gaps_us.iter().map(|g| *g as f64).sum();
            let per_s = gaps_us.len() as f64 * 1e6 / total_us;
            if per_s > MAX_RATE
                && let Some(a) = t.get("arrival")
            {
                return Err(a.fail(format!(
                    "the trace's mean rate {per_s:.0}/s is above {MAX_RATE}/s"
                )));
            }
            per_s
        }
        (_, None) => {
            return Err(missing(
                "rate",
                "expected rate (requests per second, open loop) or concurrency (closed loop)",
            ));
        }
    };
    Ok(Load::Rate { per_s, arrival })
}

fn parse_burst(t: &Table<'_, '_, '_>) -> Result<Arrival> {
    let Some(f) = t.get("burst") else {
        return Ok(Arrival::Bursty {
            burst_factor: DEFAULT_BURST_FACTOR,
            mean_on: DEFAULT_BURST_ON,
            mean_off: DEFAULT_BURST_OFF,
        });
    };
    let b = Table::new(
        t.doc,
        f.key.to_string(),
        f.table("a table such as { factor = 4.0, on = \"2s\", off = \"8s\" }")?,
        &["factor", "on", "off"],
    )?;
    let mean_on =
        opt_duration(&b, "on", false, limits::MAX_BURST_PHASE)?.unwrap_or(DEFAULT_BURST_ON);
    let mean_off =
        opt_duration(&b, "off", false, limits::MAX_BURST_PHASE)?.unwrap_or(DEFAULT_BURST_OFF);
    let ceiling = (mean_on + mean_off).as_secs_f64() / mean_on.as_secs_f64();
    let burst_factor = match b.get("factor") {
        Some(x) => {
            let what = "a burst factor of at least 1 (× the mean rate)";
            let v = x.number(what)?;
            if v < 1.0 {
                return Err(x.fail(format!("expected {what}, found {v}")));
            }
            if v > ceiling {
                return Err(x.fail(format!(
                    "a factor of {v} with on = {}, off = {} leaves a negative rate between bursts; at most {ceiling}",
                    humantime::format_duration(mean_on),
                    humantime::format_duration(mean_off)
                )));
            }
            v
        }
        None => DEFAULT_BURST_FACTOR.min(ceiling),
    };
    Ok(Arrival::Bursty {
        burst_factor,
        mean_on,
        mean_off,
    })
}

fn parse_trace(t: &Table<'_, '_, '_>, f: Field<'_, '_, '_>, base: &Path) -> Result<Arrival> {
    let a = Table::new(
        t.doc,
        f.key.to_string(),
        f.table("{ trace = \"file\" }")?,
        &["trace"],
    )?;
    let Some(file) = a.get("trace") else {
        return Err(f.fail(
            "missing: expected { trace = \"file\" } (inter-arrival gaps in µs, one a line)",
        ));
    };
    let written = nonempty(&file, "a trace file path")?;
    // Errors name the file as the user can find it; the run keeps it absolute.
    let shown = base.join(written);
    let text = std::fs::read_to_string(&shown)
        .map_err(|e| file.fail(format!("cannot read trace file '{}': {e}", shown.display())))?;
    let gaps = parse_gaps(&text)
        .map_err(|(line, msg)| file.fail(format!("{}:{line}: {msg}", shown.display())))?;
    let path = absolute(base, written);
    Ok(Arrival::Trace {
        path,
        gaps_us: Arc::new(gaps),
    })
}

/// Inter-arrival gaps in µs, one a line; blank lines and `#` comments skipped. Errors carry the
/// 1-based line.
pub fn parse_gaps(text: &str) -> std::result::Result<Vec<u64>, (usize, String)> {
    let mut gaps = Vec::new();
    let mut last_line = 0;
    for (i, line) in text.lines().enumerate() {
        last_line = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let gap = line.parse::<u64>().map_err(|_| {
            (
                i + 1,
                format!("expected a gap in microseconds (a whole number), found '{line}'"),
            )
        })?;
        if gaps.len() == MAX_TRACE_GAPS {
            return Err((i + 1, format!("more than {MAX_TRACE_GAPS} gaps")));
        }
        gaps.push(gap);
    }
    if gaps.is_empty() {
        return Err((last_line.max(1), "the trace has no gaps".to_string()));
    }
    if gaps.iter().all(|g| *g == 0) {
        return Err((
            last_line,
            "every gap is zero (an infinite rate)".to_string(),
        ));
    }
    Ok(gaps)
}

fn parse_sla(doc: &Doc<'_>, f: Field<'_, '_, '_>) -> Result<Sla> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a table such as { latency_ms = 100, percentile = 95 }")?,
        &["latency_ms", "percentile"],
    )?;
    let missing =
        |key: &str, what: &str| doc.error(f.span(), &t.key(key), format!("missing: {what}"));
    let l = t
        .get("latency_ms")
        .ok_or_else(|| missing("latency_ms", "expected the SLA latency in milliseconds"))?;
    let what = "a latency in milliseconds above zero";
    let latency_ms = l.number(what)?;
    if latency_ms <= 0.0 {
        return Err(l.fail(format!("expected {what}, found {latency_ms}")));
    }
    let p = t
        .get("percentile")
        .ok_or_else(|| missing("percentile", "expected the SLA percentile, such as 95"))?;
    let what = "a percentile strictly between 0 and 100";
    let percentile = p.number(what)?;
    if percentile <= 0.0 || percentile >= 100.0 {
        return Err(p.fail(format!("expected {what}, found {percentile}")));
    }
    Ok(Sla {
        latency_ms,
        percentile,
    })
}

fn parse_batching(
    doc: &Doc<'_>,
    f: Field<'_, '_, '_>,
    model: &str,
    max_batch: Option<u32>,
) -> Result<DynamicBatching> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a table such as { max_queue_delay_us = 2000, preferred_batch_sizes = [4, 8] }")?,
        &["max_queue_delay_us", "preferred_batch_sizes"],
    )?;
    if max_batch == Some(1) {
        return Err(f.fail(format!("{model} does not batch (max batch 1)")));
    }
    let max_queue_delay_us = match t.get("max_queue_delay_us") {
        Some(d) => d.integer("a queue delay in microseconds", 0, 10_000_000)?,
        None => 0,
    };
    let mut preferred_batch_sizes = Vec::new();
    if let Some(p) = t.get("preferred_batch_sizes") {
        for (i, item) in p.array("an array of batch sizes")?.iter().enumerate() {
            let key = format!("{}[{i}]", p.key);
            let elem = Field {
                doc,
                key: &key,
                value: item,
            };
            let size = batch_size(&elem, model, max_batch, "a preferred batch size")?;
            if preferred_batch_sizes.contains(&size) {
                return Err(elem.fail(format!("batch size {size} is listed twice")));
            }
            preferred_batch_sizes.push(size);
        }
    }
    Ok(DynamicBatching {
        max_queue_delay_us,
        preferred_batch_sizes,
    })
}
