//! Writing a run back out as a session file, for the TUI's "save session".
//!
//! The output is a session in the same format people write by hand (so it can be read, edited and
//! shared), and [`super::parse_session`] turns it back into an identical [`RunSpec`].

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::vocab::spec::{
    Arrival, CostSpec, FleetSpec, InputData, Load, RunSpec, TargetSpec, TenantSpec,
};

/// A TOML basic string with toml's own escaping.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn path(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// A float that reads back bit-for-bit (Rust's shortest round-trip form, in TOML spelling).
fn number(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x:?}")
    }
}

fn duration(d: Duration) -> String {
    if d.is_zero() {
        quote("0s")
    } else {
        quote(&humantime::format_duration(d).to_string())
    }
}

/// The session file for `spec`.
pub fn to_toml(spec: &RunSpec) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_spec(&mut out, spec);
    out
}

/// The session file for every target of `fleet`: a single unnamed target is written as
/// [`to_toml`] writes it, several as `[[target]]` tables with each tenant naming its own.
pub fn fleet_to_toml(fleet: &FleetSpec) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_fleet(&mut out, fleet);
    out
}

fn write_fleet(out: &mut String, fleet: &FleetSpec) -> std::fmt::Result {
    match fleet.targets.as_slice() {
        [] => Ok(()),
        [only] if only.name.is_none() => write_spec(out, &only.spec),
        [first, ..] => {
            write_header(out, &first.spec)?;
            for t in &fleet.targets {
                writeln!(out, "\n[[target]]")?;
                writeln!(out, "name = {}", quote(t.label()))?;
                write_target(out, &t.spec)?;
                write_price(out, &t.spec.cost)?;
            }
            for t in &fleet.targets {
                for tenant in &t.spec.tenants {
                    write_tenant(out, tenant, Some(t.label()))?;
                }
            }
            Ok(())
        }
    }
}

fn write_header(out: &mut String, spec: &RunSpec) -> std::fmt::Result {
    writeln!(out, "# Saved by Perseus; see DESIGN §3 for the format.")?;
    writeln!(out, "name = {}", quote(&spec.name))?;
    writeln!(out, "duration = {}", duration(spec.duration))?;
    writeln!(out, "warmup = {}", duration(spec.warmup))?;
    writeln!(out, "window = {}", duration(spec.window))?;
    writeln!(out, "tick = {}", duration(spec.tick))
}

fn write_spec(out: &mut String, spec: &RunSpec) -> std::fmt::Result {
    write_header(out, spec)?;
    writeln!(out, "\n[target]")?;
    write_target(out, spec)?;
    writeln!(out, "\n[cost]")?;
    write_price(out, &spec.cost)?;
    for tenant in &spec.tenants {
        write_tenant(out, tenant, None)?;
    }
    Ok(())
}

fn write_price(out: &mut String, cost: &CostSpec) -> std::fmt::Result {
    match cost {
        CostSpec::Instance(name) => writeln!(out, "instance = {}", quote(name)),
        CostSpec::UsdPerHour(usd) => writeln!(out, "usd_per_hour = {}", number(*usd)),
    }
}

/// The keys of a target table (after its header and name).
fn write_target(out: &mut String, spec: &RunSpec) -> std::fmt::Result {
    match &spec.target {
        TargetSpec::Emulated { gpu, profile } => {
            writeln!(out, "emulate = {}", quote(gpu))?;
            if let Some(p) = profile {
                writeln!(out, "profile = {}", quote(p))?;
            }
        }
        TargetSpec::Triton {
            address,
            metrics,
            gpu,
            tls,
        } => {
            writeln!(out, "triton = {}", quote(address))?;
            if let Some(m) = metrics {
                writeln!(out, "metrics = {}", quote(m))?;
            }
            if let Some(g) = gpu {
                // A plain index is written as an integer, as a person would.
                match g.parse::<u32>() {
                    Ok(i) if i.to_string() == *g => writeln!(out, "gpu = {i}")?,
                    _ => writeln!(out, "gpu = {}", quote(g))?,
                }
            }
            if let Some(tls) = tls {
                let mut parts = Vec::new();
                if let Some(p) = &tls.ca_file {
                    parts.push(format!("ca = {}", path(p)));
                }
                if let Some(p) = &tls.cert_file {
                    parts.push(format!("cert = {}", path(p)));
                }
                if let Some(p) = &tls.key_file {
                    parts.push(format!("key = {}", path(p)));
                }
                if let Some(d) = &tls.domain {
                    parts.push(format!("domain = {}", quote(d)));
                }
                writeln!(out, "tls = {{ {} }}", parts.join(", "))?;
            }
        }
    }
    if let Some(t) = spec.transport {
        writeln!(out, "transport = {}", quote(t.label()))?;
    }

    Ok(())
}

