//! DESIGN §4's cost arithmetic, one small pure function per formula, and the snapshot views built
//! from them.
//!
//! Baselines: *dedicated* gives each tenant its own whole GPUs (⌈achieved / peak⌉ of them, same GPU
//! type and price); *time-slicing* shares one GPU by giving each tenant a slice proportional to
//! achieved / peak, so it needs Σ achieved / peak GPUs — the dedicated equivalents. Above 1.0
//! equivalents, co-location serves more than time-slicing could on one GPU (the PERSEUS frontier).
//! The savings against either baseline are taken only at the mix's capacity ([`capacity_figures`]):
//! below it they compare a partly idle GPU with baselines sized to the same light load.

use crate::cost::prices::ResolvedPrice;
use crate::vocab::capacity::{CapacityFigures, MixPrediction};
use crate::vocab::snapshot::{CostView, FrontierView, SoloPeak, TenantId};

/// Hours in the month DESIGN §4 bills (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Ratios within this of an integer count as that integer before rounding up, so 2.0000000001
/// dedicated GPUs (floating-point noise) is 2, not 3.
const CEIL_SLACK: f64 = 1e-9;

/// Dollars per million inferences at `per_s`; `None` when nothing is served.
pub fn usd_per_million(usd_per_hour: f64, per_s: f64) -> Option<f64> {
    (per_s > 0.0 && per_s.is_finite()).then(|| usd_per_hour / (per_s * 3600.0) * 1e6)
}

pub fn monthly_usd(usd_per_hour: f64) -> f64 {
    usd_per_hour * HOURS_PER_MONTH
}

/// Σ achievedᵢ / peakᵢ over `(achieved, peak)` pairs; `None` when any peak is unknown or not
/// positive.
pub fn dedicated_equivalents(tenants: &[(f64, Option<f64>)]) -> Option<f64> {
    tenants
        .iter()
        .map(|&(achieved, peak)| ratio(achieved, peak))
        .sum()
}

/// Σ ⌈achievedᵢ / peakᵢ⌉: whole GPUs for one-GPU-per-model serving (an idle tenant needs none);
/// `None` when any peak is unknown.
pub fn dedicated_instances(tenants: &[(f64, Option<f64>)]) -> Option<u32> {
    tenants
        .iter()
        .map(|&(achieved, peak)| {
            ratio(achieved, peak).map(|r| (r - CEIL_SLACK).ceil().max(0.0) as u32)
        })
        .sum()
}

fn ratio(achieved: f64, peak: Option<f64>) -> Option<f64> {
    let peak = peak.filter(|p| *p > 0.0 && p.is_finite())?;
    Some(achieved.max(0.0) / peak)
}

pub fn dedicated_usd_per_hour(usd_per_gpu_hour: f64, instances: u32) -> f64 {
    usd_per_gpu_hour * f64::from(instances)
}

/// 1 − shared / dedicated, as a percentage; `None` when the dedicated baseline costs nothing.
pub fn savings_vs_dedicated_pct(
    shared_usd_per_hour: f64,
    dedicated_usd_per_hour: f64,
) -> Option<f64> {
    (dedicated_usd_per_hour > 0.0)
        .then(|| (1.0 - shared_usd_per_hour / dedicated_usd_per_hour) * 100.0)
}

/// 1 − 1 / equivalents, as a percentage; `None` at zero equivalents.
pub fn savings_vs_timeslicing_pct(equivalents: f64) -> Option<f64> {
    (equivalents > 0.0).then(|| (1.0 - 1.0 / equivalents) * 100.0)
}

/// One tenant's contribution to the cost view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLoad {
    pub achieved_per_s: f64,
    pub goodput_per_s: f64,
    pub solo_peak: SoloPeak,
}

