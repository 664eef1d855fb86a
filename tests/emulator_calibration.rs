//! The catalog's calibration as the simulator realises it: solo curves against the rows they come from, and
//! the perseus2019 profile against PERSEUS's dedicated peaks and co-location gain.

use perseus::catalog::Catalog;
use perseus::emulator::sim::{
    GpuSetup, ModelSetup, SearchOptions, Sim, Sla, best_colocation, solo_peak_with,
};

/// Inference time of one request of `batch` images on an idle GPU, in ns.
fn infer_alone_ns(gpu: &GpuSetup, setup: &ModelSetup, batch: u32) -> u64 {
    let mut sim = Sim::new(gpu.clone());
    let id = sim.load(setup.clone()).unwrap();
    sim.submit(0, id, batch, 0).unwrap();
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    assert_eq!(out.len(), 1);
    out[0].compute_infer_ns
}

/// Solo batch latency of a catalog entry as the simulator produces it, in ms.
fn simulated_latency_ms(catalog: &Catalog, model: &str, gpu_name: &str, batch: u32) -> f64 {
    let gpu = perseus::emulator::sim::gpu_setup(catalog.gpu(gpu_name).unwrap());
    let mut setup = perseus::emulator::sim::model_setup(catalog, model, gpu_name, None).unwrap();
    setup.max_batch = setup.max_batch.max(batch);
    infer_alone_ns(&gpu, &setup, batch) as f64 / 1e6
}

/// A calibration row (research calibration.csv) a non-derived catalog entry was fit to.
struct Row {
    gpu: &'static str,
    batch: u32,
    latency_ms: Option<f64>,
    images_per_s: Option<f64>,
    row: &'static str,
}

const fn row(
    gpu: &'static str,
    batch: u32,
    latency_ms: Option<f64>,
    images_per_s: Option<f64>,
    row: &'static str,
) -> Row {
    Row {
        gpu,
        batch,
        latency_ms,
        images_per_s,
        row,
    }
}

/// The rows the catalog's ResNet-50 entries for T4, L4, A100-80GB and V100 come from.
const ROWS: &[Row] = &[
    row(
        "t4",
        1,
        Some(1.000),
        None,
        "MLPerf v0.7 T4 INT8 SingleStream",
    ),
    row(
        "t4",
        272,
        Some(45.94),
        None,
        "MLPerf v0.7 T4 INT8 MultiStream, 272 samples",
    ),
    // The Offline row does not state its batch; 256 stands for "large".
    row("t4", 256, None, Some(6036.0), "MLPerf v0.7 T4 INT8 Offline"),
    row(
        "l4",
        1,
        Some(0.346),
        None,
        "MLPerf v3.1 L4 INT8 SingleStream",
    ),
    row(
        "l4",
        8,
        Some(0.808),
        None,
        "MLPerf v3.1 L4 INT8 MultiStream",
    ),
    row(
        "l4",
        32,
        None,
        Some(12882.0),
        "MLPerf v3.1 L4 INT8 Offline, bs32",
    ),
    row(
        "a100-80gb",
        1,
        Some(0.455),
        None,
        "MLPerf v3.0 A100-SXM4-80GB INT8 SingleStream",
    ),
    row(
        "a100-80gb",
        8,
        Some(0.644),
        None,
        "MLPerf v3.0 A100-SXM4-80GB INT8 MultiStream",
    ),
    row(
        "a100-80gb",
        2048,
        None,
        Some(42379.0),
        "MLPerf v3.0 A100-SXM4-80GB INT8 Offline, bs2048",
    ),
    row("v100", 1, Some(2.08), None, "gist-V100 TensorRT 4 FP16"),
    row("v100", 8, Some(3.29), None, "gist-V100 TensorRT 4 FP16"),
    row("v100", 32, Some(6.59), None, "gist-V100 TensorRT 4 FP16"),
    row("v100", 128, Some(21.27), None, "gist-V100 TensorRT 4 FP16"),
    row("v100", 256, Some(39.73), None, "gist-V100 TensorRT 4 FP16"),
];

