//! How far the mix could grow: the capacity of a setup as a GPU model predicts it, and the view of
//! it the engine publishes.
//!
//! Equivalents and savings mean something only at the frontier (DESIGN §4), so they live here, at
//! k × the operating point, and nowhere below it.

use serde::{Deserialize, Serialize};

use crate::vocab::snapshot::TenantId;

/// What a target's GPU model says about a mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CapacityEstimate {
    Known(MixPrediction),
    /// No model fits (a real GPU the catalog does not know, a closed-loop tenant…), with why.
    Unknown {
        reason: String,
    },
}

/// A mix's predicted figures now and at capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixPrediction {
    /// The catalog GPU whose model was used, as NVML would name it.
    pub gpu: String,
    /// The calibration profile, where one was used.
    pub profile: Option<String>,
    /// k: the largest common scale of every rate at which every SLA still holds.
    pub headroom: f64,
    /// In the order of the mix asked about.
    pub tenants: Vec<TenantPrediction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantPrediction {
    /// The tenant this is for, where it is a live one (a staged new tenant has none).
    pub tenant: Option<TenantId>,
    pub model: String,
    pub now: Predicted,
    pub at_capacity: Predicted,
}

/// One tenant's predicted figures at one scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    pub rate_per_s: f64,
    /// Latency at the tenant's SLA percentile, milliseconds.
    pub latency_ms: f64,
    pub attainment: f64,
    pub meets_sla: bool,
}

/// The live mix's capacity as the snapshot carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityView {
    /// The setup generation this view belongs to: the engine counts every change of rates,
    /// instances, batching or tenants, and shows a result only for the generation it was computed for.
    pub generation: u64,
    pub state: CapacityState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CapacityState {
    /// Being computed for this generation.
    Computing,
    Unknown {
        reason: String,
    },
    Known(CapacityFigures),
}

/// Capacity with what the mix is worth there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFigures {
    pub prediction: MixPrediction,
    /// Σ k·rateᵢ / peakᵢ; `None` when any solo peak is unknown.
    pub equivalents: Option<f64>,
    /// Σ ⌈k·rateᵢ / peakᵢ⌉: whole GPUs one-per-model serving would need at capacity.
    pub dedicated_instances: Option<u32>,
    pub dedicated_usd_per_hour: Option<f64>,
    pub savings_vs_dedicated_pct: Option<f64>,
    pub savings_vs_timeslicing_pct: Option<f64>,
}

impl CapacityView {
    pub fn figures(&self) -> Option<&CapacityFigures> {
        match &self.state {
            CapacityState::Known(f) => Some(f),
            _ => None,
        }
    }
}

/// The dashboard's staged setup and what the GPU model predicts for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatIfView {
    /// The staging the TUI sent (it counts its edits), so it can tell a reply to an older staging.
    pub stage: u64,
    /// `None` while it is being computed.
    pub estimate: Option<CapacityEstimate>,
}
