//! SHARE (Wang et al., SDM 2021), after the official PyTorch code
//! (wangjlgz/Hypergraph-Session-Recommendation).
//!
//! * Hypergraph per session: the unique items are nodes; every window of w + 1 consecutive clicks
//!   (w = 0..=window) is a hyperedge, so with the default window 1 a session of length L has L
//!   single-click edges and L − 1 pair edges (a repeated click gives repeated identical edges).
//! * Two hypergraph-attention layers (`HyperGraphAttentionLayerSparse`, no nonlinearity): each
//!   hyperedge attends over its nodes with a learned context vector u,
//!   `f_e = Σ_n softmax_n(u·x_n W₂/√d) v_n` (v = x in layer 1, x W in layer 2), then each node
//!   over its hyperedges, `x'_n = Σ_e softmax_e(x_n W₂ · f_e W₃/√d) f_e`. Both residuals go to
//!   the input embeddings: `x₁ = drop(L₁(x₀)) + x₀`, `x₂ = drop(L₂(x₁)) + x₀`.
//! * One pre-LN transformer layer (one head, only the query normalised, bias-free projections)
//!   over the session's clicks, then the output LayerNorm of the last position: G. Scores G·v_i.
//!
//! The official code builds dense incidence matrices `[B, E_max, n_max]` and runs the
//! transformer over every (left-padded) position; only the last position reaches the readout,
//! and padded nodes or edges are masked out of every real one, so here the incidence is an edge
//! list and the transformer computes the last position's query only. Every parameter starts
//! uniform(±1/√d), LayerNorm gains and biases included, as the official `reset_parameters`.
//! The official model's unused `embedding2`, `layer_norm1` and positional table are left out.

use crate::init::{Dense, ParamStore};
use crate::layers::{sum_per_session, LayerNorm};
use crate::ops::{row_sums, segment_softmax};
use crate::{dot_scores, Backbone, Encoded, Mode, ModelKind};
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareConfig {
    pub n_items: usize,
    pub dim: usize,
    /// Hypergraph-attention layers (`step`: 1 or 2; official 2).
    pub step: usize,
    /// Hyperedges join up to `window + 1` consecutive clicks (official 1).
    pub window: usize,
    /// Every dropout of the model: attention weights, layer outputs, transformer (official 0.3).
    pub dropout: f64,
}

impl ShareConfig {
    /// The official defaults.
    pub fn new(n_items: usize) -> Self {
        Self { n_items, dim: 100, step: 2, window: 1, dropout: 0.3 }
    }
}

/// One hypergraph-attention layer; weights are `[d_in, d_out]` used as `x·W`, as the official.
#[derive(Debug, Clone)]
struct HyperAttention {
    /// `weight`: the value transform (layer 2 only; `transfer=True`).
    transfer: Option<Tensor>,
    weight2: Tensor,
    weight3: Tensor,
    /// The context vector u (`word_context`, `[1, d]`).
    context: Tensor,
}

impl HyperAttention {
    fn new(ps: &ParamStore, d: usize, transfer: bool, stdv: f64) -> Result<Self> {
        Ok(Self {
            transfer: if transfer { Some(ps.uniform(&[d, d], "weight", stdv)?) } else { None },
            weight2: ps.uniform(&[d, d], "weight2", stdv)?,
            weight3: ps.uniform(&[d, d], "weight3", stdv)?,
            context: ps.uniform(&[1, d], "word_context.weight", stdv)?,
        })
    }

