//! Helpers shared by the integration tests: synthetic runs for the recording tests (plausible
//! snapshots without an engine, here) and gRPC requests and addresses ([`triton`]).
#![allow(dead_code)]

pub mod sim;
pub mod triton;

use std::collections::BTreeMap;
use std::sync::Arc;

use perseus::session::RecordingHeader;
use perseus::vocab::snapshot::{
    ConnState, Connection, CostView, GpuView, History, Percentiles, Phase, Reading, Snapshot,
    SoloPeak, Source, TargetInfo, TargetKind, TenantView, Totals, WindowStats,
};
use perseus::vocab::spec::{Arrival, Load, Sla};

pub const TICK_S: f64 = 0.25;

pub fn target() -> TargetInfo {
    TargetInfo {
        kind: TargetKind::Emulated,
        address: "127.0.0.1:40001".into(),
        gpu: Some("t4".into()),
        server_version: Some("2.50.0".into()),
        model_control: true,
    }
}

pub fn header() -> RecordingHeader {
    let catalogs = BTreeMap::from([("prices".to_string(), "test".to_string())]);
    RecordingHeader::new("demo, with \"quotes\"/slashes", target(), catalogs)
}

pub fn tenant(id: u32, model: &str, seq: u64) -> TenantView {
    let k = seq as f64;
    TenantView {
        id,
        model: model.into(),
        load: if id.is_multiple_of(2) {
            Load::Rate {
                per_s: 100.0 + f64::from(id),
                arrival: Arrival::Poisson,
            }
        } else {
            Load::Concurrency(4)
        },
        paused: false,
        batch: 1,
        sla: Sla {
            latency_ms: 100.0,
            percentile: 95.0,
        },
        instances: Some(1),
        dynamic_batching: None,
        max_batch: Some(128),
        window: WindowStats {
            offered_per_s: 100.0 + k,
            achieved_per_s: 99.0 + k * 0.5,
            latency_ms: Percentiles {
                mean: 3.0,
                p50: 2.5 + k * 0.01,
                p90: 4.0,
                p95: 5.0,
                p99: 7.0 + k * 0.1,
                max: 20.0,
            },
            attainment: Some(0.99),
            sla_met: Some(true),
            goodput_per_s: 98.0,
            errors: seq % 3,
            ..Default::default()
        },
        totals: Totals {
            sent: seq * 25 + u64::from(id),
            ok: seq * 24,
            errors: seq,
            errors_by_code: BTreeMap::from([("UNAVAILABLE".to_string(), seq)]),
            ..Default::default()
        },
        server: None,
        solo_peak: SoloPeak::UNKNOWN,
        setup_error: None,
    }
}

/// A run's worth of snapshots: `ticks` ticks of `models`.
pub fn run(ticks: u64, models: &[&str]) -> Vec<Snapshot> {
    (0..ticks)
        .map(|seq| Snapshot {
            seq,
            elapsed_s: seq as f64 * TICK_S,
            measured_s: (seq as f64 * TICK_S - 1.0).max(0.0),
            phase: if seq < 4 {
                Phase::WarmingUp
            } else {
                Phase::Measuring
            },
            session: "demo".into(),
            target: target(),
            connection: Connection {
                state: ConnState::Connected,
                last_error: None,
                retries: 0,
            },
            paused: false,
            window_s: 10.0,
            tick_s: TICK_S,
            tenants: models
                .iter()
                .enumerate()
                .map(|(i, m)| tenant(i as u32, m, seq))
                .collect(),
            gpu: GpuView {
                utilization: Some(Reading {
                    value: 0.5 + (seq % 10) as f64 * 0.01,
                    source: Source::Emulator,
                    age_ms: 3,
                }),
                ..Default::default()
            },
            cost: Some(CostView {
                instance: Some("aws:g4dn.xlarge".into()),
                usd_per_hour: 0.526,
                throughput_per_s: 300.0,
                goodput_per_s: 299.0,
                usd_per_million: Some(0.487),
                goodput_usd_per_million: Some(0.489),
                monthly_usd: 384.0,
                dedicated_equivalents: Some(1.1),
                dedicated_instances: Some(3),
                dedicated_usd_per_hour: Some(1.578),
            }),
            frontier: None,
            capacity: None,
            whatif: None,
            notices: vec![],
            recording: None,
            recording_error: None,
            replay: None,
            client: Default::default(),
            repository: vec![],
            history: Arc::new(History::default()),
        })
        .collect()
}
