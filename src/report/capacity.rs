//! The `capacity` block of `perseus.run.v1` and its summary line: how far the mix could grow, and
//! the savings at that point, the only place a savings figure is meaningful (DESIGN §4).

use serde::{Deserialize, Serialize};

use crate::vocab::capacity::{CapacityState, CapacityView};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityBlock {
    /// `known`, `unknown` (see `reason`) or `computing` (the run ended before the search did).
    pub status: String,
    pub reason: Option<String>,
    /// The catalog GPU whose model was used, and its calibration profile.
    pub gpu: Option<String>,
    pub profile: Option<String>,
    /// k: every rate × k still meets every SLA.
    pub headroom: Option<f64>,
    /// At capacity: Σ k·rateᵢ / peakᵢ.
    pub equivalents: Option<f64>,
    pub dedicated_instances: Option<u32>,
    pub dedicated_usd_per_hour: Option<f64>,
    pub savings_vs_dedicated_pct: Option<f64>,
    pub savings_vs_timeslicing_pct: Option<f64>,
    /// Each sending tenant at capacity.
    pub tenants: Vec<CapacityTenant>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityTenant {
    pub model: String,
    pub rate_per_s: f64,
    /// Predicted latency at the tenant's SLA percentile.
    pub latency_ms: f64,
    pub attainment: f64,
}

impl From<&CapacityView> for CapacityBlock {
    fn from(v: &CapacityView) -> Self {
        let mut block = CapacityBlock {
            status: String::new(),
            reason: None,
            gpu: None,
            profile: None,
            headroom: None,
            equivalents: None,
            dedicated_instances: None,
            dedicated_usd_per_hour: None,
            savings_vs_dedicated_pct: None,
            savings_vs_timeslicing_pct: None,
            tenants: Vec::new(),
        };
        match &v.state {
            CapacityState::Computing => block.status = "computing".into(),
            CapacityState::Unknown { reason } => {
                block.status = "unknown".into();
                block.reason = Some(reason.clone());
            }
            CapacityState::Known(f) => {
                let p = &f.prediction;
                block.status = "known".into();
                block.gpu = Some(p.gpu.clone());
                block.profile = p.profile.clone();
                block.headroom = Some(p.headroom);
                block.equivalents = f.equivalents;
                block.dedicated_instances = f.dedicated_instances;
                block.dedicated_usd_per_hour = f.dedicated_usd_per_hour;
                block.savings_vs_dedicated_pct = f.savings_vs_dedicated_pct;
                block.savings_vs_timeslicing_pct = f.savings_vs_timeslicing_pct;
                block.tenants = p
                    .tenants
                    .iter()
                    .map(|t| CapacityTenant {
                        model: t.model.clone(),
                        rate_per_s: t.at_capacity.rate_per_s,
                        latency_ms: t.at_capacity.latency_ms,
                        attainment: t.at_capacity.attainment,
                    })
                    .collect();
            }
        }
        block
    }
}

/// One line for the summary table.
pub fn summary_line(c: &CapacityBlock) -> String {
    let Some(k) = c.headroom else {
        return match &c.reason {
            Some(r) => format!("Capacity unknown: {r}"),
            None => "Capacity: still computing when the run ended".to_string(),
        };
    };
    let gpu = match (&c.gpu, &c.profile) {
        (Some(g), Some(p)) => format!("{g}, {p}"),
        (Some(g), None) => g.clone(),
        _ => "?".to_string(),
    };
    let mut line = format!("Capacity ({gpu} model): headroom ×{k:.2}");
    match c.equivalents {
        Some(eq) => {
            line.push_str(&format!(" · at capacity {eq:.2} equivalents"));
            if let Some(s) = c.savings_vs_timeslicing_pct {
                line.push_str(&format!(" → {} time-slicing", cheaper(s)));
            }
            if let (Some(n), Some(s)) = (c.dedicated_instances, c.savings_vs_dedicated_pct) {
                line.push_str(&format!(" · {} {n} dedicated GPUs", cheaper(s)));
            }
        }
        None => line.push_str(" · equivalents unknown (a solo peak is unknown)"),
    }
    line
}

/// "11% cheaper than" or "4% dearer than".
pub fn cheaper(pct: f64) -> String {
    if pct >= 0.0 {
        format!("{pct:.0}% cheaper than")
    } else {
        format!("{:.0}% dearer than", -pct)
    }
}