/// The live cost panel for one shared GPU at `price`.
pub fn cost_view(price: &ResolvedPrice, tenants: &[TenantLoad]) -> CostView {
    let usd_per_hour = price.usd_per_hour_per_gpu;
    let throughput: f64 = tenants.iter().map(|t| t.achieved_per_s).sum();
    let goodput: f64 = tenants.iter().map(|t| t.goodput_per_s).sum();
    let loads: Vec<(f64, Option<f64>)> = tenants
        .iter()
        .map(|t| (t.achieved_per_s, t.solo_peak.per_s))
        .collect();
    let equivalents = dedicated_equivalents(&loads);
    let instances = dedicated_instances(&loads);
    let dedicated = instances.map(|n| dedicated_usd_per_hour(usd_per_hour, n));
    CostView {
        instance: price.instance.clone(),
        usd_per_hour,
        throughput_per_s: throughput,
        goodput_per_s: goodput,
        usd_per_million: usd_per_million(usd_per_hour, throughput),
        goodput_usd_per_million: usd_per_million(usd_per_hour, goodput),
        monthly_usd: monthly_usd(usd_per_hour),
        dedicated_equivalents: equivalents,
        dedicated_instances: instances,
        dedicated_usd_per_hour: dedicated,
    }
}

/// What the mix is worth at its capacity: the baselines sized to k × the operating point, where
/// the equivalents formula is meaningful. `peaks` are in the prediction's tenant order; without a
/// price only the equivalents are known.
pub fn capacity_figures(
    price: Option<&ResolvedPrice>,
    prediction: MixPrediction,
    peaks: &[SoloPeak],
) -> CapacityFigures {
    let loads: Vec<(f64, Option<f64>)> = prediction
        .tenants
        .iter()
        .zip(peaks.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(t, p)| (t.at_capacity.rate_per_s, p.and_then(|p| p.per_s)))
        .collect();
    let equivalents = dedicated_equivalents(&loads);
    let instances = dedicated_instances(&loads);
    let dedicated = price
        .zip(instances)
        .map(|(p, n)| dedicated_usd_per_hour(p.usd_per_hour_per_gpu, n));
    CapacityFigures {
        prediction,
        equivalents,
        dedicated_instances: instances,
        dedicated_usd_per_hour: dedicated,
        savings_vs_dedicated_pct: price
            .zip(dedicated)
            .and_then(|(p, d)| savings_vs_dedicated_pct(p.usd_per_hour_per_gpu, d)),
        savings_vs_timeslicing_pct: equivalents.and_then(savings_vs_timeslicing_pct),
    }
}

/// One axis of the frontier: a tenant with its model and solo peak, and its achieved rate now.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontierAxis<'a> {
    pub tenant: TenantId,
    pub model: &'a str,
    pub solo_peak: SoloPeak,
    pub achieved_per_s: f64,
}

/// The two-tenant frontier, when both solo peaks are known.
pub fn frontier_view(x: &FrontierAxis<'_>, y: &FrontierAxis<'_>) -> Option<FrontierView> {
    let px = x.solo_peak.per_s.filter(|p| *p > 0.0)?;
    let py = y.solo_peak.per_s.filter(|p| *p > 0.0)?;
    Some(FrontierView {
        x: (x.tenant, x.model.to_string(), px),
        y: (y.tenant, y.model.to_string(), py),
        point: (x.achieved_per_s, y.achieved_per_s),
        capacity_point: None,
    })
}

/// The time-slicing line: its end points on the axes, (peak_x, 0) and (0, peak_y). Points on it
/// are exactly one dedicated equivalent; above it, co-location wins.
pub fn timeslicing_line(peak_x: f64, peak_y: f64) -> [(f64, f64); 2] {
    [(peak_x, 0.0), (0.0, peak_y)]
}

