//! A distribution as a few quantiles: compact enough for a run's JSON, and enough to draw from.
//!
//! A run records how late its client sent each request; `perseus predict --client-from` replays
//! that lateness in virtual time by drawing from these quantiles (inverse transform, linear between
//! the points), so the prediction's latencies carry the client's tail as well as its mean.

use serde::{Deserialize, Serialize};

/// The quantiles a run records: dense in the tail, where a p95 or p99 is decided.
pub const RECORDED_QUANTILES: [f64; 17] = [
    0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0,
];

/// Values in milliseconds at ascending quantiles, from the least (`q` 0) to the greatest (`q` 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Quantiles {
    /// Ascending quantiles in [0, 1], the first 0 and the last 1.
    pub q: Vec<f64>,
    /// The value at each quantile, ascending, in milliseconds.
    pub ms: Vec<f64>,
}

/// Why a [`Quantiles`] read from a file cannot be drawn from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantilesError {
    #[error("{q} quantiles but {ms} values")]
    Lengths { q: usize, ms: usize },
    #[error("quantiles must run from 0 to 1 and ascend, got {0:?}")]
    Quantiles(Vec<f64>),
    #[error("values must be finite, at least zero and ascending, got {0:?}")]
    Values(Vec<f64>),
}

impl Quantiles {
    /// Checks what [`value_at`](Self::value_at) relies on.
    pub fn validate(&self) -> Result<(), QuantilesError> {
        if self.q.len() != self.ms.len() || self.q.len() < 2 {
            return Err(QuantilesError::Lengths {
                q: self.q.len(),
                ms: self.ms.len(),
            });
        }
        let ascending = |v: &[f64]| v.windows(2).all(|w| w[0] <= w[1]);
        if self.q[0] != 0.0 || self.q[self.q.len() - 1] != 1.0 || !ascending(&self.q) {
            return Err(QuantilesError::Quantiles(self.q.clone()));
        }
        if !self.ms.iter().all(|v| v.is_finite() && *v >= 0.0) || !ascending(&self.ms) {
            return Err(QuantilesError::Values(self.ms.clone()));
        }
        Ok(())
    }

    /// The value at quantile `u` (clamped to [0, 1]), linear between the recorded points; zero
    /// for an empty table. Fed uniform draws, it draws from the distribution.
    pub fn value_at(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        let n = self.q.len().min(self.ms.len());
        if n == 0 {
            return 0.0;
        }
        let i = self.q[..n].partition_point(|q| *q < u);
        if i == 0 {
            return self.ms[0];
        }
        if i >= n {
            return self.ms[n - 1];
        }
        let (q0, q1) = (self.q[i - 1], self.q[i]);
        let (v0, v1) = (self.ms[i - 1], self.ms[i]);
        if q1 <= q0 {
            return v1;
        }
        v0 + (v1 - v0) * (u - q0) / (q1 - q0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Quantiles {
        Quantiles {
            q: vec![0.0, 0.5, 0.9, 1.0],
            ms: vec![0.0, 0.1, 1.0, 5.0],
        }
    }

    #[test]
    fn values_interpolate_between_the_points() {
        let t = table();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.value_at(0.0), 0.0);
        assert!((t.value_at(0.25) - 0.05).abs() < 1e-12);
        assert!((t.value_at(0.7) - 0.55).abs() < 1e-12);
        assert!((t.value_at(0.95) - 3.0).abs() < 1e-12);
        assert_eq!(t.value_at(1.0), 5.0);
        assert_eq!(t.value_at(7.0), 5.0);
        assert_eq!(Quantiles::default().value_at(0.5), 0.0);
    }

    #[test]
    fn a_malformed_table_says_what_is_wrong() {
        let mut t = table();
        t.ms.pop();
        assert_eq!(t.validate(), Err(QuantilesError::Lengths { q: 4, ms: 3 }));
        let mut t = table();
        t.q[3] = 0.99;
        assert!(matches!(t.validate(), Err(QuantilesError::Quantiles(_))));
        let mut t = table();
        t.ms[1] = 2.0;
        assert!(matches!(t.validate(), Err(QuantilesError::Values(_))));
        t.ms[1] = f64::NAN;
        assert!(matches!(t.validate(), Err(QuantilesError::Values(_))));
    }
}
