//! Per-session item graphs for a batch, as SR-GNN builds them, packed without padding.
//!
//! Each session becomes a graph over its unique items (sorted, as `np.unique` does). An edge
//! u→v exists when v directly follows u somewhere in the session (repeated transitions count
//! once). The official code stores dense `[batch, n_max, n_max]` matrices whose rows average a
//! node's predecessors (incoming) or successors (outgoing). Here the nodes of all sessions are
//! concatenated and those averages are edge lists with weights 1/in-degree and 1/out-degree:
//! the same sums, but without computing anything for padding (ML-1M batches pad ~6× otherwise).

/// Weighted messages `dst += weight · h[src]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edges {
    pub src: Vec<u32>,
    pub dst: Vec<u32>,
    pub weight: Vec<f32>,
}

/// Graph inputs of one batch; node indices are into the concatenated node list.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedGraphs {
    pub batch: usize,
    /// Item id of every node, session after session.
    pub node_items: Vec<u32>,
    /// Node v receives the mean of its predecessors' messages.
    pub incoming: Edges,
    /// Node u receives the mean of its successors' messages.
    pub outgoing: Edges,
    /// Node of every click, session after session.
    pub position_nodes: Vec<u32>,
    /// Session index of every click.
    pub position_sessions: Vec<u32>,
    /// Node of each session's last click.
    pub last_nodes: Vec<u32>,
}

impl PackedGraphs {
    pub fn build(sessions: &[&[u32]]) -> Self {
        let total_clicks: usize = sessions.iter().map(|s| s.len()).sum();
        let mut g = PackedGraphs {
            batch: sessions.len(),
            node_items: Vec::with_capacity(total_clicks),
            incoming: Edges::default(),
            outgoing: Edges::default(),
            position_nodes: Vec::with_capacity(total_clicks),
            position_sessions: Vec::with_capacity(total_clicks),
            last_nodes: Vec::with_capacity(sessions.len()),
        };
        let mut transitions: Vec<(u32, u32)> = Vec::new();
        for (b, s) in sessions.iter().enumerate() {
            let base = g.node_items.len() as u32;
            let mut nodes = s.to_vec();
            nodes.sort_unstable();
            nodes.dedup();
            let node_of = |item: u32| {
                base + nodes.binary_search(&item).expect("item is one of its session's nodes") as u32
            };
            for &item in s.iter() {
                g.position_nodes.push(node_of(item));
                g.position_sessions.push(b as u32);
            }
            g.last_nodes.push(s.last().map(|&i| node_of(i)).unwrap_or(base));
            transitions.clear();
            transitions.extend(s.windows(2).map(|w| (node_of(w[0]), node_of(w[1]))));
            transitions.sort_unstable();
            transitions.dedup();
            let degree =
                |count_of: &dyn Fn(&(u32, u32)) -> bool| transitions.iter().filter(|t| count_of(t)).count();
            for &(u, v) in &transitions {
                let in_deg = degree(&|t| t.1 == v);
                let out_deg = degree(&|t| t.0 == u);
                g.incoming.src.push(u);
                g.incoming.dst.push(v);
                g.incoming.weight.push(1.0 / in_deg as f32);
                g.outgoing.src.push(v);
                g.outgoing.dst.push(u);
                g.outgoing.weight.push(1.0 / out_deg as f32);
            }
            g.node_items.extend_from_slice(&nodes);
        }
        g
    }

    pub fn n_nodes(&self) -> usize {
        self.node_items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dense `[n, n]` matrix of one edge list over `n` nodes, row = receiving node.
    fn dense(e: &Edges, n: usize) -> Vec<f32> {
        let mut m = vec![0.0; n * n];
        for i in 0..e.src.len() {
            m[e.dst[i] as usize * n + e.src[i] as usize] += e.weight[i];
        }
        m
    }

    #[test]
    fn graph_of_a_session_with_repeats() {
        // 5 → 3 → 5 → 7: nodes sorted [3, 5, 7]; edges 5→3, 3→5, 5→7. Then a one-click session.
        let s: &[u32] = &[5, 3, 5, 7];
        let short: &[u32] = &[9];
        let g = PackedGraphs::build(&[s, short]);
        assert_eq!(g.node_items, vec![3, 5, 7, 9]);
        assert_eq!(g.position_nodes, vec![1, 0, 1, 2, 3]);
        assert_eq!(g.position_sessions, vec![0, 0, 0, 0, 1]);
        assert_eq!(g.last_nodes, vec![2, 3]);
        // Official in-matrix rows: node 3 ← 5; node 5 ← 3; node 7 ← 5 (each in-degree 1).
        let inn = dense(&g.incoming, 4);
        assert_eq!(&inn[..12], &[0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
        // Official out-matrix rows: 3 → 5 (deg 1); 5 → 3 and 5 → 7 (deg 2 → 0.5 each).
        let out = dense(&g.outgoing, 4);
        assert_eq!(&out[..12], &[0.0, 1.0, 0.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(inn[12..].iter().chain(&out[12..]).all(|&x| x == 0.0), "one-click session has no edges");
    }

    #[test]
    fn repeated_transition_counts_once_and_degrees_average() {
        // 1 → 2 → 1 → 2 → 3: edges 1→2, 2→1, 2→3; node 2 has out-degree 2.
        let s: &[u32] = &[1, 2, 1, 2, 3];
        let g = PackedGraphs::build(&[s]);
        assert_eq!(g.incoming.src.len(), 3);
        let out = dense(&g.outgoing, 3);
        assert_eq!(out, vec![0.0, 1.0, 0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0]);
        let inn = dense(&g.incoming, 3);
        assert_eq!(inn, vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    }
}
