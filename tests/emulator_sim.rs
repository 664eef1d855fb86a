//! The emulator's GPU model in virtual time: the laws it must obey (calibration: emulator_calibration.rs).

mod common;

use perseus::catalog::Catalog;
use perseus::emulator::sim::{
    Completion, GpuSetup, ModelSetup, Sim, SimError, Workload, simulate, solo_peak,
};
use perseus::vocab::spec::DynamicBatching;

fn gpu(gamma: f64) -> GpuSetup {
    GpuSetup {
        name: "test".into(),
        memory_total_bytes: 16 << 30,
        context_bytes: 400 << 20,
        tdp_w: 70.0,
        idle_w: 10.0,
        gamma,
        pair_gamma: Vec::new(),
        sm_clock_mhz: 1590,
        // PCIe 3.0 x16 at the catalog's 80 % efficiency.
        link_bytes_per_s: 12.6e9,
        max_resident: 8,
        mps: None,
    }
}

fn model(name: &str, alpha_ms: f64, beta_ms: f64) -> ModelSetup {
    ModelSetup {
        name: name.into(),
        alpha_ms,
        beta_ms,
        max_batch: 32,
        instances: 1,
        dynamic_batching: None,
        memory_bytes: 100 << 20,
        input_bytes_per_image: 602_112,
        output_bytes_per_image: 4_000,
    }
}

fn batching(preferred: &[u32], delay_us: u64) -> Option<DynamicBatching> {
    Some(DynamicBatching {
        max_queue_delay_us: delay_us,
        preferred_batch_sizes: preferred.to_vec(),
    })
}

/// Runs one request of `batch` images on an idle GPU and returns its completion.
fn run_alone(gpu: &GpuSetup, setup: &ModelSetup, batch: u32) -> Completion {
    let mut sim = Sim::new(gpu.clone());
    let id = sim.load(setup.clone()).unwrap();
    sim.submit(1_000, id, batch, 7).unwrap();
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert_eq!(out.len(), 1);
    out.remove(0)
}

#[test]
fn solo_latency_equals_l_of_b_plus_the_copies() {
    let setup = model("m", 2.5, 0.7);
    let g = gpu(0.3);
    for batch in [1, 2, 8, 32] {
        let c = run_alone(&g, &setup, batch);
        let expected_infer = setup.solo_latency_ns(batch);
        assert!(
            (c.compute_infer_ns as f64 - expected_infer).abs() <= 1.0,
            "b={batch}: {c:?}"
        );
        assert_eq!(c.queue_ns, 0);
        assert_eq!(c.compute_input_ns, setup.compute_input_ns(batch, &g));
        assert_eq!(c.compute_output_ns, setup.compute_output_ns(batch, &g));
        assert_eq!(
            c.finished_at,
            1_000 + c.compute_input_ns + c.compute_infer_ns + c.compute_output_ns
        );
        assert_eq!(c.batch, batch);
    }
}

#[test]
fn concurrent_batches_share_the_gpu_as_design_section_5_says() {
    let gamma = 0.2;
    let g = gpu(gamma);
    let quiet = |m: ModelSetup| ModelSetup {
        input_bytes_per_image: 0,
        output_bytes_per_image: 0,
        ..m
    };
    let a = quiet(model("a", 2.0, 2.0));
    let b = quiet(model("b", 1.0, 3.0));
    let mut sim = Sim::new(g);
    let ia = sim.load(a.clone()).unwrap();
    let ib = sim.load(b.clone()).unwrap();
    sim.submit(0, ia, 1, 0).unwrap();
    sim.submit(0, ib, 1, 1).unwrap();
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    // Both infer from the same instant; U = uA + uB; each runs at 1 / (max(1,U)·(1 + γ·(U − uᵢ))) until
    // the first finishes, then the other runs alone at full speed.
    let (ua, ub) = (a.occupancy(1), b.occupancy(1));
    let u = ua + ub;
    let rate = |own: f64| 1.0 / (u.max(1.0) * (1.0 + gamma * (u - own)));
    let (ra, rb) = (rate(ua), rate(ub));
    let (la, lb) = (a.solo_latency_ns(1), b.solo_latency_ns(1));
    let (first_a, first_b) = (la / ra, lb / rb);
    let (expect_a, expect_b) = if first_a <= first_b {
        (first_a, first_a + (lb - first_a * rb))
    } else {
        (first_b + (la - first_b * ra), first_b)
    };
    let infer = |token: u64| {
        out.iter()
            .find(|c| c.token == token)
            .unwrap()
            .compute_infer_ns as f64
    };
    assert!(
        (infer(0) - expect_a).abs() <= 2.0,
        "{} vs {expect_a}",
        infer(0)
    );
    assert!(
        (infer(1) - expect_b).abs() <= 2.0,
        "{} vs {expect_b}",
        infer(1)
    );
    assert!(infer(0) > la && infer(1) > lb, "sharing slows both");
}

