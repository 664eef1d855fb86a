//! Virtual-time measurements on the GPU model shared by the calibration and sim tests.

use perseus::emulator::sim::{ModelId, Sim};

/// Images per second a model sustains with `in_flight` requests of `batch` images always waiting: each
/// completion is replaced at once, and the rate is taken from the 100th completion to the
/// `completions`th, so the pipeline filling up is left out.
pub fn closed_loop_images_per_s(
    sim: &mut Sim,
    id: ModelId,
    batch: u32,
    in_flight: u32,
    completions: u64,
) -> f64 {
    let mut token = 0;
    for _ in 0..in_flight {
        sim.submit(0, id, batch, token).unwrap();
        token += 1;
    }
    let mut out = Vec::new();
    let (mut done, mut mark) = (0u64, None);
    while done < completions {
        let Some(t) = sim.next_event() else { break };
        sim.advance(t, &mut out);
        for c in out.drain(..) {
            done += 1;
            if done == 100 {
                mark = Some((c.finished_at, done));
            }
            sim.submit(t, id, batch, token).unwrap();
            token += 1;
        }
    }
    let (t0, n0) = mark.unwrap();
    (done - n0) as f64 * f64::from(batch) * 1e9 / (sim.now() - t0) as f64
}
