//! Per-session item graphs for a batch, as SR-GNN builds them.
//!
//! Each session becomes a graph over its unique items (sorted, as `np.unique` does). An edge
//! u→v exists when v directly follows u somewhere in the session (repeated transitions count
//! once). The incoming matrix row v averages v's predecessors and the outgoing row u averages u's
//! successors (rows normalised by degree, zero rows stay zero). Everything is padded per batch
//! to the largest number of unique items `n` and the longest session `l`.

/// Graph inputs of one batch, in flat row-major buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphBatch {
    pub batch: usize,
    /// Max unique items per session in the batch.
    pub n_nodes: usize,
    /// Max session length in the batch.
    pub max_len: usize,
    /// `[batch, n_nodes]` item id of each node, 0 for padding nodes.
    pub node_items: Vec<u32>,
    /// `[batch, n_nodes, n_nodes]` in-edges averaged by in-degree (row = receiving node).
    pub adj_in: Vec<f32>,
    /// `[batch, n_nodes, n_nodes]` out-edges averaged by out-degree (row = sending node).
    pub adj_out: Vec<f32>,
    /// `[batch, max_len]` flat index `b * n_nodes + node` of each position (padding → node 0).
    pub position_nodes: Vec<u32>,
    /// `[batch, max_len]` 1 for real positions, 0 for padding.
    pub mask: Vec<f32>,
    /// `[batch]` flat node index of the last clicked item.
    pub last_nodes: Vec<u32>,
}

impl GraphBatch {
    pub fn build(sessions: &[&[u32]]) -> Self {
        let batch = sessions.len();
        let mut uniques: Vec<Vec<u32>> = Vec::with_capacity(batch);
        for s in sessions {
            let mut u = s.to_vec();
            u.sort_unstable();
            u.dedup();
            uniques.push(u);
        }
        let n = uniques.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let l = sessions.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut g = GraphBatch {
            batch,
            n_nodes: n,
            max_len: l,
            node_items: vec![0; batch * n],
            adj_in: vec![0.0; batch * n * n],
            adj_out: vec![0.0; batch * n * n],
            position_nodes: vec![0; batch * l],
            mask: vec![0.0; batch * l],
            last_nodes: vec![0; batch],
        };
        let mut edges = vec![false; n * n];
        for (b, (s, nodes)) in sessions.iter().zip(&uniques).enumerate() {
            g.node_items[b * n..b * n + nodes.len()].copy_from_slice(nodes);
            let node_of = |item: u32| {
                nodes
                    .binary_search(&item)
                    .expect("item is among its session's nodes")
            };
            let base = (b * n) as u32;
            for (p, &item) in s.iter().enumerate() {
                g.position_nodes[b * l + p] = base + node_of(item) as u32;
                g.mask[b * l + p] = 1.0;
            }
            for p in s.len()..l {
                g.position_nodes[b * l + p] = base;
            }
            if let Some(&last) = s.last() {
                g.last_nodes[b] = base + node_of(last) as u32;
            }
            edges.iter_mut().for_each(|e| *e = false);
            for w in s.windows(2) {
                edges[node_of(w[0]) * n + node_of(w[1])] = true;
            }
            let k = nodes.len();
            let block = b * n * n;
            for u in 0..k {
                let out_deg = (0..k).filter(|&v| edges[u * n + v]).count();
                for v in 0..k {
                    if edges[u * n + v] {
                        g.adj_out[block + u * n + v] = 1.0 / out_deg as f32;
                    }
                }
            }
            for v in 0..k {
                let in_deg = (0..k).filter(|&u| edges[u * n + v]).count();
                for u in 0..k {
                    if edges[u * n + v] {
                        g.adj_in[block + v * n + u] = 1.0 / in_deg as f32;
                    }
                }
            }
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_of_a_session_with_repeats() {
        // 5 → 3 → 5 → 7: nodes sorted [3, 5, 7]; edges 5→3, 3→5, 5→7.
        let s: &[u32] = &[5, 3, 5, 7];
        let short: &[u32] = &[9];
        let g = GraphBatch::build(&[s, short]);
        assert_eq!((g.n_nodes, g.max_len), (3, 4));
        assert_eq!(&g.node_items[..3], &[3, 5, 7]);
        assert_eq!(&g.node_items[3..], &[9, 0, 0]);
        assert_eq!(&g.position_nodes[..4], &[1, 0, 1, 2]);
        assert_eq!(&g.position_nodes[4..], &[3, 3, 3, 3]);
        assert_eq!(&g.mask[4..], &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(g.last_nodes, vec![2, 3]);
        // out: 3→5 (deg 1); 5→3 and 5→7 (deg 2 → 0.5 each); 7 has none.
        let out = &g.adj_out[..9];
        assert_eq!(out, &[0.0, 1.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
        // in: node 3 ← 5; node 5 ← 3; node 7 ← 5.
        let inn = &g.adj_in[..9];
        assert_eq!(inn, &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert!(g.adj_in[9..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn repeated_transition_counts_once() {
        let s: &[u32] = &[1, 2, 1, 2];
        let g = GraphBatch::build(&[s]);
        // edges 1→2, 2→1; in-degree of each is 1.
        assert_eq!(g.adj_in, vec![0.0, 1.0, 1.0, 0.0]);
        assert_eq!(g.adj_out, vec![0.0, 1.0, 1.0, 0.0]);
    }
}
