//! GCE-GNN (Wang et al., SIGIR 2020), after the official PyTorch code (CCIIPLab/GCE-GNN).
//!
//! * Local: attention over the session graph, `e_ij = LeakyReLU((h_i ⊙ h_j)·a_r)` with one
//!   vector a_r per relation (self, in, out, both ways), softmax over node i's neighbours.
//! * Global: each node aggregates its sampled global-graph neighbours weighted by
//!   `softmax(w₂ᵀ LeakyReLU(W₁[s ⊙ h_n; count]))`, s the mean item embedding of the session,
//!   then `act(W₃[h; h_N])`, over `hops` iterations as the official loop.
//! * h = dropout(h_local) + dropout(h_global); readout over the clicks most recent first:
//!   `β_t = w₂ᵀσ(W_g z_t + W_h h̄)` with `z_t = tanh(W₁[p_t; x_t])` and no softmax, S = Σ β_t x_t.
//!
//! The official code pads every session to the split's longest and builds `[B, L, L, d]` for the
//! local attention; here the session graphs are packed and the attention runs over edge lists.
//! The sampled neighbours are buffers stored with the weights. Parameters that the official
//! model creates but never uses (`linear_transform`, the aggregators' `bias`) are left out.

use crate::global_graph::GlobalGraph;
use crate::init::{Dense, ParamStore};
use crate::ops::{row_sums, segment_softmax};
use crate::{dot_scores, Backbone, BuildCtx, DataShape, Encoded, Mode, ModelKind};
use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GceGnnConfig {
    pub n_items: usize,
    pub dim: usize,
    /// Global aggregation iterations (`n_iter`; 1 for the authors' Beauty and ML-1M runs).
    pub hops: usize,
    /// Neighbours kept per item (`n_sample_all`).
    pub sample: usize,
    pub dropout_gcn: f64,
    pub dropout_local: f64,
    pub dropout_global: f64,
    /// Negative slope of the LeakyReLUs (`alpha`).
    pub leaky_slope: f64,
    /// Rows of the reversed-position table (official 200; the authors' copy 256, which covers
    /// Beauty's 203). Longer sessions keep their most recent clicks.
    pub positions: usize,
    pub activation: Activation,
}

impl GceGnnConfig {
    /// The official defaults with the authors' Beauty/ML-1M settings (1 hop, no GCN or local
    /// dropout, global dropout 0.5) and a position table covering the data.
    pub fn new(shape: &DataShape) -> Self {
        Self {
            n_items: shape.n_items,
            dim: 100,
            hops: 1,
            sample: 12,
            dropout_gcn: 0.0,
            dropout_local: 0.0,
            dropout_global: 0.5,
            leaky_slope: 0.2,
            positions: 256.max(shape.train_max_len.max(shape.test_max_len)),
            activation: Activation::Relu,
        }
    }
}

/// One global aggregator (`GlobalAggregator`): `w_1 [d+1, d]`, `w_2 [d, 1]`, `w_3 [2d, d]`.
#[derive(Debug, Clone)]
struct GlobalAggregator {
    w_1: Tensor,
    w_2: Tensor,
    w_3: Tensor,
}

#[derive(Debug, Clone)]
pub struct GceGnn {
    cfg: GceGnnConfig,
    embedding: Tensor,
    positions: Tensor,
    /// a_0..a_3 as rows `[4, d]` (self, in, out, both ways).
    relations: Tensor,
    aggregators: Vec<GlobalAggregator>,
    w_1: Tensor,
    w_2: Tensor,
    glu1: Dense,
    glu2: Dense,
    neighbors: Tensor,
    neighbor_weights: Tensor,
}

/// Relations of the official session adjacency, as indices into `a_0..a_3`.
const SELF: u32 = 0;
const FROM_PREDECESSOR: u32 = 1;
const FROM_SUCCESSOR: u32 = 2;
const BOTH_WAYS: u32 = 3;