fn write_tenant(out: &mut String, t: &TenantSpec, target: Option<&str>) -> std::fmt::Result {
    writeln!(out, "\n[[tenant]]")?;
    writeln!(out, "model = {}", quote(&t.model))?;
    if let Some(name) = target {
        writeln!(out, "target = {}", quote(name))?;
    }
    match &t.load {
        Load::Concurrency(n) => writeln!(out, "concurrency = {n}")?,
        Load::Rate { per_s, arrival } => {
            writeln!(out, "rate = {}", number(*per_s))?;
            match arrival {
                Arrival::Poisson => writeln!(out, "arrival = \"poisson\"")?,
                Arrival::Constant => writeln!(out, "arrival = \"constant\"")?,
                Arrival::Bursty {
                    burst_factor,
                    mean_on,
                    mean_off,
                } => {
                    writeln!(out, "arrival = \"bursty\"")?;
                    writeln!(
                        out,
                        "burst = {{ factor = {}, on = {}, off = {} }}",
                        number(*burst_factor),
                        duration(*mean_on),
                        duration(*mean_off)
                    )?;
                }
                Arrival::Trace { path: p, .. } => {
                    writeln!(out, "arrival = {{ trace = {} }}", path(p))?;
                }
            }
        }
    }
    writeln!(out, "batch = {}", t.batch)?;
    writeln!(
        out,
        "sla = {{ latency_ms = {}, percentile = {} }}",
        number(t.sla.latency_ms),
        number(t.sla.percentile)
    )?;
    if let Some(n) = t.instances {
        writeln!(out, "instances = {n}")?;
    }
    if let Some(db) = &t.dynamic_batching {
        let sizes: Vec<String> = db
            .preferred_batch_sizes
            .iter()
            .map(u32::to_string)
            .collect();
        writeln!(
            out,
            "dynamic_batching = {{ max_queue_delay_us = {}, preferred_batch_sizes = [{}] }}",
            db.max_queue_delay_us,
            sizes.join(", ")
        )?;
    }
    let data = match t.data {
        InputData::Zero => "zero",
        InputData::Random => "random",
    };
    writeln!(out, "data = \"{data}\"")?;
    writeln!(out, "max_in_flight = {}", t.max_in_flight)?;
    writeln!(out, "deadline = {}", duration(t.deadline))?;
    if !t.inputs.is_empty() {
        let inputs: Vec<String> = t
            .inputs
            .iter()
            .map(|i| {
                let dims: Vec<String> = i.shape.iter().map(i64::to_string).collect();
                format!(
                    "{{ name = {}, datatype = {}, shape = [{}] }}",
                    quote(&i.name),
                    quote(&i.datatype),
                    dims.join(", ")
                )
            })
            .collect();
        writeln!(out, "inputs = [{}]", inputs.join(", "))?;
    }
    Ok(())
}

/// Writes `spec` as a session file so that a crash (or a second writer) leaves either the old
/// file or the new one, never half of either.
pub fn save_atomic(spec: &RunSpec, path: &Path) -> io::Result<()> {
    crate::atomic::write_atomic(path, to_toml(spec).as_bytes())
}

/// As [`save_atomic`], for a session with several targets.
pub fn save_fleet_atomic(fleet: &FleetSpec, path: &Path) -> io::Result<()> {
    crate::atomic::write_atomic(path, fleet_to_toml(fleet).as_bytes())
}

/// A new file name for a saved session in `dir` (`<timestamp>-<session>.toml`), for the TUI's
/// "save" when the user gives no path; numbered if that name is taken.
pub fn fresh_session_path(dir: &Path, session_name: &str) -> PathBuf {
    let base = format!(
        "{}-{}",
        super::recording::timestamp(),
        super::recording::file_stem(session_name)
    );
    let mut path = dir.join(format!("{base}.toml"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{base}-{n}.toml"));
        n += 1;
    }
    path
}