#[test]
fn statistics_count_what_the_model_did() {
    let setup = ModelSetup {
        dynamic_batching: batching(&[4], 1_000),
        ..model("m", 1.0, 0.5)
    };
    let mut sim = Sim::new(gpu(0.1));
    let id = sim.load(setup.clone()).unwrap();
    for token in 0..4 {
        sim.submit(0, id, 1, token).unwrap();
    }
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    let c = sim.counters(id).unwrap();
    assert_eq!(
        (
            c.success_count,
            c.execution_count,
            c.inference_count,
            c.pending
        ),
        (4, 1, 4, 0)
    );
    assert_eq!(c.batch_stats[&4].count, 1);
    assert_eq!(c.compute_infer_ns, 4 * out[0].compute_infer_ns);
    assert_eq!(c.success_ns, out.iter().map(|c| c.finished_at).sum::<u64>());
}

#[test]
fn utilization_sm_activity_and_power_stay_within_bounds() {
    let g = gpu(0.3);
    let a = ModelSetup {
        instances: 3,
        ..model("a", 1.0, 2.0)
    };
    let b = ModelSetup {
        instances: 2,
        dynamic_batching: batching(&[], 500),
        ..model("b", 4.0, 0.5)
    };
    let mut sim = Sim::new(g.clone());
    let ia = sim.load(a).unwrap();
    let ib = sim.load(b).unwrap();
    let mut out = Vec::new();
    let mut t = 0;
    // A burst far beyond capacity, observed event by event.
    for token in 0..400 {
        sim.submit(t, if token % 2 == 0 { ia } else { ib }, 1, token)
            .unwrap();
        t += 100_000;
    }
    let mut last = sim.gpu_counters();
    let mut prev_t = sim.now();
    while let Some(next) = sim.next_event() {
        sim.advance(next, &mut out);
        let now = sim.gpu_counters();
        let dt = (sim.now() - prev_t) as f64;
        assert!((now.busy_ns - last.busy_ns) as f64 <= dt);
        assert!(now.sm_active_ns - last.sm_active_ns <= dt + 1e-6);
        let (_, power) = sim.gpu_instant();
        assert!(power <= g.tdp_w + 1e-9 && power >= g.idle_w);
        last = now;
        prev_t = sim.now();
    }
    assert_eq!(out.len(), 400);
    let total = sim.gpu_counters();
    let elapsed = sim.now() as f64;
    assert!(total.busy_ns as f64 <= elapsed);
    let sm = total.sm_active_ns / elapsed;
    assert!(sm > 0.5 && sm <= 1.0, "{sm}");
    let mean_power = total.energy_j / (elapsed * 1e-9);
    let expected = g.idle_w + (g.tdp_w - g.idle_w) * sm;
    assert!(
        (mean_power - expected).abs() < 1e-6 * expected,
        "{mean_power} vs {expected}"
    );

    let report = simulate(
        &g,
        &[
            (model("x", 1.0, 2.0), Workload::poisson(2_000.0)),
            (model("y", 3.0, 1.0), Workload::poisson(2_000.0)),
        ],
        5.0,
        3,
    )
    .unwrap();
    assert!(report.gpu_utilization <= 1.0 && report.sm_activity <= report.gpu_utilization);
}

