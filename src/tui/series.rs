//! Turning history series into what fits on screen: at most a few points per character cell, so
//! a 10-minute window at a 250 ms tick (2,400 points) costs no more to draw than a 10-second one.

use crate::vocab::snapshot::Series;

/// The points of `series` with `t` in `[from, to]`, reduced to at most `buckets` points by keeping
/// each bucket's largest value (a latency spike must not vanish when zoomed out).
pub fn window_points(series: &Series, from: f64, to: f64, buckets: usize) -> Vec<(f64, f64)> {
    let buckets = buckets.max(1);
    let span = (to - from).max(f64::EPSILON);
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(buckets.min(series.len()));
    let mut current: Option<(usize, f64, f64)> = None;
    // Walk from the newest point backwards and stop at the window's start: the ring holds up to
    // ten minutes, the window may be ten seconds.
    for (t, v) in series.iter().rev() {
        if t < from {
            break;
        }
        if t > to || !v.is_finite() {
            continue;
        }
        let b = (((t - from) / span) * buckets as f64)
            .floor()
            .min((buckets - 1) as f64) as usize;
        match &mut current {
            Some((cb, ct, cv)) if *cb == b => {
                if v > *cv {
                    *cv = v;
                    *ct = t;
                }
            }
            _ => {
                if let Some((_, ct, cv)) = current.take() {
                    out.push((ct, cv));
                }
                current = Some((b, t, v));
            }
        }
    }
    if let Some((_, ct, cv)) = current {
        out.push((ct, cv));
    }
    out.reverse();
    out
}

/// One value (or a gap) per bucket across `[from, to]`, the bucket's latest, for sparklines.
pub fn buckets(series: &Series, from: f64, to: f64, count: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; count];
    if count == 0 {
        return out;
    }
    let span = (to - from).max(f64::EPSILON);
    for (t, v) in series.iter().rev() {
        if t < from {
            break;
        }
        if t > to || !v.is_finite() {
            continue;
        }
        let b = (((t - from) / span) * count as f64)
            .floor()
            .min((count - 1) as f64) as usize;
        if out[b].is_none() {
            out[b] = Some(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Series {
        let mut s = Series::with_capacity(n);
        for i in 0..n {
            s.push(i as f64, i as f64);
        }
        s
    }

    #[test]
    fn window_points_keep_the_window_and_its_maxima() {
        let mut s = ramp(100);
        s.push(100.0, 1000.0);
        let pts = window_points(&s, 50.0, 100.0, 10);
        assert!(pts.len() <= 10);
        assert!(pts.iter().all(|(t, _)| *t >= 50.0));
        assert_eq!(pts.last().copied(), Some((100.0, 1000.0)));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn buckets_leave_gaps_where_no_data() {
        let mut s = Series::with_capacity(10);
        s.push(9.5, 3.0);
        let b = buckets(&s, 0.0, 10.0, 10);
        assert_eq!(b[9], Some(3.0));
        assert!(b[..9].iter().all(Option::is_none));
    }
}
