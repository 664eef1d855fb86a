//! `perseus predict`: a session's tenants on the emulator's GPU model in virtual time.
//!
//! It is `perseus run` without the wall clock: the same session, the server configuration the emulator
//! would serve, the very arrival sequences the load generator would send (same processes, same seeds),
//! and the same `perseus.run.v1` result, so a prediction and a run can be compared figure by figure.

use std::path::Path;

use anyhow::anyhow;

mod client;

pub use client::ClientCosts;
use client::measured_clients;

use crate::catalog::Catalog;
use crate::cli::PredictArgs;
use crate::commands::run::load_session;
use crate::commands::{BadInput, Failure, load_catalog, load_prices};
use crate::emulator::sim::{self, ClosedLoop, Demand, ModelReport, Offered, SimReport};
use crate::loadgen::ArrivalProcess;
use crate::report::{
    self, CostBlock, GpuBlock, RunResult, ServerBlock, ServerLatency, SlaBlock, TenantBlock,
};
use crate::session::Config;
use crate::vocab::capacity::{CapacityEstimate, CapacityState, CapacityView};
use crate::vocab::snapshot::{PeakKind, Percentiles, SoloPeak};
use crate::vocab::spec::{Load, RunSpec, TargetSpec, TenantSpec};

/// Seed of tenant `index`'s arrivals: the engine's, so a prediction sees the arrivals a run sends.
fn arrival_seed(index: usize) -> u64 {
    0x5eed_0000 + index as u64
}

/// Seed of tenant `index`'s send delays: its own stream, so another tenant's draws never shift it.
fn lateness_seed(index: usize) -> u64 {
    0x1a7e_0000 + index as u64
}

pub async fn predict(args: PredictArgs, config: &Config) -> Result<(), Failure> {
    let catalog = load_catalog(config)?;
    let prices = load_prices(config)?;
    let mut spec = load_session(&args.session, &catalog, &prices, config)?;
    if let Some(d) = args.duration {
        spec.duration = d;
    }
    let price = prices.resolve(&spec.cost).bad_input()?;
    let gpu = args.gpu.clone();
    let clients = match &args.client_from {
        Some(path) => measured_clients(path, &spec)?,
        None => vec![
            ClientCosts {
                turnaround: args.turnaround.unwrap_or_default(),
                ..ClientCosts::default()
            };
            spec.tenants.len()
        ],
    };
    let result = tokio::task::spawn_blocking(move || {
        prediction(&spec, gpu.as_deref(), &clients, &catalog, &price)
    })
    .await
    .map_err(|e| Failure::Target(anyhow!("the prediction stopped unexpectedly: {e}")))??;
    // With the JSON on stdout, the table goes to stderr, as `perseus run` does.
    if args.json.as_deref() == Some(Path::new("-")) {
        eprint!("{}", report::table(&result));
    } else {
        print!("{}", report::table(&result));
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&result).map_err(|e| Failure::Target(e.into()))?;
        write_json(path, &json)?;
    }
    Ok(())
}