#[test]
fn throughput_saturates_at_the_model_capacity() {
    let g = gpu(0.0);
    // Each request alone: the copies overlap the previous batch's compute, so one instance finishes one
    // image per L(1).
    let alone = model("alone", 3.0, 1.0);
    let cap = alone.capacity_images_per_s(1, &g);
    let expected = 1e9 / alone.solo_latency_ns(1);
    assert!((cap - expected).abs() < 1e-9 * expected);
    let infer_s = alone.solo_latency_ns(1) / 1e9;
    let r = simulate(&g, &[(alone, Workload::constant(2.0 * cap))], 20.0, 1).unwrap();
    let achieved = r.models[0].achieved_per_s;
    assert!((achieved / cap - 1.0).abs() < 0.01, "{achieved} vs {cap}");
    // Busy whenever inferring: one inference per completed request.
    let util = achieved * infer_s;
    assert!(
        (r.gpu_utilization / util - 1.0).abs() < 0.01,
        "{} vs {util}",
        r.gpu_utilization
    );

    // With batching to 8 the plateau moves to 8 / L(8).
    let batched = ModelSetup {
        dynamic_batching: batching(&[8], 100),
        ..model("batched", 3.0, 1.0)
    };
    let cap8 = batched.capacity_images_per_s(1, &g);
    assert!(cap8 > 2.0 * cap);
    let r = simulate(&g, &[(batched, Workload::poisson(2.0 * cap8))], 20.0, 1).unwrap();
    let achieved = r.models[0].achieved_per_s;
    assert!((achieved / cap8 - 1.0).abs() < 0.01, "{achieved} vs {cap8}");
}

#[test]
fn littles_law_holds() {
    let setup = ModelSetup {
        dynamic_batching: batching(&[2, 4], 2_000),
        ..model("m", 4.0, 2.0)
    };
    let rate = 0.7 * setup.capacity_images_per_s(1, &gpu(0.2));
    let r = simulate(&gpu(0.2), &[(setup, Workload::poisson(rate))], 120.0, 9).unwrap();
    let m = &r.models[0];
    let lambda = m.submitted as f64 / r.duration_s;
    let w_s = m.mean_latency_ms / 1e3;
    let little = lambda * w_s;
    assert!(m.mean_in_system > 0.5, "{m:?}");
    // The histogram and the exact mean agree, and the tail sits above the service time.
    assert!((m.latency_us.mean() / 1e3 / m.mean_latency_ms - 1.0).abs() < 0.01);
    assert!(m.latency_ms(99.0) > m.latency_ms(50.0) && m.latency_ms(50.0) > 4.0);
    assert!(
        (m.mean_in_system / little - 1.0).abs() < 0.03,
        "L {} vs λW {little}",
        m.mean_in_system
    );
}

#[test]
fn dynamic_batching_forms_preferred_sizes_under_load_and_waits_when_idle() {
    let setup = ModelSetup {
        dynamic_batching: batching(&[4, 8], 10_000),
        ..model("m", 8.0, 2.5)
    };
    let mut sim = Sim::new(gpu(0.1));
    let id = sim.load(setup.clone()).unwrap();
    let mut out = Vec::new();
    // 1,000 requests/s against a plateau near 270/s: the queue always holds a full preferred batch.
    for token in 0..2_000u64 {
        let t = token * 1_000_000;
        sim.advance(t, &mut out);
        sim.submit(t, id, 1, token).unwrap();
    }
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    let c = sim.counters(id).unwrap();
    let eights = c.batch_stats.get(&8).map_or(0, |b| b.count);
    assert!(
        eights as f64 >= 0.95 * c.execution_count as f64,
        "{:?}",
        c.batch_stats
    );
    assert!(c.batch_stats.keys().all(|&b| b <= 8));

    // A lone request waits out the queue delay, then runs as a batch of one.
    let mut sim = Sim::new(gpu(0.1));
    let id = sim.load(setup).unwrap();
    sim.submit(0, id, 1, 0).unwrap();
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert_eq!(out[0].queue_ns, 10_000_000);
    assert_eq!(out[0].batch, 1);
}

