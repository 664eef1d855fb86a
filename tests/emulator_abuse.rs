//! The emulator's GPU model under abuse: what many reloads must not do to it.

use perseus::emulator::sim::{GpuSetup, ModelSetup, Sim, SimError};

fn gpu() -> GpuSetup {
    GpuSetup {
        name: "test".into(),
        memory_total_bytes: 16 << 30,
        context_bytes: 400 << 20,
        tdp_w: 70.0,
        idle_w: 10.0,
        gamma: 0.1,
        sm_clock_mhz: 1590,
    }
}

fn model(name: &str) -> ModelSetup {
    ModelSetup {
        name: name.into(),
        alpha_ms: 1.0,
        beta_ms: 0.5,
        max_batch: 8,
        instances: 1,
        dynamic_batching: None,
        memory_bytes: 100 << 20,
        input_bytes_per_image: 64,
        output_bytes_per_image: 64,
    }
}

fn drain(sim: &mut Sim) -> usize {
    let mut out = Vec::new();
    while let Some(t) = sim.next_event() {
        sim.advance(t, &mut out);
    }
    out.len()
}

#[test]
fn reloading_reuses_slots_so_the_table_stays_bounded() {
    let mut sim = Sim::new(gpu());
    let resident = sim.load(model("resident")).unwrap();
    for cycle in 0..5_000u64 {
        let id = sim.load(model("churn")).unwrap();
        sim.submit(cycle * 10_000_000, id, 1, cycle).unwrap();
        sim.unload(id, cycle * 10_000_000 + 1, &mut Vec::new())
            .unwrap();
        drain(&mut sim);
    }
    assert_eq!(
        sim.slot_count(),
        2,
        "one slot for the resident model, one reused by every reload"
    );
    assert!(sim.setup(resident).is_some());
}

#[test]
fn a_stale_id_misses_the_model_that_reuses_its_slot() {
    let mut sim = Sim::new(gpu());
    let old = sim.load(model("a")).unwrap();
    sim.unload(old, 0, &mut Vec::new()).unwrap();
    let new = sim.load(model("b")).unwrap();
    assert_eq!(sim.slot_count(), 1, "the freed slot was reused");
    assert_ne!(old, new);
    assert_eq!(sim.submit(10, old, 1, 1), Err(SimError::UnknownModel(old)));
    assert!(sim.counters(old).is_none());
    assert!(sim.setup(old).is_none());
    assert_eq!(sim.setup(new).map(|s| s.name.as_str()), Some("b"));
    assert_eq!(sim.loaded(), vec![new]);
}

#[test]
fn a_slot_whose_batch_still_executes_is_not_reused() {
    let mut sim = Sim::new(gpu());
    let old = sim.load(model("a")).unwrap();
    sim.submit(0, old, 1, 1).unwrap();
    // The batch started at once and outlives the unload: its completion must reach its own slot.
    sim.unload(old, 1, &mut Vec::new()).unwrap();
    let new = sim.load(model("b")).unwrap();
    assert_eq!(sim.slot_count(), 2);
    assert_eq!(drain(&mut sim), 1, "the executing batch still finishes");
    assert_eq!(sim.counters(new).map(|c| c.success_count), Some(0));
    // Now that it finished, its slot is free again.
    sim.unload(new, sim.now(), &mut Vec::new()).unwrap();
    sim.load(model("c")).unwrap();
    sim.load(model("d")).unwrap();
    assert_eq!(sim.slot_count(), 2);
}