/// The session on its GPU model: warm-up and measured period as `perseus run` has them, each
/// tenant's client with the costs in `clients`.
pub fn prediction(
    spec: &RunSpec,
    gpu_override: Option<&str>,
    clients: &[ClientCosts],
    catalog: &Catalog,
    price: &crate::cost::ResolvedPrice,
) -> Result<RunResult, Failure> {
    let (gpu, profile) = predicted_gpu(spec, gpu_override)?;
    let gpu_spec = catalog
        .gpu(&gpu)
        .ok_or_else(|| Failure::BadInput(anyhow!("unknown GPU '{gpu}' in the catalog")))?;
    let gpu_setup = sim::gpu_setup(gpu_spec);
    let setups = served_setups(spec, catalog, gpu_spec, profile.as_deref())?;
    let run = |clients: &[ClientCosts]| {
        sim::simulate_demands(
            &gpu_setup,
            demands(spec, &setups, clients),
            spec.warmup.as_secs_f64(),
            spec.duration.as_secs_f64(),
        )
        .map_err(|e| Failure::BadInput(anyhow!("{e}")))
    };
    let mut report = run(clients)?;
    // Tenants sharing a model share its server statistics: their turnarounds are split anew,
    // the model's server time shared out as this prediction has it, and the session run again.
    let split = client::split_shared(spec, clients, &report);
    let clients = match split {
        Some(split) => {
            report = run(&split)?;
            split
        }
        None => clients.to_vec(),
    };
    let peaks: Vec<SoloPeak> = spec
        .tenants
        .iter()
        .zip(&setups)
        .map(|(t, s)| solo_peak(&gpu_setup, s, t))
        .collect();
    let estimate =
        super::capacity::mix_capacity(catalog, gpu_spec, profile.as_deref(), &spec.tenants);
    let mut result = result(spec, gpu_spec, &report, &peaks, price);
    for (t, client) in result.tenants.iter_mut().zip(&clients) {
        t.client_ms = Some(client.turnaround.as_secs_f64() * 1e3);
        t.send_lateness_ms.clone_from(&client.lateness);
    }
    result.fill_client_tails();
    result.capacity = Some(capacity_block(estimate, &peaks, price));
    Ok(result)
}

/// The catalog GPU and profile to predict on: `--gpu` where given, else the emulated target's. A real
/// Triton says nothing over its protocol about the GPU it runs on, so such a session needs `--gpu`.
fn predicted_gpu(
    spec: &RunSpec,
    gpu_override: Option<&str>,
) -> Result<(String, Option<String>), Failure> {
    match (&spec.target, gpu_override) {
        // The profile belongs to the session's GPU; another GPU is predicted with its own figures.
        (TargetSpec::Emulated { gpu, profile }, Some(g)) if g == gpu => {
            Ok((gpu.clone(), profile.clone()))
        }
        (_, Some(g)) => Ok((g.to_string(), None)),
        (TargetSpec::Emulated { gpu, profile }, None) => Ok((gpu.clone(), profile.clone())),
        (_, None) => Err(Failure::BadInput(anyhow!(
            "session '{}' targets a real Triton, whose GPU predict cannot know: pass --gpu NAME \
             with the catalog GPU it runs on (`perseus catalog` lists them)",
            spec.name
        ))),
    }
}

/// Each tenant's load for the sim, its client's costs added.
fn demands<'a>(
    spec: &RunSpec,
    setups: &[sim::ModelSetup],
    clients: &[ClientCosts],
) -> Vec<Demand<'a>> {
    let mut offered = Vec::with_capacity(spec.tenants.len());
    for (index, (tenant, setup)) in spec.tenants.iter().zip(setups).enumerate() {
        let client = clients.get(index).cloned().unwrap_or_default();
        let turnaround_s = client.turnaround.as_secs_f64();
        let lateness = client.lateness.map(|quantiles| sim::Lateness {
            quantiles,
            seed: lateness_seed(index),
        });
        offered.push(match &tenant.load {
            Load::Rate { per_s, arrival } => {
                let mut process = ArrivalProcess::new(arrival, *per_s, arrival_seed(index));
                Demand::OpenWithTurnaround {
                    offered: Offered {
                        setup: setup.clone(),
                        batch: tenant.batch,
                        rate_per_s: *per_s,
                        gaps: Box::new(move || process.next_gap().as_secs_f64()),
                    },
                    turnaround_s,
                    lateness,
                }
            }
            // N in flight from the start, each successor sent as its predecessor completes.
            Load::Concurrency(n) => Demand::Closed(ClosedLoop {
                setup: setup.clone(),
                batch: tenant.batch,
                concurrency: *n,
                turnaround_s,
                lateness,
            }),
        });
    }
    offered
}