/// The packed session graphs of a batch.
#[derive(Debug, Default, PartialEq)]
struct LocalGraphs {
    node_items: Vec<u32>,
    node_sessions: Vec<u32>,
    /// Edge lists: node `receiver` attends to node `sender` under `relation`.
    receiver: Vec<u32>,
    sender: Vec<u32>,
    relation: Vec<u32>,
    /// Clicks most recent first: node, session and reversed position of each.
    click_nodes: Vec<u32>,
    click_sessions: Vec<u32>,
    click_positions: Vec<u32>,
}

impl LocalGraphs {
    /// `utils.Data.__getitem__`'s adjacency without the padding: every node has a self-loop;
    /// a transition p → q (p ≠ q) lets q attend to p as its predecessor and p to q as its
    /// successor, and both ways when q → p also occurs. Sessions longer than `max_clicks` keep
    /// their most recent clicks.
    fn build(sessions: &[&[u32]], max_clicks: usize) -> Self {
        let mut g = LocalGraphs::default();
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (b, s) in sessions.iter().enumerate() {
            let s = &s[s.len().saturating_sub(max_clicks)..];
            let base = g.node_items.len() as u32;
            let mut nodes = s.to_vec();
            nodes.sort_unstable();
            nodes.dedup();
            let node_of = |item: u32| base + nodes.binary_search(&item).expect("a session item") as u32;
            for (t, &item) in s.iter().rev().enumerate() {
                g.click_nodes.push(node_of(item));
                g.click_sessions.push(b as u32);
                g.click_positions.push(t as u32);
            }
            pairs.clear();
            pairs.extend(s.windows(2).filter(|w| w[0] != w[1]).map(|w| (node_of(w[0]), node_of(w[1]))));
            pairs.sort_unstable();
            pairs.dedup();
            for k in 0..nodes.len() as u32 {
                g.receiver.push(base + k);
                g.sender.push(base + k);
                g.relation.push(SELF);
            }
            for &(p, q) in &pairs {
                let both = pairs.binary_search(&(q, p)).is_ok();
                if both && p > q {
                    continue; // the pair (q, p) adds these two edges
                }
                let (to_q, to_p) =
                    if both { (BOTH_WAYS, BOTH_WAYS) } else { (FROM_PREDECESSOR, FROM_SUCCESSOR) };
                g.receiver.extend([q, p]);
                g.sender.extend([p, q]);
                g.relation.extend([to_q, to_p]);
            }
            g.node_sessions.extend(std::iter::repeat_n(b as u32, nodes.len()));
            g.node_items.extend_from_slice(&nodes);
        }
        g
    }
}

impl GceGnn {
    /// Creates the parameters in `ps` and the sampled global graph: from `ctx.sessions`, or as
    /// zero placeholders for loading a checkpoint.
    pub fn new(cfg: GceGnnConfig, ps: &ParamStore, ctx: &BuildCtx) -> Result<Self> {
        let d = cfg.dim;
        let stdv = 1.0 / (d as f64).sqrt();
        let embedding = ps.uniform(&[cfg.n_items + 1, d], "embedding.weight", stdv)?;
        let positions = ps.uniform(&[cfg.positions, d], "pos_embedding.weight", stdv)?;
        let relations = ps.uniform(&[4, d], "local_agg.a", stdv)?;
        let mut aggregators = Vec::with_capacity(cfg.hops);
        for i in 0..cfg.hops {
            let ps = ps.pp(&format!("agg_gcn_{i}"));
            aggregators.push(GlobalAggregator {
                w_1: ps.uniform(&[d + 1, d], "w_1", stdv)?,
                w_2: ps.uniform(&[d, 1], "w_2", stdv)?,
                w_3: ps.uniform(&[2 * d, d], "w_3", stdv)?,
            });
        }
        let w_1 = ps.uniform(&[2 * d, d], "w_1", stdv)?;
        let w_2 = ps.uniform(&[d, 1], "w_2", stdv)?;
        let glu1 = Dense::new(ps, d, d, true, "glu1", stdv)?;
        let glu2 = Dense::new(ps, d, d, false, "glu2", stdv)?;
        let rows = (cfg.n_items + 1, cfg.sample);
        let graph = match ctx.sessions {
            Some(sessions) => GlobalGraph::build(sessions, cfg.n_items, cfg.sample, ctx.seed),
            None => GlobalGraph {
                sample: cfg.sample,
                neighbors: vec![0; rows.0 * rows.1],
                weights: vec![0.0; rows.0 * rows.1],
            },
        };
        let dev = ps.device();
        let neighbors = ps.buffer("global.neighbors", Tensor::from_vec(graph.neighbors, rows, dev)?)?;
        let neighbor_weights = ps.buffer("global.weights", Tensor::from_vec(graph.weights, rows, dev)?)?;
        Ok(Self {
            cfg,
            embedding,
            positions,
            relations,
            aggregators,
            w_1,
            w_2,
            glu1,
            glu2,
            neighbors,
            neighbor_weights,
        })
    }