/// The time-slicing line's y at `x` (clamped at zero beyond the x peak).
pub fn timeslicing_y(peak_x: f64, peak_y: f64, x: f64) -> f64 {
    if peak_x <= 0.0 {
        return 0.0;
    }
    (peak_y * (1.0 - x / peak_x)).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::snapshot::PeakKind;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    fn peak(per_s: f64) -> SoloPeak {
        SoloPeak {
            kind: PeakKind::Computed,
            per_s: Some(per_s),
        }
    }

    #[test]
    fn usd_per_million_worked_example() {
        // $0.526/h at 629 inf/s: 629 × 3600 = 2,264,400 inferences per hour;
        // 0.526 / 2,264,400 × 10⁶ = $0.23229 per million
        let v = usd_per_million(0.526, 629.0).unwrap();
        assert!(close(v, 0.232291, 1e-6), "{v}");
        // $3.06/h at 100/s: 360,000 per hour → 3.06 / 360,000 × 10⁶ = $8.50 per million
        assert!(close(usd_per_million(3.06, 100.0).unwrap(), 8.5, 1e-9));
        assert_eq!(usd_per_million(0.526, 0.0), None);
    }

    #[test]
    fn monthly_is_730_hours() {
        // 0.526 × 730 = 383.98
        assert!(close(monthly_usd(0.526), 383.98, 1e-9));
    }

    #[test]
    fn equivalents_and_instances_worked_example() {
        // PERSEUS T4 point: ResNet-50 127/s of a 256/s peak, Inception-v3 127/s of 208/s:
        // 127/256 + 127/208 = 0.49609 + 0.61058 = 1.10667 equivalents,
        // ⌈0.496⌉ + ⌈0.611⌉ = 1 + 1 = 2 dedicated GPUs
        let loads = [(127.0, Some(256.0)), (127.0, Some(208.0))];
        assert!(close(
            dedicated_equivalents(&loads).unwrap(),
            1.106671,
            1e-6
        ));
        assert_eq!(dedicated_instances(&loads), Some(2));
        // 300/s on a 256/s peak needs ⌈1.17⌉ = 2 GPUs; exactly 2 × peak needs 2, not 3
        assert_eq!(dedicated_instances(&[(300.0, Some(256.0))]), Some(2));
        assert_eq!(dedicated_instances(&[(512.0, Some(256.0))]), Some(2));
        // an idle tenant needs no GPU
        assert_eq!(dedicated_instances(&[(0.0, Some(256.0))]), Some(0));
        // an unknown peak makes both unknown
        assert_eq!(
            dedicated_equivalents(&[(1.0, Some(2.0)), (1.0, None)]),
            None
        );
        assert_eq!(dedicated_instances(&[(1.0, None)]), None);
    }

    #[test]
    fn savings_worked_examples() {
        // one shared GPU at $0.526 vs two dedicated: 1 − 0.526 / 1.052 = 50%
        let dedicated = dedicated_usd_per_hour(0.526, 2);
        assert!(close(dedicated, 1.052, 1e-12));
        assert!(close(
            savings_vs_dedicated_pct(0.526, dedicated).unwrap(),
            50.0,
            1e-9
        ));
        // 1.10667 equivalents: 1 − 1/1.10667 = 9.639% cheaper than time-slicing
        assert!(close(
            savings_vs_timeslicing_pct(1.106671).unwrap(),
            9.6389,
            1e-3
        ));
        // below one equivalent, co-location costs more than time-slicing: 1 − 1/0.8 = −25%
        assert!(close(savings_vs_timeslicing_pct(0.8).unwrap(), -25.0, 1e-9));
        assert_eq!(savings_vs_timeslicing_pct(0.0), None);
        assert_eq!(savings_vs_dedicated_pct(0.526, 0.0), None);
    }

    #[test]
    fn cost_view_worked_example() {
        let price = ResolvedPrice {
            instance: Some("aws:g4dn.xlarge".into()),
            usd_per_hour_per_gpu: 0.526,
            gpu: Some("t4".into()),
            gpus: 1,
        };
        let tenants = [
            TenantLoad {
                achieved_per_s: 127.0,
                goodput_per_s: 120.0,
                solo_peak: peak(256.0),
            },
            TenantLoad {
                achieved_per_s: 127.0,
                goodput_per_s: 127.0,
                solo_peak: peak(208.0),
            },
        ];
        let v = cost_view(&price, &tenants);
        // throughput 254/s: 0.526 / (254 × 3600) × 10⁶ = $0.575241 per million
        assert!(close(v.throughput_per_s, 254.0, 1e-12));
        assert!(close(v.usd_per_million.unwrap(), 0.575241, 1e-6));
        // goodput 247/s: 0.526 / (247 × 3600) × 10⁶ = $0.591543 per million
        assert!(close(v.goodput_usd_per_million.unwrap(), 0.591543, 1e-6));
        assert!(close(v.monthly_usd, 383.98, 1e-9));
        assert!(close(v.dedicated_equivalents.unwrap(), 1.106671, 1e-6));
        assert_eq!(v.dedicated_instances, Some(2));
        assert!(close(v.dedicated_usd_per_hour.unwrap(), 1.052, 1e-12));
        assert_eq!(v.instance.as_deref(), Some("aws:g4dn.xlarge"));
    }

    #[test]
    fn cost_view_with_an_unknown_peak_leaves_baselines_empty() {
        let price = ResolvedPrice {
            instance: None,
            usd_per_hour_per_gpu: 1.0,
            gpu: None,
            gpus: 1,
        };
        let v = cost_view(
            &price,
            &[TenantLoad {
                achieved_per_s: 10.0,
                goodput_per_s: 10.0,
                solo_peak: SoloPeak::UNKNOWN,
            }],
        );
        assert!(v.usd_per_million.is_some());
        assert_eq!(v.dedicated_equivalents, None);
        assert_eq!(v.dedicated_instances, None);
        assert_eq!(v.dedicated_usd_per_hour, None);
    }

    fn prediction(k: f64, rates: &[f64]) -> MixPrediction {
        use crate::vocab::capacity::{Predicted, TenantPrediction};
        let at = |r: f64| Predicted {
            rate_per_s: r,
            latency_ms: 1.0,
            attainment: 1.0,
            meets_sla: true,
        };
        MixPrediction {
            gpu: "Tesla T4".into(),
            profile: None,
            headroom: k,
            tenants: rates
                .iter()
                .map(|&r| TenantPrediction {
                    tenant: None,
                    model: "m".into(),
                    now: at(r),
                    at_capacity: at(k * r),
                })
                .collect(),
        }
    }

    #[test]
    fn savings_at_capacity_worked_example() {
        let price = ResolvedPrice {
            instance: None,
            usd_per_hour_per_gpu: 0.526,
            gpu: None,
            gpus: 1,
        };
        // Light load: 12.7 + 12.7 req/s, 0.11 equivalents. Scaled ×10 to capacity: 127 + 127 of peaks
        // 256 and 208 → 1.10667 equivalents, 1 − 1/1.10667 = 9.639% cheaper than time-slicing, and
        // ⌈0.496⌉ + ⌈0.611⌉ = 2 dedicated GPUs ($1.052/h) → 1 − 0.526/1.052 = 50% cheaper.
        let f = capacity_figures(
            Some(&price),
            prediction(10.0, &[12.7, 12.7]),
            &[peak(256.0), peak(208.0)],
        );
        assert!(close(f.equivalents.unwrap(), 1.106671, 1e-6));
        assert!(close(f.savings_vs_timeslicing_pct.unwrap(), 9.6389, 1e-3));
        assert_eq!(f.dedicated_instances, Some(2));
        assert!(close(f.savings_vs_dedicated_pct.unwrap(), 50.0, 1e-9));
        // An unknown peak leaves every baseline unknown; no price leaves the dollars unknown.
        let f = capacity_figures(
            Some(&price),
            prediction(10.0, &[12.7, 12.7]),
            &[peak(256.0), SoloPeak::UNKNOWN],
        );
        assert_eq!(f.equivalents, None);
        assert_eq!(f.savings_vs_timeslicing_pct, None);
        assert_eq!(f.savings_vs_dedicated_pct, None);
        let f = capacity_figures(None, prediction(10.0, &[12.7]), &[peak(256.0)]);
        assert!(f.equivalents.is_some());
        assert_eq!(f.savings_vs_dedicated_pct, None);
    }

    #[test]
    fn frontier_and_timeslicing_line() {
        let x = FrontierAxis {
            tenant: 0,
            model: "resnet50",
            solo_peak: peak(256.0),
            achieved_per_s: 127.0,
        };
        let y = FrontierAxis {
            tenant: 1,
            model: "inception_v3",
            solo_peak: peak(208.0),
            achieved_per_s: 127.0,
        };
        let f = frontier_view(&x, &y).unwrap();
        assert_eq!(f.x, (0, "resnet50".to_string(), 256.0));
        assert_eq!(f.y.2, 208.0);
        assert_eq!(f.point, (127.0, 127.0));
        assert_eq!(timeslicing_line(256.0, 208.0), [(256.0, 0.0), (0.0, 208.0)]);
        // at x = 127 the line is at 208 × (1 − 127/256) = 104.81; the point's 127 lies above it
        assert!(close(timeslicing_y(256.0, 208.0, 127.0), 104.8125, 1e-9));
        let unknown = FrontierAxis {
            solo_peak: SoloPeak::UNKNOWN,
            ..y.clone()
        };
        assert_eq!(frontier_view(&x, &unknown), None);
    }
}
