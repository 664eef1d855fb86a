//! Hand-built snapshots for the dashboard's tests and benchmark: fixed numbers, no engine, and a
//! history built through the real `History::push` from a deterministic sequence of snapshots.
#![allow(dead_code)]

use std::sync::Arc;

use perseus::vocab::capacity::{
    CapacityFigures, CapacityState, CapacityView, MixPrediction, Predicted, TenantPrediction,
};
use perseus::vocab::snapshot::{
    ConnState, Connection, CostView, FrontierView, GpuView, History, Notice, NoticeLevel, PeakKind,
    Percentiles, Phase, Reading, RepoModel, ServerWindow, Snapshot, SoloPeak, Source, TargetInfo,
    TargetKind, TenantView, Totals, WindowStats,
};
use perseus::vocab::spec::{Arrival, DynamicBatching, Load, Sla};

pub const TICK_S: f64 = 0.25;
/// 3 min 12 s, as in the design sketch.
pub const ELAPSED_S: f64 = 192.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

const MODELS: [&str; 8] = [
    "resnet50",
    "mobilenet_v2",
    "inception_v3",
    "densenet121",
    "vgg16",
    "efficientnet_b0",
    "squeezenet1_1",
    "resnet152",
];

fn reading(value: f64, source: Source) -> Option<Reading> {
    Some(Reading {
        value,
        source,
        age_ms: 120,
    })
}

fn percentiles(base_ms: f64) -> Percentiles {
    Percentiles {
        mean: base_ms,
        p50: base_ms * 0.9,
        p90: base_ms * 1.6,
        p95: base_ms * 1.9,
        p99: base_ms * 2.3,
        max: base_ms * 3.0,
    }
}

/// Tenant `i` at time `t`: rates and latencies wobble deterministically so charts have shape.
fn tenant(i: usize, t: f64) -> TenantView {
    let wobble = 1.0 + 0.25 * ((t / 7.0) + i as f64).sin();
    let base_ms = [4.1, 1.2, 6.3, 9.0, 12.0, 3.0, 1.5, 18.0][i % 8] * wobble;
    let (load, offered) = match i {
        2 => (Load::Concurrency(8), 80.0),
        _ => {
            let rate = [150.0, 400.0, 80.0, 60.0, 30.0, 200.0, 500.0, 20.0][i % 8];
            (
                Load::Rate {
                    per_s: rate,
                    arrival: if i == 1 {
                        Arrival::Constant
                    } else {
                        Arrival::Poisson
                    },
                },
                rate,
            )
        }
    };
    // Tenant 3 misses its SLA, tenant 2 is at risk; the others meet theirs.
    let attainment = match i {
        2 => 0.93,
        3 => 0.71,
        _ => 0.999,
    };
    let achieved = if i == 3 {
        offered * 0.8
    } else {
        offered * 0.998
    };
    TenantView {
        id: 10 + i as u32,
        model: MODELS[i % 8].to_string(),
        load,
        paused: i == 4,
        batch: 1,
        sla: Sla {
            latency_ms: if i == 3 {
                15.0
            } else {
                100.0 / (1 + i % 3) as f64
            },
            percentile: 95.0,
        },
        instances: Some(1 + (i % 2) as u32),
        dynamic_batching: i.is_multiple_of(2).then(|| DynamicBatching {
            max_queue_delay_us: 500,
            preferred_batch_sizes: vec![4, 8],
        }),
        max_batch: Some(8),
        window: WindowStats {
            offered_per_s: offered,
            achieved_per_s: achieved,
            latency_ms: percentiles(base_ms),
            service_latency_ms: percentiles(base_ms * 0.8),
            attainment: Some(attainment),
            sla_met: Some(i != 3),
            goodput_per_s: achieved * attainment,
            errors: if i == 3 { 12 } else { 0 },
            dropped: if i == 3 { 3 } else { 0 },
            late: 0,
            in_flight: 2,
            client_bound: None,
            saturated: None,
        },
        totals: Totals::default(),
        server: Some(ServerWindow {
            queue_us: 180.0 * (i + 1) as f64,
            compute_input_us: 40.0,
            compute_infer_us: base_ms * 600.0,
            compute_output_us: 20.0,
            request_us: None,
            avg_batch: 2.5,
            inferences_per_s: achieved,
            executions_per_s: achieved / 2.5,
        }),
        solo_peak: match i {
            0 => SoloPeak {
                kind: PeakKind::Computed,
                per_s: Some(420.0),
            },
            1 => SoloPeak {
                kind: PeakKind::Measured,
                per_s: Some(1180.0),
            },
            7 => SoloPeak::UNKNOWN,
            _ => SoloPeak {
                kind: PeakKind::Computed,
                per_s: Some(250.0),
            },
        },
        setup_error: None,
    }
}