#[test]
fn next_completion_is_when_the_first_request_finishes_if_nothing_more_comes() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    // Three models with interference, two of them batching (one on two instances), driven at
    // random gaps: each prediction must hold until the next submission, events in between or not.
    let mut sim = Sim::new(gpu(0.3));
    let ids = [
        sim.load(ModelSetup {
            dynamic_batching: batching(&[4, 8], 2_000),
            instances: 2,
            ..model("a", 3.0, 1.0)
        })
        .unwrap(),
        sim.load(model("b", 1.0, 0.4)).unwrap(),
        sim.load(ModelSetup {
            dynamic_batching: batching(&[4], 500),
            ..model("c", 6.0, 2.0)
        })
        .unwrap(),
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::new();
    let (mut t, mut held) = (0u64, 0);
    for token in 0..3_000u64 {
        let predicted = sim.next_completion();
        t += rng.random_range(0..3_000_000);
        sim.advance(t, &mut out);
        match predicted {
            Some(p) if p <= t => {
                let first = out.iter().map(|c| c.finished_at).min();
                assert_eq!(first, Some(p), "predicted {p}, advanced to {t}");
                held += 1;
            }
            Some(p) => assert!(
                out.is_empty(),
                "predicted {p}, yet finished by {t}: {out:?}"
            ),
            None => assert!(out.is_empty(), "nothing predicted, yet {out:?}"),
        }
        out.clear();
        let id = ids[rng.random_range(0..ids.len())];
        sim.submit(t, id, rng.random_range(1..=4), token).unwrap();
    }
    // Draining with nothing more submitted: every prediction is a completion.
    while let Some(p) = sim.next_completion() {
        sim.advance(p, &mut out);
        assert!(out.iter().all(|c| c.finished_at == p) && !out.is_empty());
        out.clear();
    }
    assert_eq!(sim.next_event(), None);
    assert!(
        held > 500,
        "only {held} predictions came due before a submission"
    );
}

/// Largest number of batches whose compute intervals overlap.
fn max_concurrency(done: &[Completion]) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for c in done {
        let end = c.finished_at - c.compute_output_ns;
        let start = end - c.compute_infer_ns;
        // Requests of one batch share its interval.
        if seen.insert((start, end, c.model)) {
            edges.push((start, 1));
            edges.push((end, -1));
        }
    }
    edges.sort();
    let mut live = 0;
    let mut most = 0;
    for (_, d) in edges {
        live += d;
        most = most.max(live);
    }
    most as usize
}

#[test]
fn instances_cap_concurrency() {
    for instances in [1, 2, 3] {
        let setup = ModelSetup {
            instances,
            ..model("m", 5.0, 0.5)
        };
        let mut sim = Sim::new(gpu(0.0));
        let id = sim.load(setup.clone()).unwrap();
        for token in 0..60 {
            sim.submit(0, id, 1, token).unwrap();
        }
        let mut out = Vec::new();
        while let Some(t) = sim.next_event() {
            sim.advance(t, &mut out);
        }
        assert_eq!(out.len(), 60);
        assert_eq!(max_concurrency(&out), instances as usize);
        // α-heavy batches barely occupy the SMs, so extra instances multiply throughput; the copies
        // overlap compute, so a lone instance is bound by L(1).
        let makespan = out.iter().map(|c| c.finished_at).max().unwrap() as f64;
        let serial = 60.0 * setup.solo_latency_ns(1);
        let speedup = serial / makespan;
        assert!(
            (speedup / f64::from(instances) - 1.0).abs() < 0.02,
            "{instances}: {speedup}"
        );
    }
}

#[test]
fn memory_overflow_is_refused_with_mib_figures() {
    let mut g = gpu(0.1);
    g.memory_total_bytes = 1_000 << 20;
    let mut sim = Sim::new(g);
    let big = ModelSetup {
        memory_bytes: 500 << 20,
        ..model("big", 1.0, 1.0)
    };
    sim.load(big.clone()).unwrap();
    assert_eq!(sim.gpu_counters().memory_used_bytes, 900 << 20);
    let err = sim.load(ModelSetup {
        name: "big2".into(),
        ..big
    });
    let expected = SimError::DoesNotFit {
        model: "big2".into(),
        need_mib: 500,
        free_mib: 100,
        total_mib: 1_000,
    };
    assert_eq!(err, Err(expected.clone()));
    assert!(expected.to_string().contains("500 MiB") && expected.to_string().contains("100 MiB"));
    let small = ModelSetup {
        memory_bytes: 100 << 20,
        ..model("small", 1.0, 1.0)
    };
    assert!(
        sim.load(small).is_ok(),
        "exactly filling the GPU is allowed"
    );
}