#[test]
fn solo_curves_are_within_ten_percent_of_their_calibration_rows() {
    let catalog = Catalog::embedded().unwrap();
    for &Row {
        gpu: gpu_name,
        batch,
        latency_ms: latency,
        images_per_s: throughput,
        row,
    } in ROWS
    {
        let perf = catalog.perf("resnet50", gpu_name, None).unwrap();
        assert!(!perf.derived, "{gpu_name} is anchored on measured rows");
        let ms = simulated_latency_ms(&catalog, "resnet50", gpu_name, batch);
        if let Some(expected) = latency {
            assert!(
                (ms / expected - 1.0).abs() <= 0.10,
                "{row}: {ms:.3} ms vs {expected} ms"
            );
        }
        if let Some(expected) = throughput {
            let ips = f64::from(batch) * 1e3 / ms;
            assert!(
                (ips / expected - 1.0).abs() <= 0.10,
                "{row}: {ips:.0} img/s vs {expected}"
            );
        }
    }
}

const PERSEUS_SLA: Sla = Sla {
    latency_ms: 750.0,
    percentile: 95.0,
};

/// Short enough for debug builds, long enough that a fixed seed gives a steady p95.
const SEARCH: SearchOptions = SearchOptions {
    duration_s: 30.0,
    seed: 11,
    iterations: 10,
};

/// PERSEUS's dedicated peaks (req/s, p95 ≤ 750 ms) for ResNet-50 and Inception-v3 on one GPU.
const PERSEUS_PEAKS: &[(&str, f64, f64)] = &[("t4", 256.0, 208.0), ("p4", 204.0, 155.0)];

#[test]
fn perseus2019_reproduces_the_dedicated_peaks_and_the_colocation_gain() {
    let catalog = Catalog::embedded().unwrap();
    for &(gpu_name, paper_r, paper_i) in PERSEUS_PEAKS {
        let gpu = perseus::emulator::sim::gpu_setup(catalog.gpu(gpu_name).unwrap());
        let resnet = perseus::emulator::sim::model_setup(
            &catalog,
            "resnet50",
            gpu_name,
            Some("perseus2019"),
        )
        .unwrap();
        let inception = perseus::emulator::sim::model_setup(
            &catalog,
            "inception_v3",
            gpu_name,
            Some("perseus2019"),
        )
        .unwrap();
        let peak_r = solo_peak_with(&gpu, &resnet, 1, &PERSEUS_SLA, &SEARCH).unwrap();
        let peak_i = solo_peak_with(&gpu, &inception, 1, &PERSEUS_SLA, &SEARCH).unwrap();
        eprintln!(
            "{gpu_name} perseus2019 dedicated peaks: resnet50 {peak_r:.1}, inception_v3 {peak_i:.1} req/s"
        );
        assert!(
            (peak_r / paper_r - 1.0).abs() <= 0.10,
            "{gpu_name} resnet50 peak {peak_r} vs {paper_r}"
        );
        assert!(
            (peak_i / paper_i - 1.0).abs() <= 0.10,
            "{gpu_name} inception_v3 peak {peak_i} vs {paper_i}"
        );

        let mixes = [vec![0.3, 0.7], vec![0.5, 0.5], vec![0.7, 0.3]];
        let models = [resnet, inception];
        let best = best_colocation(
            &gpu,
            &models,
            &[peak_r, peak_i],
            &mixes,
            &PERSEUS_SLA,
            &SEARCH,
        )
        .unwrap()
        .unwrap();
        eprintln!(
            "{gpu_name} perseus2019 best co-location: rates {:.1?} -> {:.3} dedicated equivalents",
            best.rates, best.equivalents
        );
        assert!(best.meets_sla);
        assert!(
            (1.05..=1.20).contains(&best.equivalents),
            "{gpu_name}: {}",
            best.equivalents
        );
    }
}
