//! The threshold on a grid that bisection finds, with fewer virtual-time runs.
//!
//! Solo peaks and capacities bisect a rate (or a scale) between a point that meets the SLA and one
//! that does not: k halvings end on a grid of 2ᵏ steps, on the last grid point that passes. Each
//! run also says by how much it passed or failed (its latency against the SLA), so the next probe
//! can be placed where that slack crosses zero rather than at the middle: the same grid point in
//! two to four runs instead of k + 1. Where the pass/fail outcome rises monotonically with the
//! rate, the answer is exactly bisection's; an interpolation that does not halve the bracket is
//! followed by a plain bisection step, so a badly shaped slack costs at most twice bisection's runs.

/// What one probe found: whether it passed, and its slack (positive when passing with room, negative
/// when failing), on a scale that is roughly linear in the probed value near the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Probe {
    pub pass: bool,
    pub slack: f64,
}

impl Probe {
    /// Slack of a latency against its objective: `sla / latency − 1`, which for a queue is about
    /// linear in the load near saturation (1/W falls linearly to 0 as λ nears μ in M/M/1). A probe
    /// that failed on something other than latency gets no more than a small negative slack.
    pub fn of_latency(pass: bool, latency: f64, sla: f64) -> Probe {
        Probe::of_latency_over(pass, latency, sla, 0.0)
    }

    /// [`Probe::of_latency`] above a fixed service time `floor` (the latency at no load):
    /// `(sla − floor) / (latency − floor) − 1`, so that only the queueing part, the part that grows
    /// as 1/(μ − λ), is interpolated. A floor that is not well below the SLA is not used.
    pub fn of_latency_over(pass: bool, latency: f64, sla: f64, floor: f64) -> Probe {
        let floor = if floor.is_finite() && floor > 0.0 && floor < 0.9 * sla {
            floor
        } else {
            0.0
        };
        let slack = if !latency.is_finite() {
            -1.0
        } else if latency > floor {
            ((sla - floor) / (latency - floor) - 1.0).min(1e3)
        } else {
            1e3
        };
        let slack = match pass {
            true => slack.max(1e-6),
            false => slack.min(-1e-6),
        };
        Probe { pass, slack }
    }
}

/// One side of the bracket: a grid index and, where it was run (or estimated), its slack.
#[derive(Debug, Clone, Copy)]
struct End {
    index: u32,
    slack: Option<f64>,
}

/// The largest grid index in `0..=steps` that passes, as bisection over the same grid finds it:
/// index 0 counts as passing untried (bisection's lower end), `steps` is tried only when every
/// index below it passed. `prior` is an estimated slack at index 0 and at `steps + 1` (beyond the
/// grid) that places the first probe; `known` are outcomes already run at grid indices, reused.
pub(crate) fn last_passing<E>(
    steps: u32,
    prior: (f64, f64),
    known: &[(u32, Probe)],
    mut probe: impl FnMut(u32) -> Result<Probe, E>,
) -> Result<u32, E> {
    let mut lo = End {
        index: 0,
        slack: Some(prior.0),
    };
    let mut hi = End {
        index: steps + 1,
        slack: Some(prior.1),
    };
    for &(i, p) in known {
        place(&mut lo, &mut hi, i, p);
    }
    let mut bisect_next = false;
    while hi.index - lo.index > 1 {
        let width = hi.index - lo.index;
        let at = match bisect_next {
            true => lo.index + width / 2,
            false => interpolate(lo, hi),
        };
        let p = probe(at)?;
        place(&mut lo, &mut hi, at, p);
        bisect_next = !bisect_next && (hi.index - lo.index) * 2 > width;
    }
    Ok(lo.index)
}

fn place(lo: &mut End, hi: &mut End, index: u32, p: Probe) {
    let end = End {
        index,
        slack: Some(p.slack),
    };
    if p.pass && index > lo.index && index < hi.index {
        *lo = end;
    } else if !p.pass && index < hi.index && index > lo.index {
        *hi = end;
    }
}