    fn leaky(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::leaky_relu(x, self.cfg.leaky_slope)
    }

    fn activate(&self, x: &Tensor) -> Result<Tensor> {
        match self.cfg.activation {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
        }
    }

    /// Session-graph attention over the raw node embeddings `h [nodes, d]`.
    fn local(&self, g: &LocalGraphs, h: &Tensor) -> Result<Tensor> {
        let dev = h.device();
        let receiver = Tensor::new(g.receiver.as_slice(), dev)?;
        let sender = Tensor::new(g.sender.as_slice(), dev)?;
        let relation = Tensor::new(g.relation.as_slice(), dev)?;
        let h_s = h.index_select(&sender, 0)?;
        let pair = (h.index_select(&receiver, 0)? * &h_s)?;
        let logits = self.leaky(&row_sums(&(pair * self.relations.index_select(&relation, 0)?)?)?)?;
        let alpha = segment_softmax(&logits, &receiver, h.dim(0)?)?;
        Tensor::zeros(h.shape(), h.dtype(), dev)?.index_add(
            &receiver,
            &h_s.broadcast_mul(&alpha.unsqueeze(1)?)?,
            0,
        )
    }

    /// One aggregator applied to `self_vectors [m, d]` and their neighbours `[m·k, d]` (k rows
    /// per self vector), with the neighbours' counts `[m·k, 1]` and their session's mean `[m·k, d]`.
    fn aggregate(
        &self,
        agg: &GlobalAggregator,
        self_vectors: &Tensor,
        neighbors: &Tensor,
        weights: &Tensor,
        session_info: &Tensor,
        mode: &mut Mode,
    ) -> Result<Tensor> {
        let (m, d, k) = (self_vectors.dim(0)?, self.cfg.dim, self.cfg.sample);
        // [s ⊙ h_n ; count]·W₁ as two products, so no [m, k, d+1] concatenation is built.
        let w_1 = agg.w_1.narrow(0, 0, d)?;
        let w_count = agg.w_1.narrow(0, d, 1)?;
        let a = ((neighbors * session_info)?.matmul(&w_1)? + weights.matmul(&w_count)?)?;
        let a = self.leaky(&a)?.matmul(&agg.w_2)?.reshape((m, 1, k))?;
        let a = candle_nn::ops::softmax(&a, D::Minus1)?;
        let pooled = a.matmul(&neighbors.reshape((m, k, d))?)?.reshape((m, d))?;
        let out = mode.dropout(&Tensor::cat(&[self_vectors, &pooled], 1)?, self.cfg.dropout_gcn)?;
        self.activate(&out.matmul(&agg.w_3)?)
    }

