//! The paper's Table 1 columns.

use crate::Dataset;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub train: usize,
    pub test: usize,
    /// All clicks in the full sessions: training sequences plus, for test, prefix and target of
    /// every test example whose prefix does not extend an earlier one (augmented test sessions
    /// are counted once).
    pub clicks: usize,
    pub items: usize,
    /// Mean number of items per example (prefix + target), as SBR papers report "avg. length".
    pub avg_length: f64,
}

pub fn stats(ds: &Dataset) -> Stats {
    let train_clicks: usize = ds.train_sequences.iter().map(Vec::len).sum();
    // Test sessions: an example whose prefix is the previous example's prefix + target continues it.
    let mut test_clicks = 0;
    let mut prev: Option<&crate::Example> = None;
    for e in &ds.test {
        let continues = prev.is_some_and(|p| {
            e.prefix.len() == p.prefix.len() + 1
                && e.prefix[..p.prefix.len()] == p.prefix[..]
                && e.prefix[p.prefix.len()] == p.target
        });
        test_clicks += if continues { 1 } else { e.prefix.len() + 1 };
        prev = Some(e);
    }
    let n_examples = ds.train.len() + ds.test.len();
    let total_len: usize = ds.train.iter().chain(&ds.test).map(|e| e.prefix.len() + 1).sum();
    Stats {
        train: ds.train.len(),
        test: ds.test.len(),
        clicks: train_clicks + test_clicks,
        items: ds.n_items(),
        avg_length: if n_examples == 0 { 0.0 } else { total_len as f64 / n_examples as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, Example};

    #[test]
    fn counts_augmented_test_sessions_once() {
        let ds = Dataset {
            catalog: Catalog::untitled(9),
            train: vec![Example { prefix: vec![1, 2], target: 3 }],
            train_sequences: vec![vec![1, 2, 3], vec![4]],
            test: vec![
                Example { prefix: vec![5], target: 6 },
                Example { prefix: vec![5, 6], target: 7 },
                Example { prefix: vec![8], target: 9 },
            ],
            ..Default::default()
        };
        let s = stats(&ds);
        assert_eq!((s.train, s.test, s.items), (1, 3, 9));
        assert_eq!(s.clicks, 4 + 3 + 2);
        assert!((s.avg_length - (3.0 + 2.0 + 3.0 + 2.0) / 4.0).abs() < 1e-12);
    }
}
