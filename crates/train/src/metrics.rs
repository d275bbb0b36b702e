//! Full-ranking metrics from the rank of each target among all items.
//!
//! rank = 1 + number of items scored strictly higher than the target. P@K is the hit rate
//! (SBR papers call it precision), MRR@K the mean of 1/rank over hits (0 otherwise), NDCG@K the
//! mean of 1/log2(rank + 1) over hits. All are reported ×100, as in the paper.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const CUTOFFS: [usize; 3] = [5, 10, 20];

/// Metric name → value ×100, e.g. `"P@20"`, `"MRR@20"`, `"NDCG@20"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn from_ranks(ranks: &[u32]) -> Self {
        let n = ranks.len().max(1) as f64;
        let mut m = BTreeMap::new();
        for k in CUTOFFS {
            let (mut hit, mut rr, mut ndcg) = (0.0, 0.0, 0.0);
            for &r in ranks {
                if (r as usize) <= k {
                    hit += 1.0;
                    rr += 1.0 / r as f64;
                    ndcg += 1.0 / (r as f64 + 1.0).log2();
                }
            }
            m.insert(format!("P@{k}"), 100.0 * hit / n);
            m.insert(format!("MRR@{k}"), 100.0 * rr / n);
            m.insert(format!("NDCG@{k}"), 100.0 * ndcg / n);
        }
        Metrics(m)
    }

    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(f64::NAN)
    }

    /// The paper's six columns (P@5/10/20, MRR@5/10/20), in order.
    pub fn paper_columns() -> [&'static str; 6] {
        ["P@5", "P@10", "P@20", "MRR@5", "MRR@10", "MRR@20"]
    }

    /// Just the paper's six columns.
    pub fn paper_subset(&self) -> Metrics {
        Metrics(Self::paper_columns().iter().map(|k| (k.to_string(), self.get(k))).collect())
    }

    /// Best value of each metric over several evaluations (the paper protocol).
    pub fn best_of<'a>(all: impl IntoIterator<Item = &'a Metrics>) -> Metrics {
        let mut best: BTreeMap<String, f64> = BTreeMap::new();
        for m in all {
            for (k, &v) in &m.0 {
                let e = best.entry(k.clone()).or_insert(v);
                if v > *e {
                    *e = v;
                }
            }
        }
        Metrics(best)
    }

    /// One line like `P@5 3.63  P@10 6.10 ... MRR@20 2.49`.
    pub fn paper_line(&self) -> String {
        Self::paper_columns().iter().map(|k| format!("{k} {:.4}", self.get(k))).collect::<Vec<_>>().join("  ")
    }
}

/// Rank of column `target` in one row of scores: 1 + count of strictly higher scores.
pub fn rank_of(scores: &[f32], target: usize) -> u32 {
    let t = scores[target];
    1 + scores.iter().filter(|&&s| s > t).count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_metrics() {
        // ranks 1, 3, 7, 15, 40
        let m = Metrics::from_ranks(&[1, 3, 7, 15, 40]);
        assert!((m.get("P@5") - 40.0).abs() < 1e-9);
        assert!((m.get("P@10") - 60.0).abs() < 1e-9);
        assert!((m.get("P@20") - 80.0).abs() < 1e-9);
        assert!((m.get("MRR@5") - 100.0 * (1.0 + 1.0 / 3.0) / 5.0).abs() < 1e-9);
        assert!((m.get("MRR@10") - 100.0 * (1.0 + 1.0 / 3.0 + 1.0 / 7.0) / 5.0).abs() < 1e-9);
        assert!((m.get("MRR@20") - 100.0 * (1.0 + 1.0 / 3.0 + 1.0 / 7.0 + 1.0 / 15.0) / 5.0).abs() < 1e-9);
        let ndcg5 = 100.0 * (1.0 + 1.0 / 2.0) / 5.0; // 1/log2(2) + 1/log2(4)
        assert!((m.get("NDCG@5") - ndcg5).abs() < 1e-9);
    }

    #[test]
    fn rank_counts_strictly_higher_scores() {
        let s = [0.1, 0.9, 0.5, 0.5, 0.2];
        assert_eq!(rank_of(&s, 1), 1);
        assert_eq!(rank_of(&s, 2), 2);
        assert_eq!(rank_of(&s, 3), 2);
        assert_eq!(rank_of(&s, 0), 5);
    }

    #[test]
    fn best_of_takes_each_metric_separately() {
        let a = Metrics::from_ranks(&[1, 50]);
        let b = Metrics::from_ranks(&[2, 2]);
        let best = Metrics::best_of([&a, &b]);
        assert_eq!(best.get("P@5"), 100.0); // from b
        assert_eq!(best.get("MRR@5"), 50.0); // a: (1 + 0)/2 = 0.5 ; b: 0.5 too
    }
}
