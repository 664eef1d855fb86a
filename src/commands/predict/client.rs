//! What a tenant's client adds to what the GPU model predicts, taken from a real-time run
//! (`--client-from`): its transport per request and how late it sends.

use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use crate::commands::Failure;
use crate::emulator::sim::SimReport;
use crate::report::RunResult;
use crate::vocab::quantiles::Quantiles;
use crate::vocab::spec::RunSpec;

/// What one tenant's client adds to what the GPU model predicts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientCosts {
    /// Mean transport both ways per request (see
    /// [`ClosedLoop::turnaround_s`](crate::emulator::sim::ClosedLoop::turnaround_s)).
    pub turnaround: Duration,
    /// How late the client sends, in ms (a closed loop: its gap from a response to the next
    /// send); `None` sends on time.
    pub lateness: Option<Quantiles>,
    /// What the run measured that the turnaround came from, where it came from a run.
    pub measured: Option<Measured>,
}

/// A tenant's figures in a run, behind its turnaround.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Mean latency from the actual send, ms.
    pub service_ms: f64,
    /// The server's mean time per request of the tenant's model, ms: shared with any other
    /// tenant of the same model, as the server keeps its statistics per model.
    pub server_ms: f64,
    /// Successful requests.
    pub ok: u64,
}

/// Each tenant's client costs from a run's JSON (`client_ms`, `send_lateness_ms`), for
/// `--client-from`: the run must be of this session, tenant for tenant.
pub(super) fn measured_clients(path: &Path, spec: &RunSpec) -> Result<Vec<ClientCosts>, Failure> {
    let bad = |why: String| Failure::BadInput(anyhow!("{}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let run: RunResult =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a perseus run JSON ({e})")))?;
    if run.tenants.len() != spec.tenants.len() {
        return Err(bad(format!(
            "the run has {} tenants, session '{}' {}",
            run.tenants.len(),
            spec.name,
            spec.tenants.len()
        )));
    }
    spec.tenants
        .iter()
        .zip(&run.tenants)
        .enumerate()
        .map(|(i, (want, got))| {
            if want.model != got.model {
                return Err(bad(format!(
                    "tenant {} is '{}' in the run but '{}' in the session",
                    i + 1,
                    got.model,
                    want.model
                )));
            }
            let ms = got.client_ms.ok_or_else(|| {
                bad(format!(
                    "tenant {} ('{}') has no client_ms: the run had no server statistics or \
                     no completions for it",
                    i + 1,
                    got.model
                ))
            })?;
            if let Some(q) = &got.send_lateness_ms {
                q.validate().map_err(|e| {
                    bad(format!(
                        "tenant {} ('{}'): send_lateness_ms: {e}",
                        i + 1,
                        got.model
                    ))
                })?;
            }
            Ok(ClientCosts {
                turnaround: Duration::from_secs_f64(ms.max(0.0) / 1e3),
                lateness: got.send_lateness_ms.clone(),
                measured: Some(Measured {
                    service_ms: got.service_latency_ms.mean,
                    server_ms: (got.service_latency_ms.mean - ms).max(0.0),
                    ok: got.ok,
                }),
            })
        })
        .collect()
}

/// Turnarounds for tenants that share a model, or `None` where no two do. The server's time per
/// request of a shared model blends its tenants (a batch-8 closed loop's with a batch-1 open
/// tenant's), so each tenant's latency less that blend misstates its client. The measured blend
/// is shared out in proportion to each tenant's server time in `first` (a prediction made with the
/// blended turnarounds), weighted by the requests each completed in the run, so the measured total
/// is kept; each turnaround is then the tenant's own measured latency less its share.
pub(super) fn split_shared(
    spec: &RunSpec,
    clients: &[ClientCosts],
    first: &SimReport,
) -> Option<Vec<ClientCosts>> {
    let mut split = clients.to_vec();
    let mut changed = false;
    for (i, tenant) in spec.tenants.iter().enumerate() {
        let group: Vec<usize> = (0..spec.tenants.len())
            .filter(|j| spec.tenants[*j].model == tenant.model)
            .collect();
        // Each group once, from its first tenant.
        if group.len() < 2 || group[0] != i {
            continue;
        }
        let figures: Option<Vec<(Measured, f64)>> = group
            .iter()
            .map(|j| {
                let m = clients.get(*j)?.measured?;
                Some((m, first.models.get(*j)?.mean_server_ms))
            })
            .collect();
        let Some(figures) = figures else { continue };
        let Some(turnarounds) = share_out(&figures) else {
            continue;
        };
        for (j, ms) in group.iter().zip(turnarounds) {
            split[*j].turnaround = Duration::from_secs_f64(ms / 1e3);
        }
        changed = true;
    }
    changed.then_some(split)
}

/// Each tenant's turnaround in ms, given what the run measured of it and its server time in a
/// prediction: the measured blend shared out in proportion to the modelled times, weighted by the
/// run's completions. `None` when the run completed nothing or the prediction served nothing.
fn share_out(figures: &[(Measured, f64)]) -> Option<Vec<f64>> {
    let ok: f64 = figures.iter().map(|(m, _)| m.ok as f64).sum();
    let measured: f64 = figures.iter().map(|(m, _)| m.ok as f64 * m.server_ms).sum();
    let modelled: f64 = figures.iter().map(|(m, s)| m.ok as f64 * s).sum();
    if ok <= 0.0 || modelled <= 0.0 {
        return None;
    }
    let scale = measured / modelled;
    Some(
        figures
            .iter()
            .map(|(m, server)| (m.service_ms - scale * server).max(0.0))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy batch-8 closed loop and a light batch-1 open tenant on one model: the server's mean
    /// (3 ms) blends its 2 ms requests with the other's 12 ms ones.
    #[test]
    fn a_shared_models_server_time_is_shared_out_as_modelled() {
        let blend =
            |ok_a: u64, ok_b: u64| (ok_a as f64 * 2.0 + ok_b as f64 * 12.0) / (ok_a + ok_b) as f64;
        let server_ms = blend(90, 10);
        let closed = Measured {
            service_ms: 2.5,
            server_ms,
            ok: 90,
        };
        let open = Measured {
            service_ms: 12.3,
            server_ms,
            ok: 10,
        };
        // The prediction has the two at 1.8 and 10.8 ms (10 % faster than measured, both): the
        // measured total is kept, so each gets its own server time back.
        let t = share_out(&[(closed, 1.8), (open, 10.8)]).expect("shared out");
        assert!((t[0] - 0.5).abs() < 1e-9, "{t:?}");
        assert!((t[1] - 0.3).abs() < 1e-9, "{t:?}");
        // The blend alone would take the closed loop's turnaround for negative.
        assert!(closed.service_ms - server_ms < 0.0);
        assert_eq!(share_out(&[(Measured { ok: 0, ..closed }, 1.8)]), None);
        assert_eq!(share_out(&[(closed, 0.0)]), None);
    }
}