    /// The official global loop over hop levels: level h holds the items h hops away, each row
    /// with its session's mean embedding.
    fn global(&self, g: &LocalGraphs, session_mean: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let dev = self.embedding.device();
        let k = self.cfg.sample;
        let mut items = vec![Tensor::new(g.node_items.as_slice(), dev)?];
        let mut sessions = vec![Tensor::new(g.node_sessions.as_slice(), dev)?];
        let mut weights = Vec::new();
        for _ in 0..self.cfg.hops {
            let last = items.last().expect("level 0").clone();
            let rows = last.dim(0)?;
            items.push(self.neighbors.index_select(&last, 0)?.flatten_all()?);
            weights.push(self.neighbor_weights.index_select(&last, 0)?.reshape((rows * k, 1))?);
            let s = sessions.last().expect("level 0").unsqueeze(1)?.repeat((1, k))?.flatten_all()?;
            sessions.push(s);
        }
        let mut vectors: Vec<Tensor> =
            items.iter().map(|i| self.embedding.index_select(i, 0)).collect::<Result<_>>()?;
        for (iteration, agg) in self.aggregators.iter().enumerate() {
            let mut next = Vec::with_capacity(self.cfg.hops - iteration);
            for hop in 0..self.cfg.hops - iteration {
                let info = session_mean.index_select(&sessions[hop + 1], 0)?;
                next.push(self.aggregate(
                    agg,
                    &vectors[hop],
                    &vectors[hop + 1],
                    &weights[hop],
                    &info,
                    mode,
                )?);
            }
            vectors = next;
        }
        Ok(vectors.swap_remove(0))
    }
}

impl Backbone for GceGnn {
    fn kind(&self) -> ModelKind {
        ModelKind::Gcegnn
    }

    fn dim(&self) -> usize {
        self.cfg.dim
    }

    fn n_items(&self) -> usize {
        self.cfg.n_items
    }

    fn device(&self) -> &candle_core::Device {
        self.embedding.device()
    }

    fn encode(&self, sessions: &[&[u32]], mode: &mut Mode) -> Result<Encoded> {
        let dev = self.embedding.device();
        let b = sessions.len();
        let g = LocalGraphs::build(sessions, self.cfg.positions);
        let node_items = Tensor::new(g.node_items.as_slice(), dev)?;
        let h = self.embedding.index_select(&node_items, 0)?;
        let click_sessions = Tensor::new(g.click_sessions.as_slice(), dev)?;
        let mut counts = vec![0f32; b];
        for &s in &g.click_sessions {
            counts[s as usize] += 1.0;
        }
        let counts = Tensor::from_vec(counts, (b, 1), dev)?.to_dtype(h.dtype())?;
        let mean_of = |x: &Tensor| -> Result<Tensor> {
            Tensor::zeros((b, self.cfg.dim), x.dtype(), dev)?
                .index_add(&click_sessions, x, 0)?
                .broadcast_div(&counts)
        };
        let click_nodes = Tensor::new(g.click_nodes.as_slice(), dev)?;
        // The session's mean raw embedding (repeats counted) steers the global attention.
        let session_mean = mean_of(&h.index_select(&click_nodes, 0)?)?;
        let local = self.local(&g, &h)?;
        let global = self.global(&g, &session_mean, mode)?;
        let nodes = (mode.dropout(&local, self.cfg.dropout_local)?
            + mode.dropout(&global, self.cfg.dropout_global)?)?;
        // Readout (`compute_scores`): x_t = node state of the t-th most recent click.
        let x = nodes.index_select(&click_nodes, 0)?;
        let p = self.positions.index_select(&Tensor::new(g.click_positions.as_slice(), dev)?, 0)?;
        let z = Tensor::cat(&[&p, &x], 1)?.matmul(&self.w_1)?.tanh()?;
        let mean = mean_of(&x)?.index_select(&click_sessions, 0)?;
        let gate = candle_nn::ops::sigmoid(&(self.glu1.forward(&z)? + self.glu2.forward(&mean)?)?)?;
        let beta = gate.matmul(&self.w_2)?;
        let session = Tensor::zeros((b, self.cfg.dim), x.dtype(), dev)?.index_add(
            &click_sessions,
            &x.broadcast_mul(&beta)?,
            0,
        )?;
        Ok(Encoded::new(session))
    }