#[test]
fn unload_fails_queued_requests_and_frees_memory() {
    let mut sim = Sim::new(gpu(0.1));
    let id = sim.load(model("m", 10.0, 1.0)).unwrap();
    for token in 0..3 {
        sim.submit(0, id, 1, token).unwrap();
    }
    let mut out = Vec::new();
    sim.unload(id, 1_000_000, &mut out).unwrap();
    let failed: Vec<_> = out.iter().filter(|c| !c.ok).collect();
    // The instance took its second batch once the first one's inputs were in.
    assert_eq!(
        failed.len(),
        1,
        "the computing one and the one staged behind it finish, the queued one fails"
    );
    assert_eq!(sim.gpu_counters().memory_used_bytes, 400 << 20);
    assert_eq!(
        sim.submit(2_000_000, id, 1, 9),
        Err(SimError::UnknownModel(id))
    );
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert!(out.iter().any(|c| c.ok && c.token == 0));
    assert!(out.iter().any(|c| c.ok && c.token == 1));
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let runs = [(model("m", 2.0, 1.0), Workload::poisson(300.0))];
    let a = simulate(&gpu(0.1), &runs, 10.0, 5).unwrap();
    let b = simulate(&gpu(0.1), &runs, 10.0, 5).unwrap();
    let c = simulate(&gpu(0.1), &runs, 10.0, 6).unwrap();
    assert_eq!(a.models[0].latency_ms(95.0), b.models[0].latency_ms(95.0));
    assert_eq!(a.models[0].submitted, b.models[0].submitted);
    assert_ne!(a.models[0].submitted, c.models[0].submitted);
}

#[test]
fn solo_peaks_sit_just_below_capacity_and_grow_with_the_sla() {
    let g = gpu(0.1);
    let setup = model("m", 4.0, 2.0);
    let capacity = setup.capacity_images_per_s(1, &g);
    let tight = solo_peak(&g, &setup, 1, 50.0, 95.0).unwrap();
    let loose = solo_peak(&g, &setup, 1, 200.0, 95.0).unwrap();
    assert!(
        tight > 0.7 * capacity && tight < loose,
        "{tight} {loose} {capacity}"
    );
    assert!(loose <= 1.03 * capacity, "{loose} vs {capacity}");
    assert_eq!(
        tight,
        solo_peak(&g, &setup, 1, 50.0, 95.0).unwrap(),
        "deterministic"
    );
}

/// An hour of traffic at a few hundred requests per second: run with `--ignored --nocapture` (ideally in
/// release) to see how long the virtual-time runner takes; the assertions only check the run is whole.
#[test]
#[ignore = "a performance probe, not a check; prints its wall time"]
fn an_hour_of_traffic_in_virtual_time() {
    let catalog = Catalog::embedded().unwrap();
    let t4 = perseus::emulator::sim::gpu_setup(catalog.gpu("t4").unwrap());
    let resnet =
        perseus::emulator::sim::model_setup(&catalog, "resnet50", "t4", Some("perseus2019"))
            .unwrap();
    let inception =
        perseus::emulator::sim::model_setup(&catalog, "inception_v3", "t4", Some("perseus2019"))
            .unwrap();
    let started = std::time::Instant::now();
    let report = simulate(
        &t4,
        &[
            (resnet, Workload::poisson(150.0)),
            (inception, Workload::poisson(80.0)),
        ],
        3_600.0,
        1,
    )
    .unwrap();
    eprintln!(
        "one hour at 230 req/s simulated in {:.2} s wall ({} requests)",
        started.elapsed().as_secs_f64(),
        report.models.iter().map(|m| m.submitted).sum::<u64>()
    );
    for m in &report.models {
        assert_eq!(m.completed, m.submitted);
        assert!((m.achieved_per_s / m.offered_per_s - 1.0).abs() < 0.02);
    }
}

