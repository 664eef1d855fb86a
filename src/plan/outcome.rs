//! A plan and its two baselines as results: what each GPU hosts and how, what it costs, and what the
//! GPU model predicts for it; the `perseus.plan.v1` JSON is these types serialised.

use std::fmt::Write as _;

use serde::Serialize;

use std::sync::Arc;

use super::oracle::{Dominated, Sharing, VirtualTime};
use super::search::{self, Bin, Oracle};
use super::{ArrivalSource, GpuOption, PlanError, PlanInput, Progress};
use crate::catalog::Catalog;
use crate::cost::monthly_usd;
use crate::vocab::spec::DynamicBatching;

/// The JSON schema's name; bumped on any incompatible change.
pub const SCHEMA: &str = "perseus.plan.v1";

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub schema: String,
    pub session: String,
    /// Fraction: every GPU's mix meets every SLA at (1 + headroom) × its rates.
    pub headroom: f64,
    pub seed: u64,
    pub gpus_considered: Vec<GpuOption>,
    /// Types left out of the search: another serves every tenant at least as well for no more.
    pub gpus_dominated: Vec<Dominated>,
    pub plan: Placement,
    pub baselines: Baselines,
    /// The plan and the baselines, cheapest first.
    pub ranking: Vec<Ranked>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// One GPU per tenant (or per shard of a split tenant), each on its cheapest type.
    pub dedicated: Placement,
    /// All tenants time-sliced on one GPU type; `None` when no type serves every tenant.
    pub time_sliced: Option<TimeSliced>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
    pub gpus: Vec<GpuPlan>,
}

/// One GPU of a placement.
#[derive(Debug, Clone, Serialize)]
pub struct GpuPlan {
    pub gpu: String,
    pub display: String,
    pub instance: String,
    pub usd_per_hour: f64,
    /// `co-located` in one server, or `time-sliced` between dedicated deployments.
    pub sharing: Sharing,
    /// The largest common scale of its tenants' rates that still meets every SLA.
    pub capacity: f64,
    /// Σ rateᵢ / solo peakᵢ at capacity: dedicated GPUs this one replaces.
    pub equivalents_at_capacity: f64,
    pub tenants: Vec<PlacedTenant>,
}

/// A tenant (or one shard of it) on a GPU.
#[derive(Debug, Clone, Serialize)]
pub struct PlacedTenant {
    /// 1-based, as in the session file.
    pub tenant: usize,
    pub model: String,
    /// This GPU's share of the tenant's rate.
    pub rate_per_s: f64,
    /// Over how many GPUs the tenant is split (1: not split).
    pub split: u32,
    pub instances: u32,
    pub dynamic_batching: Option<DynamicBatching>,
    pub sla_ms: f64,
    pub percentile: f64,
    /// Latency at the SLA's percentile at the tenant's rate, predicted in virtual time.
    pub predicted_ms: f64,
    pub solo_peak_per_s: f64,
}

/// Time-slicing one GPU type between dedicated deployments: ⌈Σ rateᵢ·(1 + headroom) / peakᵢ⌉ GPUs.
#[derive(Debug, Clone, Serialize)]
pub struct TimeSliced {
    pub gpu: String,
    pub instance: String,
    pub fraction: f64,
    pub gpus: u32,
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
    /// Whether time-slicing that many GPUs meets every SLA with the headroom in virtual time
    /// (each tenant alone on its slice); the formula alone assumes it does.
    pub verified: bool,
    /// How many GPUs time-slicing took in virtual time (`None`: a tenant cannot run there).
    pub verified_gpus: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// `plan`, `time-sliced` or `dedicated`.
    pub option: String,
    /// False for a baseline the virtual-time check did not confirm.
    pub verified: bool,
    pub gpus: usize,
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
}