    fn scores(&self, enc: &Encoded, _mode: &mut Mode) -> Result<Tensor> {
        dot_scores(&enc.session, &self.embedding.narrow(0, 1, self.cfg.n_items)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn model(hops: usize) -> GceGnn {
        let ps = ParamStore::new(9, &Device::Cpu);
        let shape = DataShape { n_items: 15, train_max_len: 8, test_max_len: 8 };
        let cfg = GceGnnConfig { dim: 6, hops, sample: 4, positions: 10, ..GceGnnConfig::new(&shape) };
        let sessions =
            vec![vec![1, 2, 3, 4, 2], vec![5, 6, 5, 7], vec![8, 9, 10, 11, 12, 13], vec![3, 14, 15, 1]];
        GceGnn::new(cfg, &ps, &BuildCtx { sessions: Some(&sessions), seed: 3 }).unwrap()
    }

    fn t(v: Vec<f32>, shape: (usize, usize)) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The official `Data.__getitem__` + `CombineGraph.forward` + `compute_scores` for one session
    /// padded to `len` positions (evaluation, one hop): dense `[L, L]` adjacency built by the
    /// official loop over the reversed sequence, `[L, L, d]` local attention, `[L, 12, d]` global.
    fn official_session(m: &GceGnn, s: &[u32], len: usize) -> Vec<f32> {
        let d = m.cfg.dim;
        let k = m.cfg.sample;
        let mut u: Vec<u32> = s.iter().rev().copied().collect();
        u.resize(len, 0);
        let mask: Vec<f32> = (0..len).map(|i| if i < s.len() { 1.0 } else { 0.0 }).collect();
        let mut node = u.clone();
        node.sort_unstable();
        node.dedup();
        let idx = |x: u32| node.iter().position(|&n| n == x).unwrap();
        let mut items = node.clone();
        items.resize(len, 0);
        let mut adj = vec![vec![0u8; len]; len];
        for i in 0..len - 1 {
            let a = idx(u[i]);
            adj[a][a] = 1;
            if u[i + 1] == 0 {
                break;
            }
            let b = idx(u[i + 1]);
            if a == b || adj[a][b] == 4 {
                continue;
            }
            adj[b][b] = 1;
            if adj[b][a] == 2 {
                adj[a][b] = 4;
                adj[b][a] = 4;
            } else {
                adj[a][b] = 2;
                adj[b][a] = 3;
            }
        }
        let alias: Vec<u32> = u.iter().map(|&x| idx(x) as u32).collect();
        let emb =
            |ids: &[u32]| m.embedding.index_select(&Tensor::new(ids, &Device::Cpu).unwrap(), 0).unwrap();
        let h = emb(&items);
        let hv: Vec<Vec<f32>> = h.to_vec2().unwrap();
        let a: Vec<Vec<f32>> = m.relations.to_vec2().unwrap();
        let leaky = |x: f32| if x > 0.0 { x } else { 0.2 * x };
        // Local: e_ij over all L×L pairs, masked by the adjacency, softmax over j.
        let mut local = vec![0f32; len * d];
        for i in 0..len {
            let e: Vec<f32> = (0..len)
                .map(|j| {
                    if adj[i][j] == 0 {
                        -9e15
                    } else {
                        leaky((0..d).map(|c| hv[i][c] * hv[j][c] * a[adj[i][j] as usize - 1][c]).sum())
                    }
                })
                .collect();
            let max = e.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f32> = e.iter().map(|x| (x - max).exp()).collect();
            let z: f32 = w.iter().sum();
            for j in 0..len {
                for c in 0..d {
                    local[i * d + c] += w[j] / z * hv[j][c];
                }
            }
        }
        // Global, one hop: neighbours of every node slot, session mean of the raw sequence.
        let count = mask.iter().sum::<f32>();
        let raw = emb(&u).broadcast_mul(&t(mask.clone(), (len, 1))).unwrap();
        let s_mean = (raw.sum_keepdim(0).unwrap() / count as f64).unwrap(); // [1, d]
        let nb = m.neighbors.index_select(&Tensor::new(items.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
        let nw = m
            .neighbor_weights
            .index_select(&Tensor::new(items.as_slice(), &Device::Cpu).unwrap(), 0)
            .unwrap();
        let nbv = emb(&nb.flatten_all().unwrap().to_vec1::<u32>().unwrap()).reshape((len, k, d)).unwrap();
        let agg = &m.aggregators[0];
        let x = Tensor::cat(
            &[&nbv.broadcast_mul(&s_mean.unsqueeze(0).unwrap()).unwrap(), &nw.unsqueeze(2).unwrap()],
            2,
        )
        .unwrap();
        let al = candle_nn::ops::leaky_relu(&x.broadcast_matmul(&agg.w_1).unwrap(), 0.2).unwrap();
        let al =
            candle_nn::ops::softmax(&al.broadcast_matmul(&agg.w_2).unwrap().squeeze(2).unwrap(), 1).unwrap();
        let pooled = nbv.broadcast_mul(&al.unsqueeze(2).unwrap()).unwrap().sum(1).unwrap();
        let global = Tensor::cat(&[&h, &pooled], 1).unwrap().matmul(&agg.w_3).unwrap().relu().unwrap();
        let out = (t(local, (len, d)) + global).unwrap();
        // compute_scores
        let hidden = out.index_select(&Tensor::new(alias.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
        let maskt = t(mask, (len, 1));
        let hs = (hidden.broadcast_mul(&maskt).unwrap().sum_keepdim(0).unwrap() / count as f64).unwrap();
        let pos = m.positions.narrow(0, 0, len).unwrap();
        let nh = Tensor::cat(&[&pos, &hidden], 1).unwrap().matmul(&m.w_1).unwrap().tanh().unwrap();
        let nh = candle_nn::ops::sigmoid(
            &m.glu1.forward(&nh).unwrap().broadcast_add(&m.glu2.forward(&hs).unwrap()).unwrap(),
        )
        .unwrap();
        let beta = nh.matmul(&m.w_2).unwrap().mul(&maskt).unwrap();
        hidden.broadcast_mul(&beta).unwrap().sum(0).unwrap().to_vec1().unwrap()
    }

    #[test]
    fn packed_batch_equals_the_official_dense_computation() {
        let m = model(1);
        let sessions: Vec<&[u32]> = vec![&[1, 2, 3, 2, 1], &[7], &[5, 6, 5, 6, 7, 5], &[9, 9, 10], &[4, 3]];
        let got: Vec<Vec<f32>> = m.encode(&sessions, &mut Mode::Eval).unwrap().session.to_vec2().unwrap();
        for (s, row) in sessions.iter().zip(&got) {
            let want = official_session(&m, s, 8);
            for (x, y) in row.iter().zip(&want) {
                assert!((x - y).abs() < 1e-5, "session {s:?}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn adjacency_relations_follow_the_official_codes() {
        // 4 → 3 → 4 → 5: 3 and 4 both ways; 5 has 4 as predecessor, 4 has 5 as successor.
        let g = LocalGraphs::build(&[&[4, 3, 4, 5]], 10);
        assert_eq!(g.node_items, vec![3, 4, 5]);
        let mut edges: Vec<(u32, u32, u32)> =
            (0..g.receiver.len()).map(|i| (g.receiver[i], g.sender[i], g.relation[i])).collect();
        edges.sort_unstable();
        let want = vec![
            (0, 0, SELF),
            (0, 1, BOTH_WAYS),
            (1, 0, BOTH_WAYS),
            (1, 1, SELF),
            (1, 2, FROM_SUCCESSOR),
            (2, 1, FROM_PREDECESSOR),
            (2, 2, SELF),
        ];
        assert_eq!(edges, want);
        assert_eq!(g.click_nodes, vec![2, 1, 0, 1], "clicks most recent first");
        assert_eq!(g.click_positions, vec![0, 1, 2, 3]);
    }

    #[test]
    fn two_hops_run_and_long_sessions_keep_the_recent_clicks() {
        let m = model(2);
        let long: Vec<u32> = (0..25).map(|i| 1 + i % 15).collect();
        let enc = m.encode(&[&long, &[3, 4]], &mut Mode::Eval).unwrap();
        assert_eq!(enc.session.dims(), &[2, 6]);
        let recent = m.encode(&[&long[15..], &[3, 4]], &mut Mode::Eval).unwrap();
        let diff = (enc.session - recent.session).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