/// Images/s of `setup` kept saturated (queries always waiting) on `gpu`, over enough batches that the
/// measurement's edges (instances finish in waves) cost under 1 %.
fn saturated_throughput(gpu: &GpuSetup, setup: &ModelSetup, batch: u32) -> f64 {
    let mut sim = Sim::new(gpu.clone());
    let id = sim.load(setup.clone()).unwrap();
    let in_flight = 8 * setup.instances * setup.batch_cap().max(batch) / batch + 4;
    common::sim::closed_loop_images_per_s(&mut sim, id, batch, in_flight, 1_000)
}

#[test]
fn adding_an_instance_to_a_saturated_model_never_costs_more_than_five_percent() {
    let catalog = Catalog::embedded().unwrap();
    let cases = [
        ("resnet50", "t4", Some("perseus2019")),
        ("inception_v3", "t4", Some("perseus2019")),
        ("resnet50", "t4", None),
        ("mobilenet_v2", "l4", None),
        ("resnet50", "h100", None),
    ];
    for (model_name, gpu_name, profile) in cases {
        let g = perseus::emulator::sim::gpu_setup(catalog.gpu(gpu_name).unwrap());
        let base =
            perseus::emulator::sim::model_setup(&catalog, model_name, gpu_name, profile).unwrap();
        let base = ModelSetup {
            dynamic_batching: base.dynamic_batching.clone().or(batching(&[], 0)),
            max_batch: base.max_batch.min(128),
            ..base
        };
        let mut previous: Option<f64> = None;
        for instances in 1..=8 {
            let setup = ModelSetup {
                instances,
                ..base.clone()
            };
            // Full batches per request, so the run covers many waves of instances.
            let ips = saturated_throughput(&g, &setup, setup.batch_cap());
            if let Some(p) = previous {
                assert!(
                    ips >= 0.95 * p,
                    "{model_name} on {gpu_name}: {instances} instances {ips:.0} img/s vs {p:.0}"
                );
            }
            previous = Some(previous.map_or(ips, |p| p.max(ips)));
        }
    }
}

#[test]
fn instances_of_one_model_share_the_sms_without_interference() {
    // γ = 1 would slow each of two concurrent batches of different models by (1 + u); one model's two
    // instances only split the SMs.
    let g = gpu(1.0);
    let setup = ModelSetup {
        instances: 2,
        input_bytes_per_image: 0,
        output_bytes_per_image: 0,
        ..model("m", 1.0, 1.0)
    };
    let mut sim = Sim::new(g);
    let id = sim.load(setup.clone()).unwrap();
    sim.submit(0, id, 4, 0).unwrap();
    sim.submit(0, id, 4, 1).unwrap();
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    // Both compute together from the first copy's end: U = 2u, each at 1 / max(1, U).
    let u = setup.occupancy(4);
    let expected = setup.solo_latency_ns(4) * (2.0 * u).max(1.0);
    for c in &out {
        assert!(
            (c.compute_infer_ns as f64 - expected).abs() / expected < 0.01,
            "{} vs {expected}",
            c.compute_infer_ns
        );
    }
}

#[test]
fn the_host_link_is_shared_and_copies_overlap_compute() {
    // A copy-bound model: 8 instances cannot push more bytes than the link carries.
    let g = gpu(0.0);
    let heavy = ModelSetup {
        instances: 8,
        input_bytes_per_image: 50_000_000,
        output_bytes_per_image: 0,
        ..model("heavy", 0.1, 0.01)
    };
    let ips = saturated_throughput(&g, &heavy, 1);
    let bytes_per_s = ips * heavy.input_bytes_per_image as f64;
    assert!(
        bytes_per_s <= g.link_bytes_per_s * 1.001,
        "{bytes_per_s} B/s over a {} B/s link",
        g.link_bytes_per_s
    );
    assert!(bytes_per_s >= 0.95 * g.link_bytes_per_s, "{bytes_per_s}");

    // One instance whose copy takes as long as its compute runs at one batch per compute time, not per
    // copy + compute: the next batch copies in while this one computes.
    let copy_ms = 4.0;
    let balanced = ModelSetup {
        input_bytes_per_image: (g.link_bytes_per_s * copy_ms / 1e3) as u64,
        output_bytes_per_image: 0,
        ..model("balanced", 0.0, copy_ms)
    };
    let ips = saturated_throughput(&g, &balanced, 1);
    let compute_bound = 1e3 / (copy_ms + 0.002);
    assert!(
        (ips / compute_bound - 1.0).abs() < 0.01,
        "{ips} vs {compute_bound}"
    );
}

