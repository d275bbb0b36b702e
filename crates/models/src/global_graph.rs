//! GCE-GNN's global item graph (`build_graph.py` and `utils.handle_adj` in CCIIPLab/GCE-GNN).
//!
//! Every pair of items at distance 1, 2 or 3 in a training session is counted in both directions
//! (an item paired with itself counts twice). Each item keeps its 12 most frequent neighbours
//! (ties in order of first appearance, as Python's stable sort over an insertion-ordered dict).
//! The official code then draws a fixed sample once per run: with 12 or more neighbours a random
//! permutation of the top 12 (which no part of the model can tell from the top 12 in order, since
//! it only sums and softmaxes over them), with fewer neighbours 12 draws with replacement, and
//! without neighbours item 0 with weight 0. The draws here come from a seeded ChaCha stream.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

/// Sampled neighbours of every item id `0..=n_items`, `sample` per item, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalGraph {
    pub sample: usize,
    /// `neighbors[i * sample + k]`: the k-th sampled neighbour of item i.
    pub neighbors: Vec<u32>,
    /// The pair count of that neighbour (the official code feeds the raw count to the model).
    pub weights: Vec<f32>,
}

/// Each item's top-`keep` neighbours with their counts, most frequent first.
pub fn top_neighbors(sessions: &[Vec<u32>], n_items: usize, keep: usize) -> Vec<Vec<(u32, u32)>> {
    // (count, order of first appearance) per directed pair.
    let mut counts: HashMap<(u32, u32), (u32, u64)> = HashMap::new();
    let mut order = 0u64;
    let mut add = |a: u32, b: u32| {
        let entry = counts.entry((a, b)).or_insert_with(|| {
            order += 1;
            (0, order)
        });
        entry.0 += 1;
    };
    for s in sessions {
        for k in 1..=3 {
            for j in 0..s.len().saturating_sub(k) {
                add(s[j], s[j + k]);
                add(s[j + k], s[j]);
            }
        }
    }
    let mut per_item: Vec<Vec<(u32, u32, u64)>> = vec![Vec::new(); n_items + 1];
    for ((a, b), (count, first)) in counts {
        if let Some(list) = per_item.get_mut(a as usize) {
            list.push((b, count, first));
        }
    }
    per_item
        .into_iter()
        .map(|mut list| {
            list.sort_by(|x, y| y.1.cmp(&x.1).then(x.2.cmp(&y.2)));
            list.into_iter().take(keep).map(|(b, c, _)| (b, c)).collect()
        })
        .collect()
}

impl GlobalGraph {
    /// The graph of `sessions` over items `1..=n_items`, with the fixed sample drawn from `seed`.
    pub fn build(sessions: &[Vec<u32>], n_items: usize, sample: usize, seed: u64) -> Self {
        let top = top_neighbors(sessions, n_items, sample);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0061_0ba1);
        let mut neighbors = vec![0u32; (n_items + 1) * sample];
        let mut weights = vec![0f32; (n_items + 1) * sample];
        for (item, list) in top.iter().enumerate().skip(1) {
            let row = item * sample..(item + 1) * sample;
            let picks: Vec<usize> = match list.len() {
                0 => continue,
                k if k >= sample => (0..sample).collect(),
                k => (0..sample).map(|_| rng.gen_range(0..k)).collect(),
            };
            for (slot, &p) in row.zip(&picks) {
                neighbors[slot] = list[p].0;
                weights[slot] = list[p].1 as f32;
            }
        }
        Self { sample, neighbors, weights }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distances_one_to_three_both_ways_with_stable_ties() {
        // 1 2 3 4 5: item 3 meets 2 and 4 (distance 1), 1 and 5 (distance 2), none at 3.
        // 2 2: a self-pair counts twice.
        let sessions = vec![vec![1, 2, 3, 4, 5], vec![2, 2]];
        let top = top_neighbors(&sessions, 5, 12);
        // Item 3's pairs appear in the order (3,4) (4,3)... first as target of (2,3): 2 first.
        assert_eq!(top[3], vec![(2, 1), (4, 1), (1, 1), (5, 1)]);
        // Item 2: 1 (d1), 3 (d1), 4 (d2), 5 (d3), itself twice.
        assert_eq!(top[2][0], (2, 2));
        assert_eq!(top[2].len(), 5);
        // Item 1: 2, 3, 4 at distances 1..3.
        assert_eq!(top[1], vec![(2, 1), (3, 1), (4, 1)]);
    }

    #[test]
    fn keeps_the_most_frequent_and_samples_with_replacement_below_twelve() {
        let mut sessions = vec![vec![1, 2]; 5];
        sessions.push(vec![1, 3]);
        let g = GlobalGraph::build(&sessions, 4, 12, 7);
        let row = |i: usize| &g.neighbors[i * 12..(i + 1) * 12];
        assert!(row(1).iter().all(|&n| n == 2 || n == 3));
        assert!(row(1).contains(&2));
        for (n, w) in row(1).iter().zip(&g.weights[12..24]) {
            assert_eq!(*w, if *n == 2 { 5.0 } else { 1.0 });
        }
        assert!(row(4).iter().all(|&n| n == 0) && g.weights[48..].iter().all(|&w| w == 0.0));
        assert_eq!(g, GlobalGraph::build(&sessions, 4, 12, 7), "the sample is seeded");
    }
}