/// The fixture mix's capacity, as the engine would show it: known while every tenant has a rate,
/// unknown once the closed-loop third tenant is in.
const HEADROOM: f64 = 1.6;

pub fn capacity(tenants: &[TenantView]) -> CapacityView {
    let state = if tenants
        .iter()
        .any(|t| matches!(t.load, Load::Concurrency(_)))
    {
        CapacityState::Unknown {
            reason: "tenant 3 (inception_v3) runs closed-loop: capacity scales rates".to_string(),
        }
    } else {
        let at = |rate: f64, ms: f64| Predicted {
            rate_per_s: rate,
            latency_ms: ms,
            attainment: 0.99,
            meets_sla: true,
        };
        CapacityState::Known(CapacityFigures {
            prediction: MixPrediction {
                gpu: "Tesla T4".to_string(),
                profile: None,
                headroom: HEADROOM,
                tenants: tenants
                    .iter()
                    .map(|t| {
                        let rate = match t.load {
                            Load::Rate { per_s, .. } => per_s,
                            Load::Concurrency(_) => 0.0,
                        };
                        TenantPrediction {
                            tenant: Some(t.id),
                            model: t.model.clone(),
                            now: at(rate, 8.0),
                            at_capacity: at(rate * HEADROOM, 40.0),
                        }
                    })
                    .collect(),
            },
            equivalents: Some(1.12),
            dedicated_instances: Some(2),
            dedicated_usd_per_hour: Some(1.052),
            savings_vs_dedicated_pct: Some(50.0),
            savings_vs_timeslicing_pct: Some(10.7),
        })
    };
    CapacityView {
        generation: 3,
        state,
    }
}

/// One snapshot of `n` tenants at time `t`, without history.
fn at(n: usize, t: f64) -> Snapshot {
    let tenants: Vec<TenantView> = (0..n).map(|i| tenant(i, t)).collect();
    let util = 0.71 + 0.1 * (t / 5.0).sin();
    let model_memory: Vec<(String, u64)> = tenants
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, tv)| (tv.model.clone(), ((0.4 + 0.3 * i as f64) * GIB) as u64))
        .collect();
    let equivalents = 1.12 + 0.05 * (t / 11.0).sin();
    let frontier = (n == 2).then(|| FrontierView {
        x: (10, "resnet50".to_string(), 420.0),
        y: (11, "mobilenet_v2".to_string(), 1180.0),
        point: (
            240.0 + 30.0 * (t / 13.0).sin(),
            680.0 + 80.0 * (t / 9.0).cos(),
        ),
        capacity_point: Some((150.0 * HEADROOM, 400.0 * HEADROOM)),
    });
    let tenants_for_capacity = tenants.clone();
    Snapshot {
        seq: (t / TICK_S).round() as u64,
        elapsed_s: t,
        measured_s: (t - 5.0).max(0.0),
        phase: Phase::Measuring,
        session: "demo".to_string(),
        target: TargetInfo {
            kind: TargetKind::Emulated,
            address: "127.0.0.1:40123".to_string(),
            gpu: Some("T4 16 GiB".to_string()),
            server_version: Some("2.50.0".to_string()),
            model_control: true,
        },
        connection: Connection {
            state: ConnState::Connected,
            last_error: None,
            retries: 0,
        },
        paused: false,
        window_s: 10.0,
        tick_s: TICK_S,
        tenants,
        gpu: GpuView {
            name: Some("Tesla T4".to_string()),
            uuid: Some("GPU-emulated-0".to_string()),
            utilization: reading(util, Source::Emulator),
            sm_activity: reading(util * 0.76, Source::Emulator),
            memory_used_bytes: reading(3.1 * GIB, Source::Emulator),
            memory_total_bytes: reading(16.0 * GIB, Source::Emulator),
            power_w: reading(48.0, Source::Emulator),
            power_limit_w: reading(70.0, Source::Emulator),
            sm_clock_mhz: reading(1590.0, Source::Emulator),
            temperature_c: reading(54.0, Source::Emulator),
            processes: Vec::new(),
            model_memory,
            unavailable: vec!["NVML unavailable: no NVIDIA driver on this machine".to_string()],
        },
        cost: Some(CostView {
            instance: Some("aws:g4dn.xlarge".to_string()),
            usd_per_hour: 0.526,
            throughput_per_s: 629.0,
            goodput_per_s: 620.0,
            usd_per_million: Some(0.232),
            goodput_usd_per_million: Some(0.236),
            monthly_usd: 384.0,
            dedicated_equivalents: Some(equivalents),
            dedicated_instances: Some(3),
            dedicated_usd_per_hour: Some(1.578),
        }),
        frontier,
        capacity: Some(capacity(&tenants_for_capacity)),
        whatif: None,
        notices: vec![Notice {
            at_s: 12.5,
            level: NoticeLevel::Info,
            text: "loaded inception_v3 (2 instances)".to_string(),
        }],
        recording: None,
        recording_error: None,
        replay: None,
        client: Default::default(),
        repository: repository(),
        history: Arc::new(History::default()),
    }
}