    fn forward(&self, inc: &Incidence, x: &Tensor, dropout: f64, mode: &mut Mode) -> Result<Tensor> {
        let dev = x.device();
        let (n_nodes, d) = x.dims2()?;
        let scale = 1.0 / (d as f64).sqrt();
        let (pair_edge, pair_node, n_edges) = (&inc.pair_edge, &inc.pair_node, inc.n_edges);
        let x_att = x.matmul(&self.weight2)?;
        let values = match &self.transfer {
            Some(w) => x.matmul(w)?,
            None => x.clone(),
        };
        // Node → hyperedge: u scores each member node.
        let node_logits = (x_att.matmul(&self.context.t()?)?.squeeze(1)? * scale)?;
        let a1 = segment_softmax(&node_logits.index_select(pair_node, 0)?, pair_edge, n_edges)?;
        let a1 = mode.dropout(&a1, dropout)?;
        let members = values.index_select(pair_node, 0)?.broadcast_mul(&a1.unsqueeze(1)?)?;
        let edges = Tensor::zeros((n_edges, d), x.dtype(), dev)?.index_add(pair_edge, &members, 0)?;
        // Hyperedge → node: each node scores the hyperedges it belongs to.
        let edge_keys = edges.matmul(&self.weight3)?.index_select(pair_edge, 0)?;
        let logits = (row_sums(&(x_att.index_select(pair_node, 0)? * edge_keys)?)? * scale)?;
        let a2 = mode.dropout(&segment_softmax(&logits, pair_node, n_nodes)?, dropout)?;
        let incoming = edges.index_select(pair_edge, 0)?.broadcast_mul(&a2.unsqueeze(1)?)?;
        Tensor::zeros((n_nodes, d), x.dtype(), dev)?.index_add(pair_node, &incoming, 0)
    }
}

/// A batch's incidence pairs as index tensors, built once and shared by every layer.
struct Incidence {
    pair_edge: Tensor,
    pair_node: Tensor,
    n_edges: usize,
}

/// The packed hypergraphs of a batch.
#[derive(Debug, Default, PartialEq)]
struct Hypergraphs {
    node_items: Vec<u32>,
    n_edges: usize,
    /// Incidence as pairs: hyperedge `pair_edge[i]` contains node `pair_node[i]` (once each).
    pair_edge: Vec<u32>,
    pair_node: Vec<u32>,
    /// Node and session of every click, oldest first.
    click_nodes: Vec<u32>,
    click_sessions: Vec<u32>,
    /// The node of each session's last click.
    last_nodes: Vec<u32>,
}

impl Hypergraphs {
    /// `utils.Data.get_slice` without the padding: edges in the official order (all windows of
    /// one click, then of two, …).
    fn build(sessions: &[&[u32]], window: usize) -> Self {
        let mut g = Hypergraphs::default();
        let mut members = Vec::with_capacity(window + 1);
        for (b, s) in sessions.iter().enumerate() {
            let base = g.node_items.len() as u32;
            let mut nodes = s.to_vec();
            nodes.sort_unstable();
            nodes.dedup();
            let alias: Vec<u32> = s
                .iter()
                .map(|item| base + nodes.binary_search(item).expect("a session item") as u32)
                .collect();
            for w in 0..=window.min(s.len() - 1) {
                for j in 0..s.len() - w {
                    members.clear();
                    members.extend_from_slice(&alias[j..=j + w]);
                    members.sort_unstable();
                    members.dedup();
                    for &m in &members {
                        g.pair_edge.push(g.n_edges as u32);
                        g.pair_node.push(m);
                    }
                    g.n_edges += 1;
                }
            }
            g.click_sessions.extend(std::iter::repeat_n(b as u32, s.len()));
            g.last_nodes.push(*alias.last().expect("a non-empty session"));
            g.click_nodes.extend(alias);
            g.node_items.extend(nodes);
        }
        g
    }
}

#[derive(Debug, Clone)]
pub struct Share {
    cfg: ShareConfig,
    embedding: Tensor,
    hypergraph_layers: Vec<HyperAttention>,
    attention_norm: LayerNorm,
    w_q: Dense,
    w_k: Dense,
    w_v: Dense,
    w_out: Dense,
    ffn_norm: LayerNorm,
    ffn_1: Dense,
    ffn_2: Dense,
    output_norm: LayerNorm,
}