/// Plans `input` on the GPU model: the search, then each GPU's capacity and predictions, and the
/// baselines beside it.
/// Plans `input` on the GPU model: the search, then each GPU's capacity and predictions, and the
/// baselines beside it. A time-sliced baseline verified in virtual time is one of the search's
/// starts, so the plan never costs more than it (nor than dedicated GPUs, another start).
pub fn plan(
    input: &PlanInput,
    catalog: &Catalog,
    arrivals: Arc<dyn ArrivalSource>,
    progress: &dyn Progress,
) -> Result<PlanReport, PlanError> {
    let vt = VirtualTime::new(input, catalog, arrivals, progress)?;
    let no_plan = || PlanError::NoGpus("no GPU type serves every tenant".to_string());
    progress.stage("time-slicing", 0);
    let (time_sliced, sliced_bins) = match time_sliced(&vt) {
        Some((ts, bins)) => (Some(ts), bins),
        None => (None, None),
    };
    progress.stage("placing", 0);
    let dedicated = search::dedicated(&vt).ok_or_else(no_plan)?;
    // The dedicated baseline's GPUs (their capacity searches) are described while the search
    // places the tenants, which leaves a core idle much of the time, and then the plan's GPUs.
    let (bins, plan_gpus, dedicated_gpus) = std::thread::scope(|scope| {
        let baseline = scope.spawn(|| describe(&vt, &dedicated));
        let bins = search::search_from(&vt, sliced_bins.into_iter().collect());
        progress.stage("capacity", 0);
        let plan_gpus = bins.as_deref().map(|b| describe(&vt, b));
        let dedicated_gpus = baseline
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (bins, plan_gpus, dedicated_gpus)
    });
    let (bins, plan_gpus) = bins.zip(plan_gpus).ok_or_else(no_plan)?;
    let plan = placement(&vt, &bins, plan_gpus);
    let dedicated = placement(&vt, &dedicated, dedicated_gpus);
    let mut ranking = vec![
        ranked("plan", true, plan.gpus.len(), plan.usd_per_hour),
        ranked(
            "dedicated",
            true,
            dedicated.gpus.len(),
            dedicated.usd_per_hour,
        ),
    ];
    if let Some(ts) = &time_sliced {
        ranking.insert(1, time_sliced_row(ts));
    }
    ranking.sort_by(|a, b| a.usd_per_hour.total_cmp(&b.usd_per_hour));
    Ok(PlanReport {
        schema: SCHEMA.to_string(),
        session: input.spec.name.clone(),
        headroom: input.headroom,
        seed: input.seed,
        gpus_considered: input.gpus.clone(),
        gpus_dominated: vt.dominated().to_vec(),
        plan,
        baselines: Baselines {
            dedicated,
            time_sliced,
        },
        ranking,
    })
}

/// Time-slicing ranked at what it takes in virtual time when the formula's count falls short:
/// ranking the formula's cheaper figure would offer an option that misses its SLAs.
fn time_sliced_row(ts: &TimeSliced) -> Ranked {
    match ts.verified_gpus {
        Some(n) if !ts.verified => {
            let per_gpu = ts.usd_per_hour / f64::from(ts.gpus.max(1));
            ranked("time-sliced", true, n as usize, per_gpu * f64::from(n))
        }
        _ => ranked(
            "time-sliced",
            ts.verified,
            ts.gpus as usize,
            ts.usd_per_hour,
        ),
    }
}

fn ranked(option: &str, verified: bool, gpus: usize, usd_per_hour: f64) -> Ranked {
    Ranked {
        option: option.to_string(),
        verified,
        gpus,
        usd_per_hour,
        usd_per_month: monthly_usd(usd_per_hour),
    }
}

/// Each GPU of a placement described, its capacity search and run at its rates, in parallel.
fn describe(vt: &VirtualTime<'_>, bins: &[Bin]) -> Vec<GpuPlan> {
    super::parallel::map(bins, |b| gpu_plan(vt, b))
}

fn placement(vt: &VirtualTime<'_>, bins: &[Bin], gpus: Vec<GpuPlan>) -> Placement {
    let usd_per_hour = search::cost(vt, bins);
    Placement {
        usd_per_hour,
        usd_per_month: monthly_usd(usd_per_hour),
        gpus,
    }
}