pub fn repository() -> Vec<RepoModel> {
    let entry = |name: &str, loaded: bool, mib: Option<u64>, fits: Option<bool>| RepoModel {
        name: name.to_string(),
        state: if loaded {
            "READY".to_string()
        } else {
            String::new()
        },
        loaded,
        memory_bytes: mib.map(|m| m * 1024 * 1024),
        fits,
    };
    vec![
        entry("resnet50", true, Some(410), Some(true)),
        entry("mobilenet_v2", true, Some(95), Some(true)),
        entry("inception_v3", true, Some(390), Some(true)),
        entry("vgg16", false, Some(14_500), Some(false)),
        entry("densenet121", false, None, None),
    ]
}

/// The dashboard's input after `ELAPSED_S` seconds of a run with `n` tenants, history included.
pub fn snapshot(n: usize) -> Snapshot {
    let mut history = History::for_tick(TICK_S);
    let ticks = (ELAPSED_S / TICK_S) as usize;
    for k in 0..=ticks {
        history.push(&at(n, k as f64 * TICK_S));
    }
    let mut snap = at(n, ELAPSED_S);
    snap.history = Arc::new(history);
    snap
}

/// A two-target fleet: `t4` with the first two tenants, `l4` (an L4 at its own price) with one,
/// its ids in its own range as a fleet gives them.
pub fn fleet() -> perseus::vocab::fleet::FleetView {
    use perseus::vocab::fleet::{FleetTarget, FleetView, TENANT_ID_STRIDE};
    let t4 = snapshot(2);
    let mut l4 = snapshot(3);
    l4.tenants.drain(..2);
    let mut history = (*l4.history).clone();
    history.tenants = std::mem::take(&mut history.tenants)
        .into_iter()
        .filter(|(id, _)| l4.tenants.iter().any(|t| t.id == *id))
        .map(|(id, h)| (id + TENANT_ID_STRIDE, h))
        .collect();
    l4.history = Arc::new(history);
    for t in &mut l4.tenants {
        t.id += TENANT_ID_STRIDE;
    }
    l4.target.gpu = Some("L4 24 GiB".to_string());
    l4.target.address = "127.0.0.1:40223".to_string();
    l4.gpu.name = Some("NVIDIA L4".to_string());
    if let Some(cost) = &mut l4.cost {
        cost.instance = Some("gcp:g2-standard-4".to_string());
        cost.usd_per_hour = 0.707;
    }
    FleetView::new(vec![
        FleetTarget {
            name: "t4".to_string(),
            snapshot: Arc::new(t4),
        },
        FleetTarget {
            name: "l4".to_string(),
            snapshot: Arc::new(l4),
        },
    ])
}
