//! The report of a multi-target run (schema `perseus.run.v2`): one block per target holding what
//! a `perseus.run.v1` result holds for it, plus the fleet line.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{CsvRow, RunResult, table};
use crate::vocab::fleet::{FleetLine, Span};
use crate::vocab::snapshot::{ConnState, Snapshot};

pub const SCHEMA_V2: &str = "perseus.run.v2";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetResult {
    pub schema: String,
    pub session: String,
    pub targets: Vec<TargetRun>,
    /// Summed over the targets' run totals.
    pub fleet: FleetLine,
}

/// One target's part of the run: its name, how its connection ended, and its v1 result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRun {
    pub name: String,
    pub connection: ConnectionBlock,
    #[serde(flatten)]
    pub run: RunResult,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionBlock {
    /// `connected`, `connecting` or `disconnected` at the end of the run.
    pub state: String,
    /// Connection attempts that failed over the run.
    pub retries: u32,
    pub last_error: Option<String>,
}

/// Builds the v2 result from each target's (name, v1 result, final snapshot).
pub fn fleet_result(session: &str, targets: Vec<(String, RunResult, &Snapshot)>) -> FleetResult {
    let fleet = FleetLine::of(
        targets.iter().map(|(name, _, snap)| (name.as_str(), *snap)),
        Span::Totals,
    );
    let targets = targets
        .into_iter()
        .map(|(name, run, snap)| TargetRun {
            name,
            connection: ConnectionBlock {
                state: match snap.connection.state {
                    ConnState::Connected => "connected",
                    ConnState::Connecting => "connecting",
                    ConnState::Disconnected => "disconnected",
                }
                .to_string(),
                retries: snap.connection.retries,
                last_error: snap.connection.last_error.clone(),
            },
            run,
        })
        .collect();
    FleetResult {
        schema: SCHEMA_V2.to_string(),
        session: session.to_string(),
        targets,
        fleet,
    }
}

/// The summary of a multi-target run: each target's table under its name, then the fleet line.
pub fn fleet_table(r: &FleetResult) -> String {
    let mut out = String::new();
    for t in &r.targets {
        let _ = writeln!(
            out,
            "── target {} ({}) ──",
            t.name,
            match t.connection.last_error.as_deref() {
                Some(e) if t.connection.state != "connected" => {
                    format!("{}: {e}", t.connection.state)
                }
                _ => t.connection.state.clone(),
            }
        );
        out.push_str(&table(&t.run));
        out.push('\n');
    }
    out.push_str(&fleet_line(&r.fleet));
    out
}

/// `Fleet: 2 targets · $1.33/h · 480.0 inf/s · goodput 478.2/s · worst SLA 99.1% (resnet50 on gpu-a)`
fn fleet_line(f: &FleetLine) -> String {
    let worst = match &f.worst_sla {
        Some(w) => format!(
            "worst SLA {:.1}% ({} on {})",
            w.attainment * 100.0,
            w.tenant,
            w.target
        ),
        None => "worst SLA –".to_string(),
    };
    let per_million = if f.throughput_per_s > 0.0 {
        format!(
            " · ${:.4} per 1M",
            f.usd_per_hour / (f.throughput_per_s * 3600.0) * 1e6
        )
    } else {
        String::new()
    };
    format!(
        "Fleet: ${:.3}/h · {:.1} inf/s · goodput {:.1}/s{per_million} · {worst}\n",
        f.usd_per_hour, f.throughput_per_s, f.goodput_per_s
    )
}

/// One CSV row per tenant of every target, with a `target` column after `session`.
pub fn fleet_csv(r: &FleetResult) -> std::io::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut any = false;
    for t in &r.targets {
        for tenant in &t.run.tenants {
            w.serialize(CsvRow::new(&r.session, Some(&t.name), tenant))?;
            any = true;
        }
    }
    if !any {
        w.write_record(["session", "target"])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    String::from_utf8(bytes).map_err(std::io::Error::other)
}