impl Share {
    /// Creates the parameters in `ps` (names follow the official module tree).
    pub fn new(cfg: ShareConfig, ps: &ParamStore) -> Result<Self> {
        if !(1..=2).contains(&cfg.step) {
            candle_core::bail!("SHARE has 1 or 2 hypergraph layers (step), not {}", cfg.step);
        }
        let d = cfg.dim;
        let stdv = 1.0 / (d as f64).sqrt();
        let eps = 1e-6;
        let embedding = ps.uniform(&[cfg.n_items + 1, d], "embedding.weight", stdv)?;
        let output_norm = LayerNorm::new(ps, d, "layer_norm", stdv, eps)?;
        let enc = ps.pp("layer_stack.0");
        let attn = enc.pp("slf_attn");
        let ffn = enc.pp("pos_ffn");
        let w_q = Dense::new(&attn, d, d, false, "w_qs", stdv)?;
        let w_k = Dense::new(&attn, d, d, false, "w_ks", stdv)?;
        let w_v = Dense::new(&attn, d, d, false, "w_vs", stdv)?;
        let w_out = Dense::new(&attn, d, d, false, "fc", stdv)?;
        let attention_norm = LayerNorm::new(&attn, d, "layer_norm", stdv, eps)?;
        let ffn_1 = Dense::new(&ffn, d, d, true, "w_1", stdv)?;
        let ffn_2 = Dense::new(&ffn, d, d, true, "w_2", stdv)?;
        let ffn_norm = LayerNorm::new(&ffn, d, "layer_norm", stdv, eps)?;
        let hypergraph_layers = (0..cfg.step)
            .map(|i| HyperAttention::new(&ps.pp(&format!("hgnn.gat{}", i + 1)), d, i > 0, stdv))
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            embedding,
            hypergraph_layers,
            attention_norm,
            w_q,
            w_k,
            w_v,
            w_out,
            ffn_norm,
            ffn_1,
            ffn_2,
            output_norm,
        })
    }
}