#[test]
fn at_most_max_resident_batches_compute_at_once() {
    let g = GpuSetup {
        max_resident: 2,
        ..gpu(0.0)
    };
    let setup = ModelSetup {
        instances: 6,
        ..model("m", 5.0, 0.1)
    };
    let mut sim = Sim::new(g);
    let id = sim.load(setup).unwrap();
    for token in 0..40 {
        sim.submit(0, id, 1, token).unwrap();
    }
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert_eq!(out.len(), 40);
    assert_eq!(max_concurrency(&out), 2);
}

#[test]
fn gamma_is_zero_within_a_model_and_per_pair_where_given() {
    let g = GpuSetup {
        pair_gamma: vec![perseus::emulator::sim::PairGamma {
            a: "resnet50".into(),
            b: "vgg16".into(),
            gamma: 0.04,
        }],
        ..gpu(0.3)
    };
    assert_eq!(g.gamma_between("resnet50", "resnet50"), 0.0);
    assert_eq!(g.gamma_between("vgg16", "resnet50"), 0.04);
    assert_eq!(g.gamma_between("resnet50", "inception_v3"), 0.3);
}

/// FNV-1a over what a run reports, so that two runs compare in one number.
fn fold(hash: &mut u64, text: &str) {
    for b in text.bytes() {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn fold_report(hash: &mut u64, report: &perseus::emulator::sim::SimReport) {
    for m in &report.models {
        let quantiles: Vec<u64> = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
            .iter()
            .map(|&q| m.latency_us.value_at_quantile(q))
            .collect();
        fold(
            hash,
            &format!(
                "{} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                m.name,
                m.submitted,
                m.completed,
                m.achieved_per_s.to_bits(),
                m.mean_in_system.to_bits(),
                m.mean_batch.to_bits(),
                m.mean_latency_ms.to_bits(),
                m.mean_server_ms.to_bits(),
                m.latency_us.len(),
                quantiles,
                m.counters
            ),
        );
    }
    fold(
        hash,
        &format!(
            "{:?} {:?} {:?} {:?} {}",
            report.gpu_utilization.to_bits(),
            report.sm_activity.to_bits(),
            report.mean_power_w.to_bits(),
            report.energy_j.to_bits(),
            report.memory_used_bytes
        ),
    );
}

/// One drawn tenant of a seeded mix, as plain data so that its demand can be built once per run.
struct Drawn {
    setup: ModelSetup,
    batch: u32,
    rate: f64,
    arrivals_seed: u64,
    /// 0, 1: open; 2: open with a turnaround; 3: closed loop.
    kind: u32,
    turnaround_s: f64,
    lateness_seed: Option<u64>,
    concurrency: u32,
}

impl Drawn {
    fn demand(&self) -> perseus::emulator::sim::Demand<'static> {
        use perseus::emulator::sim::{ClosedLoop, Demand, Lateness, Offered};
        use perseus::vocab::quantiles::Quantiles;
        use rand::SeedableRng;
        use rand::rngs::StdRng;
        use rand_distr::{Distribution, Exp};

        let exp = Exp::new(self.rate).expect("a positive rate");
        let mut arrivals = StdRng::seed_from_u64(self.arrivals_seed);
        let offered = Offered {
            setup: self.setup.clone(),
            batch: self.batch,
            rate_per_s: self.rate,
            gaps: Box::new(move || exp.sample(&mut arrivals)),
        };
        let lateness = self.lateness_seed.map(|seed| Lateness {
            quantiles: Quantiles {
                q: vec![0.0, 0.5, 1.0],
                ms: vec![0.0, 0.2, 3.0],
            },
            seed,
        });
        match self.kind {
            0 | 1 => Demand::Open(offered),
            2 => Demand::OpenWithTurnaround {
                offered,
                turnaround_s: self.turnaround_s,
                lateness,
            },
            _ => Demand::Closed(ClosedLoop {
                setup: self.setup.clone(),
                batch: self.batch,
                concurrency: self.concurrency,
                turnaround_s: self.turnaround_s,
                lateness,
            }),
        }
    }
}

/// Seeded runs of assorted mixes (open, late, remote and closed-loop tenants; batching, instances,
/// hardware queues and MPS shares drawn at random; loads from light to overloaded), full and ended
/// once an SLA certainly misses, folded into two numbers recorded from the model as it stood. A
/// change meant only to make the model or its run loop cheaper must leave every figure of every
/// run as it was; a change to what the model computes records the new numbers with its reason.
#[test]
fn seeded_runs_give_the_recorded_outcomes() {
    use perseus::emulator::sim::{Mps, Sla, simulate_demands, simulate_watched};
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    let mut rng = StdRng::seed_from_u64(17);
    let (mut full, mut watched) = (0xcbf2_9ce4_8422_2325_u64, 0xcbf2_9ce4_8422_2325_u64);
    let (mut ended, mut whole) = (0, 0);
    for mix in 0..24u64 {
        let mut g = gpu(rng.random_range(0.0..0.4));
        g.max_resident = rng.random_range(1..=8);
        if rng.random_bool(0.2) {
            g.link_bytes_per_s = 0.0;
        }
        let tenants = rng.random_range(1..=4usize);
        let mut drawn = Vec::new();
        let mut slas = Vec::new();
        let mut shares = Vec::new();
        for t in 0..tenants {
            let name = format!("m{t}");
            let mut setup = model(
                &name,
                rng.random_range(0.2..5.0),
                rng.random_range(0.05..2.0),
            );
            setup.max_batch = [1, 4, 8, 16, 32][rng.random_range(0..5usize)];
            setup.instances = rng.random_range(1..=3);
            setup.dynamic_batching = match rng.random_range(0..3u32) {
                0 => None,
                1 => batching(&[], rng.random_range(0..2_000)),
                _ => {
                    let p = (setup.max_batch / 2).max(1);
                    batching(&[p, setup.max_batch], rng.random_range(0..2_000))
                }
            };
            shares.push((name, rng.random_range(0.2..1.0)));
            let batch = rng.random_range(1..=setup.max_batch.min(4));
            let capacity = setup.capacity_images_per_s(batch, &g) / f64::from(batch);
            drawn.push(Drawn {
                rate: capacity * rng.random_range(0.2..1.4) / tenants as f64,
                setup,
                batch,
                arrivals_seed: mix * 31 + t as u64,
                kind: rng.random_range(0..4),
                turnaround_s: rng.random_range(0.0..0.002),
                lateness_seed: rng.random_bool(0.5).then_some(mix + 100),
                concurrency: rng.random_range(1..=8),
            });
            slas.push(rng.random_bool(0.8).then(|| Sla {
                latency_ms: rng.random_range(5.0..80.0),
                percentile: [50.0, 95.0, 99.0][rng.random_range(0..3usize)],
            }));
        }
        if rng.random_bool(0.2) {
            g.mps = Some(Mps { sm_shares: shares });
        }
        let warmup_s = [0.0, 0.5][rng.random_range(0..2usize)];
        let duration_s = rng.random_range(1.0..4.0);
        let demands = || drawn.iter().map(Drawn::demand).collect::<Vec<_>>();
        let report = simulate_demands(&g, demands(), warmup_s, duration_s).unwrap();
        fold_report(&mut full, &report);
        match simulate_watched(&g, demands(), warmup_s, duration_s, &slas).unwrap() {
            Ok(report) => {
                whole += 1;
                fold_report(&mut watched, &report);
            }
            Err(missed) => {
                ended += 1;
                fold(
                    &mut watched,
                    &format!("missed {} {:?}", missed.tenant, missed.latency_ms.to_bits()),
                );
            }
        }
    }
    assert!(ended > 2 && whole > 2, "ended {ended}, whole {whole}");
    assert_eq!(
        (full, watched),
        (531_173_925_611_119_586, 4_303_219_939_345_680_682),
        "full and watched digests"
    );
}
