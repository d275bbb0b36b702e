//! The paper's † marks: a two-sided paired t-test over per-example reciprocal ranks.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// Reciprocal rank at cutoff `k`: 1/rank when the target is in the top k, else 0 (MRR@k's terms).
pub fn reciprocal_ranks(ranks: &[u32], k: u32) -> Vec<f64> {
    ranks.iter().map(|&r| if r <= k { 1.0 / r as f64 } else { 0.0 }).collect()
}

/// Result of a paired t-test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PairedTTest {
    /// Mean of a − b.
    pub mean_difference: f64,
    pub t: f64,
    /// Two-sided p-value (1 when every difference is zero).
    pub p_value: f64,
    pub n: usize,
}

/// Two-sided paired t-test; `None` when the samples differ in length or have fewer than 2 pairs.
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Option<PairedTTest> {
    let n = a.len();
    if n != b.len() || n < 2 {
        return None;
    }
    let diff: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let mean = diff.iter().sum::<f64>() / n as f64;
    let var = diff.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var == 0.0 {
        let p_value = if mean == 0.0 { 1.0 } else { 0.0 };
        let t = if mean == 0.0 { 0.0 } else { mean.signum() * f64::INFINITY };
        return Some(PairedTTest { mean_difference: mean, t, p_value, n });
    }
    let t = mean / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    let p_value = 2.0 * (1.0 - dist.cdf(t.abs()));
    Some(PairedTTest { mean_difference: mean, t, p_value, n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy_ttest_rel() {
        // t = mean(d)/(sd(d)/√n) = 2.140223; p = 2·P(T₅ > t) = 0.085293 (numerical integration of
        // the t density, as scipy.stats.ttest_rel would report).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.5, 1.9, 2.2, 3.1, 4.0, 5.2];
        let r = paired_t_test(&a, &b).unwrap();
        assert!((r.t - 2.140223).abs() < 1e-5, "t = {}", r.t);
        assert!((r.p_value - 0.085293).abs() < 1e-5, "p = {}", r.p_value);
        let swapped = paired_t_test(&b, &a).unwrap();
        assert!((swapped.t + r.t).abs() < 1e-12 && (swapped.p_value - r.p_value).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(paired_t_test(&[1.0], &[2.0]).is_none());
        assert!(paired_t_test(&[1.0, 2.0], &[1.0]).is_none());
        assert_eq!(paired_t_test(&[0.5, 0.2], &[0.5, 0.2]).unwrap().p_value, 1.0);
        assert_eq!(reciprocal_ranks(&[1, 4, 21, 20], 20), vec![1.0, 0.25, 0.0, 0.05]);
    }
}
