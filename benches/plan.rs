//! Planning eight CNN tenants across every catalog GPU at every catalog price, in virtual time.
//!
//! Prints the wall time of one whole plan (solo peaks, sizing, search, capacities and baselines) and
//! the virtual-time runs it needed, with the plan found. Target: under 10 s on 2 cores (reported, not
//! asserted). Run with `cargo bench --bench plan`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use perseus::catalog::Catalog;
use perseus::cost::Prices;
use perseus::emulator::sim::GapSource;
use perseus::loadgen::ArrivalProcess;
use perseus::plan::{self, PlanInput};
use perseus::session::{AnyModel, parse_session};
use perseus::vocab::spec::Arrival;

/// Eight services with their own SLAs; rates sized so that no single GPU type takes them all
/// cheaply, which makes the search mix types.
const EIGHT: &str = r#"
name = "eight CNN services"
[target]
emulate = "t4"
[[tenant]]
model = "resnet50"
rate = 900
sla = { latency_ms = 50, percentile = 99 }
[[tenant]]
model = "mobilenet_v2"
rate = 1200
sla = { latency_ms = 20, percentile = 99 }
[[tenant]]
model = "inception_v3"
rate = 300
sla = { latency_ms = 60, percentile = 99 }
[[tenant]]
model = "densenet121"
rate = 250
sla = { latency_ms = 60, percentile = 95 }
[[tenant]]
model = "efficientnet_b0"
rate = 600
sla = { latency_ms = 30, percentile = 95 }
[[tenant]]
model = "resnet152"
rate = 150
sla = { latency_ms = 100, percentile = 95 }
[[tenant]]
model = "vgg16"
rate = 40
batch = 4
sla = { latency_ms = 150, percentile = 95 }
[[tenant]]
model = "simple"
rate = 2000
sla = { latency_ms = 10, percentile = 99 }
"#;

struct Loadgen;

impl plan::ArrivalSource for Loadgen {
    fn gaps(&self, arrival: &Arrival, per_s: f64, seed: u64) -> GapSource<'static> {
        let mut p = ArrivalProcess::new(arrival, per_s, seed);
        Box::new(move || p.next_gap().as_secs_f64())
    }
}

/// Counts the virtual-time runs, and times each stage, so the figure says where the time goes.
#[derive(Default)]
struct Count {
    steps: AtomicU64,
    stages: Mutex<Vec<(String, Instant, u64)>>,
}

impl plan::Progress for Count {
    fn stage(&self, name: &str, _total: u64) {
        if let Ok(mut s) = self.stages.lock() {
            s.push((
                name.to_string(),
                Instant::now(),
                self.steps.load(Ordering::Relaxed),
            ));
        }
    }
    fn advance(&self, n: u64) {
        self.steps.fetch_add(n, Ordering::Relaxed);
    }
}

impl Count {
    /// Each stage's wall time and steps, the last ending at `end`.
    fn stages(&self, end: Instant) -> Vec<String> {
        let stages = self.stages.lock().map(|s| s.clone()).unwrap_or_default();
        let total = self.steps.load(Ordering::Relaxed);
        let mut out = Vec::new();
        for (i, (name, at, steps)) in stages.iter().enumerate() {
            let (until, steps_then) = stages.get(i + 1).map_or((end, total), |(_, t, s)| (*t, *s));
            out.push(format!(
                "  {name:<12} {:>7.2} s {:>6} steps",
                until.duration_since(*at).as_secs_f64(),
                steps_then - steps
            ));
        }
        out
    }
}

fn main() {
    let catalog = Catalog::embedded().expect("catalog");
    let prices = Prices::embedded().expect("prices");
    let spec = parse_session(EIGHT, Path::new("eight.toml"), &AnyModel).expect("session");
    let gpus = plan::gpu_options(&catalog, &prices, None, None).expect("priced GPUs");
    let types = gpus.len();
    let input =
        PlanInput::new(spec, gpus, plan::DEFAULT_HEADROOM, plan::DEFAULT_SEED).expect("input");
    let steps = Count::default();
    let start = Instant::now();
    let report = plan::plan(&input, &catalog, Arc::new(Loadgen), &steps).expect("a plan");
    let elapsed = start.elapsed();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "plan of 8 tenants over {types} GPU types: {:.2} s on {cores} cores, {} steps \
         (solo peaks and virtual-time runs)",
        elapsed.as_secs_f64(),
        steps.steps.load(Ordering::Relaxed)
    );
    for line in steps.stages(start + elapsed) {
        println!("{line}");
    }
    for r in &report.ranking {
        println!(
            "  {:<12} {:>3} GPUs  ${:.3}/h",
            r.option, r.gpus, r.usd_per_hour
        );
    }
    println!("{}", plan::render_table(&report));
    println!("target: under 10 s on 2 cores (reported, not asserted)");
}
