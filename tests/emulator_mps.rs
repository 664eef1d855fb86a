//! The GPU model's MPS mode: every model its own process on an MPS server, optionally confined to a
//! share of the SMs.

use perseus::emulator::sim::{Completion, GpuSetup, ModelSetup, Mps, Sim};

fn gpu(mps: Option<Mps>) -> GpuSetup {
    GpuSetup {
        name: "V100".into(),
        memory_total_bytes: 16 << 30,
        context_bytes: 400 << 20,
        tdp_w: 300.0,
        idle_w: 53.5,
        gamma: 0.0,
        pair_gamma: Vec::new(),
        sm_clock_mhz: 1530,
        link_bytes_per_s: 12.6e9,
        max_resident: 2,
        mps,
    }
}

/// iGniter's V100 TensorRT 8 FP32 ResNet-50 at 100 % of the SMs, fitted (research §1g: α 1.77, β 0.611
/// ms from its 2.39 / 11.54 / 21.34 ms at batch 1 / 16 / 32).
fn resnet50(name: &str, instances: u32) -> ModelSetup {
    ModelSetup {
        name: name.into(),
        alpha_ms: 1.77,
        beta_ms: 0.611,
        max_batch: 32,
        instances,
        dynamic_batching: None,
        memory_bytes: 200 << 20,
        input_bytes_per_image: 602_112,
        output_bytes_per_image: 4_000,
    }
}

fn shares(list: &[(&str, f64)]) -> Option<Mps> {
    Some(Mps {
        sm_shares: list.iter().map(|&(m, p)| (m.to_string(), p)).collect(),
    })
}

/// Submits `requests` (model index, batch) at time zero and runs the sim dry.
fn run(g: GpuSetup, models: Vec<ModelSetup>, requests: &[(usize, u32)]) -> Vec<Completion> {
    let mut sim = Sim::new(g);
    let ids: Vec<_> = models.into_iter().map(|m| sim.load(m).unwrap()).collect();
    for (token, &(m, batch)) in requests.iter().enumerate() {
        sim.submit(0, ids[m], batch, token as u64).unwrap();
    }
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert_eq!(out.len(), requests.len());
    out
}

/// iGniter's GPU compute time under CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (research calibration.csv): rows
/// the model was not fitted to, so each is a prediction of the SM-share rule.
#[test]
fn an_sm_share_reproduces_igniters_mps_rows() {
    let rows = [
        (0.1, 1, 7.689),
        (0.5, 1, 2.853),
        (0.1, 16, 91.7),
        (0.5, 16, 20.081),
        (0.1, 32, 180.47),
        (0.5, 32, 38.375),
    ];
    let mut misses = Vec::new();
    for (share, batch, ms) in rows {
        let out = run(
            gpu(shares(&[("resnet50", share)])),
            vec![resnet50("resnet50", 1)],
            &[(0, batch)],
        );
        let got = out[0].compute_infer_ns as f64 / 1e6;
        eprintln!(
            "iGniter V100 MPS {:.0} % bs{batch}: {got:.2} vs {ms} ms ({:+.1} %)",
            share * 100.0,
            (got / ms - 1.0) * 100.0
        );
        if (got / ms - 1.0).abs() > 0.10 {
            misses.push((share, batch, got, ms));
        }
    }
    assert!(misses.is_empty(), "{misses:?}");
}

/// Two processes confined to half the SMs each do not contend for SMs: each batch takes its confined
/// solo time, whereas unconfined they share the SMs and both slow down.
#[test]
fn processes_within_their_shares_do_not_slow_each_other() {
    let requests = [(0, 32), (1, 32)];
    let confined = run(
        gpu(shares(&[("a", 0.5), ("b", 0.5)])),
        vec![resnet50("a", 1), resnet50("b", 1)],
        &requests,
    );
    let alone = resnet50("a", 1).confined(32, 0.5).0;
    for c in &confined {
        assert!(
            (c.compute_infer_ns as f64 / alone - 1.0).abs() < 1e-6,
            "{c:?}"
        );
    }
    let shared = run(
        gpu(None),
        vec![resnet50("a", 1), resnet50("b", 1)],
        &requests,
    );
    let solo = resnet50("a", 1).solo_latency_ns(32);
    for c in &shared {
        assert!(c.compute_infer_ns as f64 > 1.5 * solo, "{c:?}");
    }
}

/// One Triton process has one set of hardware queues for all its models; under MPS each model's process
/// has its own, so the resident-batch bound holds per model.
#[test]
fn under_mps_the_resident_bound_is_per_process() {
    let requests: Vec<(usize, u32)> = (0..8).map(|i| (i % 2, 1)).collect();
    // Batches computing at once: a sweep over each batch's compute interval (every request here is
    // its own batch, as the models have no dynamic batcher).
    let most_at_once = |out: &[Completion]| {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        for c in out {
            let end = c.finished_at - c.compute_output_ns;
            edges.push((end - c.compute_infer_ns, 1));
            edges.push((end, -1));
        }
        edges.sort();
        let (mut live, mut most) = (0, 0);
        for (_, d) in edges {
            live += d;
            most = most.max(live);
        }
        most
    };
    let models = || vec![resnet50("a", 4), resnet50("b", 4)];
    let one_process = run(gpu(None), models(), &requests);
    let mps = run(gpu(Some(Mps::default())), models(), &requests);
    assert_eq!(most_at_once(&one_process), 2);
    assert_eq!(most_at_once(&mps), 4);
}