/// Where the slack's straight line between the two ends crosses zero, on the grid strictly inside
/// the bracket. The floor of the crossing is probed: when the line is right it passes, and the
/// next probe (one above) fails, which settles the threshold.
fn interpolate(lo: End, hi: End) -> u32 {
    let inside = |i: f64| (i as u32).clamp(lo.index + 1, hi.index - 1);
    let (Some(a), Some(b)) = (lo.slack, hi.slack) else {
        return lo.index + (hi.index - lo.index) / 2;
    };
    if !(a > 0.0 && b < 0.0) {
        return lo.index + (hi.index - lo.index) / 2;
    }
    let (l, h) = (f64::from(lo.index), f64::from(hi.index));
    let crossing = l + (h - l) * a / (a - b);
    if !crossing.is_finite() {
        return lo.index + (hi.index - lo.index) / 2;
    }
    inside(crossing.floor())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bisection over the grid as the peak search ran it before: index `steps` first, then halvings.
    fn bisection(steps: u32, pass: impl Fn(u32) -> bool) -> u32 {
        if pass(steps) {
            return steps;
        }
        let (mut lo, mut hi) = (0, steps);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if pass(mid) { lo = mid } else { hi = mid }
        }
        lo
    }

    /// A queue's slack: latency 1/(c − x) against an objective, failing beyond it.
    fn queue(c: f64, sla: f64, x: u32, steps: u32) -> Probe {
        let r = f64::from(x) / f64::from(steps);
        let latency = if r < c { 1.0 / (c - r) } else { f64::INFINITY };
        Probe::of_latency(latency <= sla, latency, sla)
    }

    #[test]
    fn finds_bisections_grid_point_in_fewer_probes() {
        for &(c, sla) in &[
            (0.9, 20.0),
            (1.0, 100.0),
            (0.5, 3.0),
            (0.97, 4.0),
            (1.2, 50.0),
        ] {
            let steps = 128;
            let mut runs = 0;
            let found = last_passing::<()>(steps, (1.0, -1.0), &[], |x| {
                runs += 1;
                Ok(queue(c, sla, x, steps))
            })
            .unwrap();
            let expected = bisection(steps, |x| queue(c, sla, x, steps).pass);
            assert_eq!(found, expected, "c {c} sla {sla}");
            assert!(runs < 8, "c {c} sla {sla}: {runs} runs");
        }
    }

    #[test]
    fn a_slack_that_says_nothing_still_lands_on_the_threshold() {
        // Slack of the wrong sign's scale (a step function): interpolation is useless, bisection
        // steps still settle it within twice bisection's probes.
        for threshold in [0, 1, 37, 64, 127, 128] {
            let mut runs = 0;
            let found = last_passing::<()>(128, (1.0, -1.0), &[], |x| {
                runs += 1;
                let pass = x <= threshold;
                Ok(Probe {
                    pass,
                    slack: if pass { 1e-6 } else { -1e3 },
                })
            })
            .unwrap();
            let expected = bisection(128, |x| x <= threshold);
            assert_eq!(found, expected, "threshold {threshold}");
            assert!(runs <= 16, "threshold {threshold}: {runs} runs");
        }
    }

    #[test]
    fn known_outcomes_are_not_run_again() {
        let mut ran = Vec::new();
        let found = last_passing::<()>(
            1024,
            (1.0, -1.0),
            &[(1024, Probe::of_latency(false, 2.0, 1.0))],
            |x| {
                ran.push(x);
                Ok(Probe::of_latency(x <= 300, 1.0, 1.0))
            },
        )
        .unwrap();
        assert_eq!(found, 300);
        assert!(!ran.contains(&1024), "{ran:?}");
    }

    #[test]
    fn errors_stop_the_search() {
        let r = last_passing(128, (1.0, -1.0), &[], |_| Err("refused"));
        assert_eq!(r, Err("refused"));
    }
}
