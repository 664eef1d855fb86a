//! The capacity search on the GPU model: the frontier point on the operating point's ray.

use perseus::catalog::Catalog;
use perseus::emulator::sim::{
    CapacityError, CapacityOptions, GpuSetup, MixArrivals, MixTenant, Sla, capacity, evaluate,
    gpu_setup, solo_peak,
};

const PERSEUS_SLA: Sla = Sla {
    latency_ms: 750.0,
    percentile: 95.0,
};

/// The PERSEUS pair on a T4 at `sessions/perseus-t4.toml`'s rates, served as that session has it.
fn perseus_pair(catalog: &Catalog) -> (GpuSetup, Vec<MixTenant>) {
    let gpu_spec = catalog.gpu("t4").unwrap();
    let batching = perseus::vocab::spec::DynamicBatching {
        max_queue_delay_us: 10_000,
        preferred_batch_sizes: vec![4, 8],
    };
    let tenant =
        |model: &str, rate: f64, db: Option<&perseus::vocab::spec::DynamicBatching>| MixTenant {
            setup: perseus::emulator::served_setup(
                catalog,
                gpu_spec,
                Some("perseus2019"),
                model,
                None,
                db,
            )
            .unwrap(),
            batch: 1,
            rate_per_s: rate,
            arrivals: MixArrivals::Poisson,
            sla: PERSEUS_SLA,
        };
    let mix = vec![
        tenant("resnet50", 72.0, Some(&batching)),
        tenant("inception_v3", 136.0, None),
    ];
    (gpu_setup(gpu_spec), mix)
}

#[test]
fn the_perseus_pair_has_headroom_and_its_capacity_point_is_on_the_frontier() {
    let catalog = Catalog::embedded().unwrap();
    let (gpu, mix) = perseus_pair(&catalog);
    let options = CapacityOptions::default();
    let c = capacity(&gpu, &mix, &options).unwrap();
    eprintln!("perseus pair: k = {:.3}", c.k);
    // The session's rates sit below the frontier, so there is headroom, but not much.
    assert!(c.k > 1.0 && c.k < 1.5, "k = {}", c.k);
    assert!(c.at_operating.iter().all(|t| t.meets_sla));
    assert!(c.at_capacity.iter().all(|t| t.meets_sla));
    for (t, o) in mix.iter().zip(&c.at_capacity) {
        assert!((o.rate_per_s - c.k * t.rate_per_s).abs() < 1e-9);
        assert!(o.latency_ms <= PERSEUS_SLA.latency_ms);
    }
    // A quarter beyond capacity some SLA breaks: the search found the edge, not a point inside.
    let beyond = evaluate(&gpu, &mix, c.k * 1.25, &options).unwrap();
    assert!(beyond.iter().any(|t| !t.meets_sla), "{beyond:?}");
    // At capacity the pair is worth PERSEUS's co-location figure in dedicated equivalents.
    let equivalents: f64 = mix
        .iter()
        .zip(&c.at_capacity)
        .map(|(t, o)| {
            let peak = solo_peak(&gpu, &t.setup, 1, 750.0, 95.0).unwrap();
            o.rate_per_s / peak
        })
        .sum();
    eprintln!("perseus pair at capacity: {equivalents:.3} dedicated equivalents");
    assert!((1.0..=1.25).contains(&equivalents), "{equivalents}");
}

#[test]
fn capacity_is_deterministic_and_scales_inversely_with_the_load() {
    let catalog = Catalog::embedded().unwrap();
    let (gpu, mut mix) = perseus_pair(&catalog);
    let options = CapacityOptions {
        duration_s: Some(20.0),
        ..CapacityOptions::default()
    };
    let first = capacity(&gpu, &mix, &options).unwrap();
    assert_eq!(first, capacity(&gpu, &mix, &options).unwrap());
    // At a fifth of the rates the same frontier point is five times further out along the ray.
    for t in &mut mix {
        t.rate_per_s /= 5.0;
    }
    let light = capacity(&gpu, &mix, &options).unwrap();
    eprintln!(
        "k = {:.3} at full rates, {:.3} at a fifth",
        first.k, light.k
    );
    let ratio = light.k / (5.0 * first.k);
    assert!((0.9..=1.1).contains(&ratio), "ratio {ratio}");
}

#[test]
fn an_overloaded_mix_has_a_capacity_below_one() {
    let catalog = Catalog::embedded().unwrap();
    let (gpu, mut mix) = perseus_pair(&catalog);
    for t in &mut mix {
        t.rate_per_s *= 3.0;
    }
    let c = capacity(&gpu, &mix, &CapacityOptions::default()).unwrap();
    assert!(c.at_operating.iter().any(|t| !t.meets_sla));
    assert!(c.k > 0.0 && c.k < 1.0, "k = {}", c.k);
    assert!(c.at_capacity.iter().all(|t| t.meets_sla));
}

#[test]
fn a_mix_without_load_or_with_one_model_twice_is_refused() {
    let catalog = Catalog::embedded().unwrap();
    let (gpu, mut mix) = perseus_pair(&catalog);
    let twice = vec![mix[0].clone(), mix[0].clone()];
    let err = capacity(&gpu, &twice, &CapacityOptions::default()).unwrap_err();
    assert!(
        matches!(&err, CapacityError::SharedModel { model, first: 1, second: 2 } if model == "resnet50"),
        "{err}"
    );
    for t in &mut mix {
        t.rate_per_s = 0.0;
    }
    let err = capacity(&gpu, &mix, &CapacityOptions::default()).unwrap_err();
    assert!(matches!(err, CapacityError::NoLoad), "{err}");
}