/// Each tenant's model as the server runs it. Tenants of one model share it on the server, loaded
/// with the configuration of the first tenant that sets one (instances, dynamic batching).
fn served_setups(
    spec: &RunSpec,
    catalog: &Catalog,
    gpu: &crate::catalog::GpuSpec,
    profile: Option<&str>,
) -> Result<Vec<sim::ModelSetup>, Failure> {
    spec.tenants
        .iter()
        .map(|tenant| {
            let configured = spec
                .tenants
                .iter()
                .filter(|t| t.model == tenant.model)
                .find(|t| t.instances.is_some() || t.dynamic_batching.is_some())
                .unwrap_or(tenant);
            crate::emulator::served_setup(
                catalog,
                gpu,
                profile,
                &tenant.model,
                configured.instances,
                configured.dynamic_batching.as_ref(),
            )
            .ok_or_else(|| {
                Failure::BadInput(anyhow!(
                    "model '{}' has no performance entry for GPU '{}'",
                    tenant.model,
                    gpu.name
                ))
            })
        })
        .collect()
}

/// The same `capacity` block a run writes, from the same search.
fn capacity_block(
    estimate: CapacityEstimate,
    peaks: &[SoloPeak],
    price: &crate::cost::ResolvedPrice,
) -> report::CapacityBlock {
    let state = match estimate {
        CapacityEstimate::Known(p) => {
            CapacityState::Known(crate::cost::capacity_figures(Some(price), p, peaks))
        }
        CapacityEstimate::Unknown { reason } => CapacityState::Unknown { reason },
    };
    report::CapacityBlock::from(&CapacityView {
        generation: 0,
        state,
    })
}

/// A tenant's solo peak on the model, as the engine computes it for an emulated target.
pub(super) fn solo_peak(
    gpu: &sim::GpuSetup,
    setup: &sim::ModelSetup,
    tenant: &TenantSpec,
) -> SoloPeak {
    match sim::solo_peak(
        gpu,
        setup,
        tenant.batch,
        tenant.sla.latency_ms,
        tenant.sla.percentile,
    ) {
        Ok(per_s) if per_s > 0.0 => SoloPeak {
            kind: PeakKind::Computed,
            per_s: Some(per_s),
        },
        _ => SoloPeak::UNKNOWN,
    }
}

fn result(
    spec: &RunSpec,
    gpu: &crate::catalog::GpuSpec,
    report: &SimReport,
    peaks: &[SoloPeak],
    price: &crate::cost::ResolvedPrice,
) -> RunResult {
    let measured_s = spec.duration.as_secs_f64();
    let mut tenants: Vec<TenantBlock> = spec
        .tenants
        .iter()
        .zip(&report.models)
        .zip(peaks)
        .map(|((t, m), peak)| tenant_block(t, m, *peak, measured_s))
        .collect();
    for (i, t) in tenants.iter_mut().enumerate() {
        t.server_latency_ms = server_latency(spec, report, i);
    }
    let loads: Vec<crate::cost::TenantLoad> = tenants
        .iter()
        .zip(peaks)
        .map(|(t, peak)| crate::cost::TenantLoad {
            achieved_per_s: t.achieved_rate,
            goodput_per_s: t.goodput,
            solo_peak: *peak,
        })
        .collect();
    let v = crate::cost::cost_view(price, &loads);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    RunResult {
        schema: report::SCHEMA.to_string(),
        session: spec.name.clone(),
        target: report::TargetBlock {
            kind: "predicted".to_string(),
            gpu: Some(gpu.display.clone()),
            address: "virtual time".to_string(),
        },
        duration_s: measured_s,
        tenants,
        // Virtual time has no client machine to be the bottleneck.
        client_bound: None,
        gpu: Some(GpuBlock {
            source: Some("emulator".to_string()),
            name: Some(gpu.display.clone()),
            util_mean: Some(report.gpu_utilization),
            sm_activity_mean: Some(report.sm_activity),
            memory_used_mb: Some(mib(report.memory_used_bytes)),
            memory_total_mb: Some(mib(report.memory_total_bytes)),
            power_w_mean: Some(report.mean_power_w),
            sources: ["util", "sm_activity", "memory", "power"]
                .iter()
                .map(|k| ((*k).to_string(), "emulator".to_string()))
                .collect(),
            unavailable: Vec::new(),
        }),
        cost: Some(CostBlock::from(v)),
        capacity: None,
    }
}

