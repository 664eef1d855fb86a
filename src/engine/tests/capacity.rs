//! Live capacity and what-if in the engine: off the tick, per setup generation, never stale.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Fake, config, start, stop, tenant, wait_for};
use crate::engine::hooks::{CapacityQuery, NoPersistence, TargetKnowledge};
use crate::vocab::capacity::{
    CapacityEstimate, CapacityState, MixPrediction, Predicted, TenantPrediction,
};
use crate::vocab::command::{Command, StagedSetup};
use crate::vocab::snapshot::{PeakKind, Snapshot, SoloPeak};
use crate::vocab::spec::Load;

/// A GPU that serves 100 requests per second in all, whatever the mix; the first search waits
/// for the test's go, so a change can land while it runs.
struct Hundred {
    queries: Mutex<Vec<CapacityQuery>>,
    hold_first: Mutex<Option<mpsc::Receiver<()>>>,
}

impl TargetKnowledge for Hundred {
    fn solo_peak(
        &self,
        _: &crate::vocab::spec::TenantSpec,
        _: &crate::engine::hooks::ServerModel,
    ) -> SoloPeak {
        SoloPeak {
            kind: PeakKind::Computed,
            per_s: Some(50.0),
        }
    }
    fn model_memory(&self, _: &str) -> Option<u64> {
        None
    }
    fn capacity(&self, query: &CapacityQuery) -> CapacityEstimate {
        let held = self
            .hold_first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(go) = held {
            let _ = go.recv();
        }
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(query.clone());
        let rates: Vec<f64> = query
            .tenants
            .iter()
            .map(|t| match t.load {
                Load::Rate { per_s, .. } => per_s,
                Load::Concurrency(_) => 0.0,
            })
            .collect();
        let k = 100.0 / rates.iter().sum::<f64>();
        let at = |r: f64| Predicted {
            rate_per_s: r,
            latency_ms: 10.0,
            attainment: 1.0,
            meets_sla: true,
        };
        CapacityEstimate::Known(MixPrediction {
            gpu: "Test GPU".into(),
            profile: None,
            headroom: k,
            tenants: query
                .tenants
                .iter()
                .zip(&rates)
                .map(|(t, &r)| TenantPrediction {
                    tenant: None,
                    model: t.model.clone(),
                    now: at(r),
                    at_capacity: at(k * r),
                })
                .collect(),
        })
    }
}

/// The headroom a snapshot shows, checked against the rates it shows: a result computed for other
/// rates would break 100 = k × Σ rates.
fn shown_headroom(s: &Snapshot) -> Option<f64> {
    let f = s.capacity.as_ref()?.figures()?;
    let sum: f64 = s
        .tenants
        .iter()
        .map(|t| match t.load {
            Load::Rate { per_s, .. } => per_s,
            Load::Concurrency(_) => 0.0,
        })
        .sum();
    let k = f.prediction.headroom;
    assert!(
        (k * sum - 100.0).abs() < 1e-6,
        "headroom {k} shown for rates summing to {sum}"
    );
    Some(k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_follows_the_setup_and_a_stale_result_is_never_shown() {
    let fake = Fake::serving(&["simple"]);
    let (go, wait) = mpsc::channel();
    let knowledge = Arc::new(Hundred {
        queries: Mutex::new(Vec::new()),
        hold_first: Mutex::new(Some(wait)),
    });
    let mut cfg = config(vec![tenant("simple")], Arc::new(NoPersistence));
    cfg.knowledge = Arc::clone(&knowledge) as Arc<dyn TargetKnowledge>;
    cfg.price = Some(crate::cost::ResolvedPrice {
        instance: None,
        usd_per_hour_per_gpu: 1.0,
        gpu: None,
        gpus: 1,
    });
    let mut h = start(&fake, cfg);
    // The first search is held: the snapshot says it is computing, and the tick goes on.
    let computing = wait_for(&mut h, |s| {
        s.seq > 3
            && matches!(
                s.capacity.as_ref().map(|c| &c.state),
                Some(CapacityState::Computing)
            )
    })
    .await;
    let first_generation = computing
        .capacity
        .as_ref()
        .map(|c| c.generation)
        .unwrap_or(0);
    h.commands
        .send(Command::SetRate {
            tenant: 0,
            per_s: 20.0,
        })
        .await
        .unwrap();
    let _ = wait_for(&mut h, |s| {
        s.capacity
            .as_ref()
            .is_some_and(|c| c.generation > first_generation)
    })
    .await;
    go.send(()).unwrap();
    // Every snapshot from here on shows either no figure or the figure for its own rates.
    let known = wait_for(&mut h, |s| {
        shown_headroom(s).is_some_and(|k| (k - 5.0).abs() < 1e-9)
    })
    .await;
    let f = known.capacity.as_ref().and_then(|c| c.figures()).unwrap();
    assert_eq!(f.prediction.tenants[0].tenant, Some(0));
    // At capacity: 100/s on a 50/s solo peak is 2 equivalents, 50% cheaper than time-slicing.
    assert!((f.equivalents.unwrap() - 2.0).abs() < 1e-9);
    assert!((f.savings_vs_timeslicing_pct.unwrap() - 50.0).abs() < 1e-9);
    // The frontier view has no savings figure below capacity.
    assert!(known.cost.is_some());
    let queries = knowledge
        .queries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        queries
            .iter()
            .any(|q| matches!(q.tenants[0].load, Load::Rate { per_s, .. } if per_s == 20.0))
    );
    // A staged setup is predicted beside the live one and leaves the live one alone.
    let mut staged = tenant("simple");
    staged.load = Load::Rate {
        per_s: 50.0,
        arrival: crate::vocab::spec::Arrival::Constant,
    };
    h.commands
        .send(Command::WhatIf(Some(StagedSetup {
            stage: 7,
            tenants: vec![(Some(0), staged)],
        })))
        .await
        .unwrap();
    let answered = wait_for(&mut h, |s| {
        let _ = shown_headroom(s);
        s.whatif
            .as_ref()
            .is_some_and(|w| w.stage == 7 && w.estimate.is_some())
    })
    .await;
    match answered.whatif.as_ref().and_then(|w| w.estimate.clone()) {
        Some(CapacityEstimate::Known(p)) => {
            assert!((p.headroom - 2.0).abs() < 1e-9);
            assert_eq!(p.tenants[0].tenant, Some(0));
        }
        other => panic!("what-if: {other:?}"),
    }
    assert_eq!(shown_headroom(&answered), Some(5.0));
    h.commands.send(Command::WhatIf(None)).await.unwrap();
    let dropped = wait_for(&mut h, |s| s.whatif.is_none()).await;
    assert_eq!(shown_headroom(&dropped), Some(5.0));
    stop(h).await;
}