fn gpu_plan(vt: &VirtualTime<'_>, bin: &Bin) -> GpuPlan {
    let input = vt.input();
    let option = &input.gpus[bin.gpu];
    let sharing = vt
        .sharing(bin.gpu, &bin.items)
        .unwrap_or(Sharing::CoLocated);
    let (capacity, at_rate) = vt.capacity(bin.gpu, &bin.items, sharing);
    let mut items = bin.items.clone();
    items.sort();
    let mut equivalents = 0.0;
    let tenants = items
        .iter()
        .zip(&at_rate.latency_ms)
        .map(|(item, &predicted_ms)| {
            let spec = &input.spec.tenants[item.tenant];
            let choice = vt.choice(item.tenant, bin.gpu);
            let rate = input.rate(item.tenant) / f64::from(item.shards.max(1));
            let peak = choice.map_or(0.0, |c| c.peak);
            if peak > 0.0 {
                equivalents += capacity * rate / peak;
            }
            PlacedTenant {
                tenant: item.tenant + 1,
                model: spec.model.clone(),
                rate_per_s: rate,
                split: item.shards,
                instances: choice.map_or(1, |c| c.instances),
                dynamic_batching: choice.and_then(|c| c.dynamic_batching.clone()),
                sla_ms: spec.sla.latency_ms,
                percentile: spec.sla.percentile,
                predicted_ms,
                solo_peak_per_s: peak,
            }
        })
        .collect();
    GpuPlan {
        gpu: option.gpu.clone(),
        display: option.display.clone(),
        instance: option.instance.clone(),
        usd_per_hour: option.usd_per_hour,
        sharing,
        capacity,
        equivalents_at_capacity: equivalents,
        tenants,
    }
}

/// The cheapest GPU type to time-slice every tenant on by the formula, checked in virtual time;
/// with the placement that check found when it confirms the formula.
fn time_sliced(vt: &VirtualTime<'_>) -> Option<(TimeSliced, Option<Vec<Bin>>)> {
    let input = vt.input();
    let mut best: Option<(usize, TimeSliced)> = None;
    for g in (0..vt.types()).filter(|&g| !vt.is_dominated(g)) {
        let fraction: Option<f64> = (0..vt.tenants())
            .map(|t| {
                vt.choice(t, g)
                    .filter(|c| c.peak > 0.0)
                    .map(|c| input.rate(t) * (1.0 + input.headroom) / c.peak)
            })
            .sum();
        let Some(fraction) = fraction else { continue };
        let gpus = (fraction - 1e-9).ceil().max(1.0) as u32;
        let usd_per_hour = f64::from(gpus) * vt.price(g);
        if best
            .as_ref()
            .is_none_or(|b| usd_per_hour < b.1.usd_per_hour)
        {
            let ts = TimeSliced {
                gpu: input.gpus[g].gpu.clone(),
                instance: input.gpus[g].instance.clone(),
                fraction,
                gpus,
                usd_per_hour,
                usd_per_month: monthly_usd(usd_per_hour),
                verified: false,
                verified_gpus: None,
            };
            best = Some((g, ts));
        }
    }
    let (g, mut ts) = best?;
    let bins = vt.time_sliced_placement(g);
    ts.verified_gpus = bins.as_ref().map(|b| b.len() as u32);
    ts.verified = ts.verified_gpus.is_some_and(|n| n <= ts.gpus);
    // Verified, the placement is a start of the search whatever its size, so the plan never costs
    // more than the time-sliced row it is ranked against.
    Some((ts, bins))
}

/// The ranked table and, per GPU of the plan, what it hosts.
pub fn render_table(r: &PlanReport) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_table(&mut out, r);
    out
}