impl Backbone for Share {
    fn kind(&self) -> ModelKind {
        ModelKind::Share
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

    /// G = LayerNorm(y) with y the transformer's output at the last click; `attention` holds y,
    /// which the authors' copy aligns with the intents (their `ht1`).
    fn encode(&self, sessions: &[&[u32]], mode: &mut Mode) -> Result<Encoded> {
        let dev = self.embedding.device();
        let (b, p) = (sessions.len(), self.cfg.dropout);
        let g = Hypergraphs::build(sessions, self.cfg.window);
        let x0 = self.embedding.index_select(&Tensor::new(g.node_items.as_slice(), dev)?, 0)?;
        let incidence = Incidence {
            pair_edge: Tensor::new(g.pair_edge.as_slice(), dev)?,
            pair_node: Tensor::new(g.pair_node.as_slice(), dev)?,
            n_edges: g.n_edges,
        };
        let mut x = x0.clone();
        for layer in &self.hypergraph_layers {
            let propagated = layer.forward(&incidence, &x, p, mode)?;
            x = (mode.dropout(&propagated, p)? + &x0)?;
        }
        let click_sessions = Tensor::new(g.click_sessions.as_slice(), dev)?;
        let clicks = x.index_select(&Tensor::new(g.click_nodes.as_slice(), dev)?, 0)?;
        let last = x.index_select(&Tensor::new(g.last_nodes.as_slice(), dev)?, 0)?;
        // Self-attention of the last position over its session's clicks (masked keys).
        let query = self.w_q.forward(&self.attention_norm.forward(&last)?)?;
        let keys = self.w_k.forward(&clicks)?;
        let values = self.w_v.forward(&clicks)?;
        let scale = 1.0 / (self.cfg.dim as f64).sqrt();
        let logits = (row_sums(&(query.index_select(&click_sessions, 0)? * keys)?)? * scale)?;
        let weights = mode.dropout(&segment_softmax(&logits, &click_sessions, b)?, p)?;
        let attended = sum_per_session(&values, &weights.unsqueeze(1)?, &click_sessions, b)?;
        let y = (mode.dropout(&self.w_out.forward(&attended)?, p)? + &last)?;
        let ffn = self.ffn_2.forward(&self.ffn_1.forward(&self.ffn_norm.forward(&y)?)?.relu()?)?;
        let y = (mode.dropout(&ffn, p)? + y)?;
        let session = self.output_norm.forward(&y)?;
        Ok(Encoded { session, attention: Some(y), context: None })
    }

    fn scores(&self, enc: &Encoded, _mode: &mut Mode) -> Result<Tensor> {
        dot_scores(&enc.session, &self.embedding.narrow(0, 1, self.cfg.n_items)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    fn model(step: usize) -> Share {
        let ps = ParamStore::new(11, &Device::Cpu);
        Share::new(ShareConfig { dim: 8, step, ..ShareConfig::new(20) }, &ps).unwrap()
    }

    #[test]
    fn hyperedges_are_the_official_windows() {
        let g = Hypergraphs::build(&[&[5, 3, 5, 5], &[7]], 1);
        // Nodes of session 0 sorted: 3 → 0, 5 → 1; alias 1 0 1 1. Four single-click edges, then
        // three pair edges {1,0} {0,1} {1}; session 1: one edge.
        assert_eq!(g.node_items, vec![3, 5, 7]);
        assert_eq!(g.n_edges, 8);
        assert_eq!(g.pair_edge, vec![0, 1, 2, 3, 4, 4, 5, 5, 6, 7]);
        assert_eq!(g.pair_node, vec![1, 0, 1, 1, 0, 1, 0, 1, 1, 2]);
        assert_eq!(g.last_nodes, vec![1, 2]);
        assert_eq!(g.click_nodes, vec![1, 0, 1, 1, 2]);
        // Window 2 adds the triples (w = 2) for sessions of length ≥ 3: (1+2)·4 − 3 = 9 edges.
        assert_eq!(Hypergraphs::build(&[&[5, 3, 5, 5]], 2).n_edges, 9);
    }

    #[test]
    fn more_than_two_layers_is_refused() {
        let ps = ParamStore::new(1, &Device::Cpu);
        assert!(Share::new(ShareConfig { step: 3, ..ShareConfig::new(5) }, &ps).is_err());
    }

    fn mat(v: Vec<f32>, rows: usize, cols: usize) -> Tensor {
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// Softmax over the last axis with `masked_fill(mask == 0, −1e9)`, as the official attention.
    fn masked_softmax(logits: &Tensor, mask: &Tensor) -> Tensor {
        let neg = Tensor::full(-1e9f32, logits.shape(), &Device::Cpu).unwrap();
        let filled = mask.ne(0f32).unwrap().where_cond(logits, &neg).unwrap();
        candle_nn::ops::softmax(&filled, D::Minus1).unwrap()
    }

    /// The official forward for a whole batch, dense as `get_slice` builds it: unique items padded
    /// with item 0 to the batch's most nodes, `HT [E_max, n_max]` per session, the sequence
    /// left-padded (alias 0, mask 0) and the transformer run over every position.
    fn official_batch(m: &Share, sessions: &[&[u32]]) -> Vec<Vec<f32>> {
        let d = m.cfg.dim;
        let uniques: Vec<Vec<u32>> = sessions
            .iter()
            .map(|s| {
                let mut u = s.to_vec();
                u.sort_unstable();
                u.dedup();
                u
            })
            .collect();
        let n_max = uniques.iter().map(Vec::len).max().unwrap();
        let min_s = |s: &[u32]| m.cfg.window.min(s.len());
        let e_max =
            sessions.iter().map(|s| (1 + min_s(s)) * s.len() - (1 + min_s(s)) * min_s(s) / 2).max().unwrap();
        let l_max = sessions.iter().map(|s| s.len()).max().unwrap();
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = Vec::new();
        for (s, nodes) in sessions.iter().zip(&uniques) {
            let alias: Vec<usize> = s.iter().map(|i| nodes.binary_search(i).unwrap()).collect();
            let mut ht = vec![0f32; e_max * n_max];
            let mut e = 0;
            for w in 0..=m.cfg.window.min(s.len() - 1) {
                for j in 0..s.len() - w {
                    for &a in &alias[j..=j + w] {
                        ht[(e + j) * n_max + a] += 1.0;
                    }
                }
                e += s.len() - w;
            }
            let ht = mat(ht, e_max, n_max);
            let mut items = nodes.clone();
            items.resize(n_max, 0);
            let x0 =
                m.embedding.index_select(&Tensor::new(items.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
            let layer = |l: &HyperAttention, x: &Tensor| -> Tensor {
                let x_att = x.matmul(&l.weight2).unwrap();
                let v = l.transfer.as_ref().map_or(x.clone(), |w| x.matmul(w).unwrap());
                let q1 = l.context.broadcast_as((e_max, d)).unwrap().affine(scale, 0.0).unwrap();
                let a1 = masked_softmax(&q1.matmul(&x_att.t().unwrap()).unwrap(), &ht);
                let edge = a1.matmul(&v).unwrap();
                let logits =
                    x_att.affine(scale, 0.0).unwrap().matmul(&edge.matmul(&l.weight3).unwrap().t().unwrap());
                masked_softmax(&logits.unwrap(), &ht.t().unwrap()).matmul(&edge).unwrap()
            };
            let mut x = x0.clone();
            for l in &m.hypergraph_layers {
                x = (layer(l, &x) + &x0).unwrap();
            }
            // Left padding: positions 0..pad point at node 0 and are masked as keys.
            let pad = l_max - s.len();
            let mut seq_alias = vec![0u32; pad];
            seq_alias.extend(alias.iter().map(|&a| a as u32));
            let z = x.index_select(&Tensor::new(seq_alias.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
            let key_mask: Vec<f32> = (0..l_max).map(|t| if t < pad { 0.0 } else { 1.0 }).collect();
            let key_mask = Tensor::new(key_mask.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
            let key_mask = key_mask.broadcast_as((l_max, l_max)).unwrap().contiguous().unwrap();
            let q =
                m.w_q.forward(&m.attention_norm.forward(&z).unwrap()).unwrap().affine(scale, 0.0).unwrap();
            let k = m.w_k.forward(&z).unwrap();
            let v = m.w_v.forward(&z).unwrap();
            let attn = masked_softmax(&q.matmul(&k.t().unwrap()).unwrap(), &key_mask);
            let y = (m.w_out.forward(&attn.matmul(&v).unwrap()).unwrap() + &z).unwrap();
            let ffn =
                m.ffn_2.forward(&m.ffn_1.forward(&m.ffn_norm.forward(&y).unwrap()).unwrap().relu().unwrap());
            let y = (ffn.unwrap() + &y).unwrap();
            let ht_last = m.output_norm.forward(&y.narrow(0, l_max - 1, 1).unwrap()).unwrap();
            out.push(ht_last.flatten_all().unwrap().to_vec1().unwrap());
        }
        out
    }

    #[test]
    fn packed_batch_equals_official_dense_formulation() {
        let sessions: Vec<&[u32]> = vec![&[5, 3, 5, 7], &[9], &[1, 2, 1, 2, 3, 20], &[4, 4, 4], &[8, 6]];
        for step in [1, 2] {
            let m = model(step);
            let got: Vec<Vec<f32>> = m.encode(&sessions, &mut Mode::Eval).unwrap().session.to_vec2().unwrap();
            for ((s, got), want) in sessions.iter().zip(&got).zip(official_batch(&m, &sessions)) {
                for (a, b) in got.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-5, "step {step}, session {s:?}: {a} vs {b}");
                }
            }
        }
    }
}