/// Tenant `index`'s model's server time at the summary's quantiles, over every tenant of that
/// model, as Triton's per-model summary has it.
fn server_latency(spec: &RunSpec, report: &SimReport, index: usize) -> Option<ServerLatency> {
    let model = &spec.tenants.get(index)?.model;
    let mut merged = report.models.get(index)?.server_us.clone();
    merged.reset();
    for (t, m) in spec.tenants.iter().zip(&report.models) {
        if &t.model == model {
            merged.add(&m.server_us).ok()?;
        }
    }
    if merged.is_empty() {
        return None;
    }
    let ms = |q: f64| Some(merged.value_at_quantile(q) as f64 / 1000.0);
    Some(ServerLatency {
        p50: ms(0.5),
        p90: ms(0.9),
        p95: ms(0.95),
        p99: ms(0.99),
    })
}

fn tenant_block(t: &TenantSpec, m: &ModelReport, peak: SoloPeak, measured_s: f64) -> TenantBlock {
    let (arrival, target_rate, concurrency) = match &t.load {
        Load::Rate { per_s, arrival } => (arrival.label().to_string(), Some(*per_s), None),
        Load::Concurrency(n) => ("concurrency".to_string(), None, Some(*n)),
    };
    let ms = |q: f64| m.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let latency = Percentiles {
        mean: m.mean_latency_ms,
        p50: ms(0.50),
        p90: ms(0.90),
        p95: ms(0.95),
        p99: ms(0.99),
        max: m.latency_us.max() as f64 / 1000.0,
    };
    let sla_us = (t.sla.latency_ms * 1000.0) as u64;
    let within = m.latency_us.count_between(0, sla_us);
    let attainment = (m.submitted > 0).then(|| within as f64 / m.submitted as f64);
    let c = &m.counters;
    let mean = |ns: u64, count: u64| {
        if count == 0 {
            0.0
        } else {
            ns as f64 / count as f64 / 1e6
        }
    };
    TenantBlock {
        model: t.model.clone(),
        arrival,
        target_rate,
        concurrency,
        achieved_rate: m.completed as f64 / measured_s.max(1e-9),
        sent: m.submitted,
        ok: m.completed,
        errors: m.submitted.saturating_sub(m.completed),
        errors_by_code: std::collections::BTreeMap::new(),
        first_error_by_code: std::collections::BTreeMap::new(),
        dropped: 0,
        late: 0,
        client_bound: None,
        saturated: None,
        latency_ms: latency,
        service_latency_ms: latency,
        client_ms: None,
        send_lateness_ms: None,
        server_latency_ms: None,
        client_tail_ms: None,
        server_ms: Some(ServerBlock {
            queue: mean(c.queue_ns, c.queue_count),
            compute_input: mean(c.compute_input_ns, c.compute_input_count),
            compute_infer: mean(c.compute_infer_ns, c.compute_infer_count),
            compute_output: mean(c.compute_output_ns, c.compute_output_count),
        }),
        avg_batch: Some(m.mean_batch),
        sla: SlaBlock {
            latency_ms: t.sla.latency_ms,
            percentile: t.sla.percentile,
            attainment,
            met: Some(m.latency_ms(t.sla.percentile) <= t.sla.latency_ms),
        },
        goodput: within as f64 / measured_s.max(1e-9),
        solo_peak: peak.per_s,
        solo_peak_kind: match peak.kind {
            PeakKind::Computed => "computed",
            PeakKind::Measured => "measured",
            PeakKind::Unknown => "unknown",
        }
        .to_string(),
    }
}

fn write_json(path: &Path, content: &str) -> Result<(), Failure> {
    if path == Path::new("-") {
        println!("{content}");
        return Ok(());
    }
    std::fs::write(path, content)
        .map_err(|e| Failure::BadInput(anyhow!("writing {}: {e}", path.display())))
}