fn write_table(out: &mut String, r: &PlanReport) -> std::fmt::Result {
    writeln!(
        out,
        "Plan for '{}' · headroom {:.0}% · predicted in virtual time",
        r.session,
        r.headroom * 100.0
    )?;
    writeln!(
        out,
        "\n{:<4} {:<24} {:>5} {:>10} {:>11} {:>9}",
        "rank", "option", "GPUs", "$/h", "$/month", "vs plan"
    )?;
    for (i, row) in r.ranking.iter().enumerate() {
        let vs = if row.option == "plan" {
            "—".to_string()
        } else {
            format!(
                "{:+.0}%",
                (row.usd_per_hour / r.plan.usd_per_hour.max(1e-12) - 1.0) * 100.0
            )
        };
        let option = match row.verified {
            true => row.option.clone(),
            false => format!("{} (unverified)", row.option),
        };
        writeln!(
            out,
            "{:<4} {:<24} {:>5} {:>10.3} {:>11.2} {:>9}",
            i + 1,
            option,
            row.gpus,
            row.usd_per_hour,
            row.usd_per_month,
            vs
        )?;
    }
    if let Some(ts) = &r.baselines.time_sliced {
        let check = match (ts.verified, ts.verified_gpus) {
            (true, _) => "verified in virtual time".to_string(),
            (false, Some(n)) => format!(
                "NOT verified: in virtual time, each tenant on its slice, it takes {n} GPUs"
            ),
            (false, None) => "NOT verified: a tenant cannot run time-sliced there".to_string(),
        };
        writeln!(
            out,
            "time-sliced: {} × {} ({}), Σ rate×(1+headroom)/peak = {:.2} · {check}",
            ts.gpus, ts.gpu, ts.instance, ts.fraction
        )?;
    }
    for d in &r.gpus_dominated {
        writeln!(
            out,
            "not searched: {} ({} costs no more and serves every tenant at least as well)",
            d.gpu, d.by
        )?;
    }
    let mut split: Vec<(usize, &str, u32, &str)> = r
        .plan
        .gpus
        .iter()
        .flat_map(|g| g.tenants.iter().map(move |t| (t, g.gpu.as_str())))
        .filter(|(t, _)| t.split > 1)
        .map(|(t, gpu)| (t.tenant, t.model.as_str(), t.split, gpu))
        .collect();
    split.sort();
    split.dedup();
    for (tenant, model, n, gpu) in split {
        writeln!(
            out,
            "tenant {tenant} ({model}) is more than one GPU can take: split across {n} {gpu} GPUs"
        )?;
    }
    for (i, g) in r.plan.gpus.iter().enumerate() {
        write_gpu(out, i, r.plan.gpus.len(), g)?;
    }
    Ok(())
}

fn write_gpu(out: &mut String, i: usize, n: usize, g: &GpuPlan) -> std::fmt::Result {
    writeln!(
        out,
        "\nGPU {}/{n}: {}{} · {} ${:.3}/h · capacity ×{:.2} · {:.2} equivalents at capacity",
        i + 1,
        g.gpu,
        match g.sharing {
            Sharing::CoLocated => "",
            Sharing::TimeSliced => " time-sliced",
        },
        g.instance,
        g.usd_per_hour,
        g.capacity,
        g.equivalents_at_capacity
    )?;
    writeln!(
        out,
        "  {:<3} {:<16} {:>9} {:>6} {:>4}  {:<22} {:>22}",
        "#", "model", "rate/s", "split", "inst", "batching", "predicted vs SLA"
    )?;
    for t in &g.tenants {
        let batching = match &t.dynamic_batching {
            None => "none".to_string(),
            Some(b) if b.preferred_batch_sizes.is_empty() => {
                format!("dynamic, {} µs", b.max_queue_delay_us)
            }
            Some(b) => format!(
                "dynamic, {} µs {:?}",
                b.max_queue_delay_us, b.preferred_batch_sizes
            ),
        };
        let split = match t.split {
            1 => "—".to_string(),
            n => format!("1/{n}"),
        };
        let mark = if t.predicted_ms <= t.sla_ms {
            "✓"
        } else {
            "✗"
        };
        let predicted = format!(
            "p{} {:.1} ≤ {} ms {mark}",
            t.percentile, t.predicted_ms, t.sla_ms
        );
        writeln!(
            out,
            "  {:<3} {:<16} {:>9.1} {:>6} {:>4}  {:<22} {:>22}",
            t.tenant, t.model, t.rate_per_s, split, t.instances, batching, predicted
        )?;
    }
    Ok(())
}
