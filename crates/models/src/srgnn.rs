//! SR-GNN (Wu et al., AAAI 2019), after the official PyTorch code (CRIPAC-DIG/SR-GNN).
//!
//! Per-session graph → gated GNN (`step` iterations of GRU-style gates over averaged in/out
//! neighbour messages) → soft-attention readout `s_g = Σ α_i h_i` with
//! `α_i = q·σ(W₁h_last + W₂h_i + c)` → hybrid `W₃[s_g; h_last]` → scores `s·v_i`.
//! Every parameter starts uniform(±1/√d), as `reset_parameters` does in the official code.

use crate::graph::{Edges, PackedGraphs};
use crate::init::{Dense, ParamStore};
use crate::Backbone;
use candle_core::{Device, Result, Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrGnnConfig {
    pub n_items: usize,
    #[serde(default = "default_dim")]
    pub dim: usize,
    /// GNN propagation steps (official default 1).
    #[serde(default = "default_step")]
    pub step: usize,
    /// false: hybrid readout `W[s_g; h_last]` (official default); true: `s_g` only.
    #[serde(default)]
    pub nonhybrid: bool,
}

fn default_dim() -> usize {
    100
}
fn default_step() -> usize {
    1
}

impl SrGnnConfig {
    pub fn new(n_items: usize) -> Self {
        Self { n_items, dim: default_dim(), step: default_step(), nonhybrid: false }
    }
}

/// The gated graph cell's parameters.
#[derive(Debug, Clone)]
struct GatedCell {
    edge_in: Dense,
    edge_out: Dense,
    b_iah: Tensor,
    b_oah: Tensor,
    input_gates: Dense,
    hidden_gates: Dense,
}

impl GatedCell {
    fn new(ps: &ParamStore, d: usize, stdv: f64) -> Result<Self> {
        Ok(Self {
            edge_in: Dense::new(ps, d, d, true, "linear_edge_in", stdv)?,
            edge_out: Dense::new(ps, d, d, true, "linear_edge_out", stdv)?,
            b_iah: ps.uniform(&[d], "b_iah", stdv)?,
            b_oah: ps.uniform(&[d], "b_oah", stdv)?,
            input_gates: Dense::new(ps, 2 * d, 3 * d, true, "w_ih", stdv)?,
            hidden_gates: Dense::new(ps, d, 3 * d, true, "w_hh", stdv)?,
        })
    }

    /// One propagation step over the packed node states `hidden [nodes, d]`.
    fn step(
        &self,
        incoming: &Option<EdgeTensors>,
        outgoing: &Option<EdgeTensors>,
        hidden: &Tensor,
    ) -> Result<Tensor> {
        let d = hidden.dim(D::Minus1)?;
        let msg_in = incoming.average(&self.edge_in.forward(hidden)?)?.broadcast_add(&self.b_iah)?;
        let msg_out = outgoing.average(&self.edge_out.forward(hidden)?)?.broadcast_add(&self.b_oah)?;
        let inputs = Tensor::cat(&[&msg_in, &msg_out], D::Minus1)?;
        let gi = self.input_gates.forward(&inputs)?;
        let gh = self.hidden_gates.forward(hidden)?;
        let reset = candle_nn::ops::sigmoid(&(gi.narrow(D::Minus1, 0, d)? + gh.narrow(D::Minus1, 0, d)?)?)?;
        let update = candle_nn::ops::sigmoid(&(gi.narrow(D::Minus1, d, d)? + gh.narrow(D::Minus1, d, d)?)?)?;
        let candidate =
            (gi.narrow(D::Minus1, 2 * d, d)? + reset.mul(&gh.narrow(D::Minus1, 2 * d, d)?)?)?.tanh()?;
        // h' = n + z ⊙ (h − n)
        &candidate + update.mul(&(hidden - &candidate)?)?
    }
}

/// An edge list on the device.
struct EdgeTensors {
    src: Tensor,
    dst: Tensor,
    weight: Tensor,
    n_nodes: usize,
}

impl EdgeTensors {
    fn new(e: Edges, n_nodes: usize, dev: &Device) -> Result<Option<Self>> {
        if e.src.is_empty() {
            return Ok(None);
        }
        let n = e.src.len();
        Ok(Some(Self {
            src: Tensor::from_vec(e.src, n, dev)?,
            dst: Tensor::from_vec(e.dst, n, dev)?,
            weight: Tensor::from_vec(e.weight, (n, 1), dev)?,
            n_nodes,
        }))
    }
}

trait Average {
    /// Per node, the weighted sum of its neighbours' rows of `x` (zero without neighbours).
    fn average(&self, x: &Tensor) -> Result<Tensor>;
}

impl Average for Option<EdgeTensors> {
    fn average(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            None => x.zeros_like(),
            Some(e) => {
                let msgs = x.index_select(&e.src, 0)?.broadcast_mul(&e.weight)?;
                Tensor::zeros((e.n_nodes, x.dim(1)?), x.dtype(), x.device())?.index_add(&e.dst, &msgs, 0)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SrGnn {
    cfg: SrGnnConfig,
    embedding: Tensor,
    cell: GatedCell,
    attn_last: Dense,
    attn_item: Dense,
    attn_score: Dense,
    transform: Option<Dense>,
    device: Device,
}

impl SrGnn {
    /// Creates the parameters in `ps` (names follow the official code).
    pub fn new(cfg: SrGnnConfig, ps: &ParamStore) -> Result<Self> {
        let d = cfg.dim;
        let stdv = 1.0 / (d as f64).sqrt();
        let embedding = ps.uniform(&[cfg.n_items + 1, d], "embedding.weight", stdv)?;
        let cell = GatedCell::new(&ps.pp("gnn"), d, stdv)?;
        let transform = if cfg.nonhybrid {
            None
        } else {
            Some(Dense::new(ps, 2 * d, d, true, "linear_transform", stdv)?)
        };
        Ok(Self {
            embedding,
            cell,
            attn_last: Dense::new(ps, d, d, true, "linear_one", stdv)?,
            attn_item: Dense::new(ps, d, d, true, "linear_two", stdv)?,
            attn_score: Dense::new(ps, d, 1, false, "linear_three", stdv)?,
            transform,
            device: ps.device().clone(),
            cfg,
        })
    }

    pub fn config(&self) -> &SrGnnConfig {
        &self.cfg
    }
}

impl Backbone for SrGnn {
    fn name(&self) -> &'static str {
        "srgnn"
    }

    fn dim(&self) -> usize {
        self.cfg.dim
    }

    fn readout_dim(&self) -> usize {
        if self.cfg.nonhybrid {
            self.cfg.dim
        } else {
            2 * self.cfg.dim
        }
    }

    fn readout(&self, sessions: &[&[u32]], _train: bool) -> Result<Tensor> {
        let g = PackedGraphs::build(sessions);
        let (b, n, p, d) = (g.batch, g.n_nodes(), g.position_nodes.len(), self.cfg.dim);
        let dev = &self.device;
        let incoming = EdgeTensors::new(g.incoming, n, dev)?;
        let outgoing = EdgeTensors::new(g.outgoing, n, dev)?;
        let mut hidden = self.embedding.index_select(&Tensor::from_vec(g.node_items, n, dev)?, 0)?;
        for _ in 0..self.cfg.step {
            hidden = self.cell.step(&incoming, &outgoing, &hidden)?;
        }
        let position_sessions = Tensor::from_vec(g.position_sessions, p, dev)?;
        let seq_hidden = hidden.index_select(&Tensor::from_vec(g.position_nodes, p, dev)?, 0)?;
        let last = hidden.index_select(&Tensor::from_vec(g.last_nodes, b, dev)?, 0)?;
        // α_i = q·σ(W₁ h_last + W₂ h_i + c), s_g = Σ_i α_i h_i per session.
        let q1 = self.attn_last.forward(&last)?.index_select(&position_sessions, 0)?;
        let q2 = self.attn_item.forward(&seq_hidden)?;
        let alpha = self.attn_score.forward(&candle_nn::ops::sigmoid(&(q1 + q2)?)?)?;
        let weighted = seq_hidden.broadcast_mul(&alpha)?;
        let global =
            Tensor::zeros((b, d), weighted.dtype(), dev)?.index_add(&position_sessions, &weighted, 0)?;
        if self.cfg.nonhybrid {
            Ok(global)
        } else {
            Tensor::cat(&[&global, &last], 1)
        }
    }

    fn project(&self, readout: &Tensor) -> Result<Tensor> {
        match &self.transform {
            Some(t) => t.forward(readout),
            None => Ok(readout.clone()),
        }
    }

    fn item_embeddings(&self) -> Result<Tensor> {
        self.embedding.narrow(0, 1, self.cfg.n_items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(n_items: usize, d: usize) -> (ParamStore, SrGnn) {
        let ps = ParamStore::new(1, &Device::Cpu);
        let cfg = SrGnnConfig { n_items, dim: d, step: 1, nonhybrid: false };
        let m = SrGnn::new(cfg, &ps).unwrap();
        (ps, m)
    }

    #[test]
    fn shapes_and_padding_invariance() {
        let (_vm, m) = model(10, 8);
        let a: &[u32] = &[1, 2, 3, 2];
        let b: &[u32] = &[4];
        let together = m.session(&[a, b], false).unwrap();
        assert_eq!(together.dims(), &[2, 8]);
        // A session's representation must not depend on what else is in the batch (padding).
        let alone = m.session(&[b], false).unwrap();
        let diff = (together.narrow(0, 1, 1).unwrap() - alone).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        let scores = m.scores(&together).unwrap();
        assert_eq!(scores.dims(), &[2, 10]);
    }

    #[test]
    fn init_is_uniform_within_bound() {
        let (ps, _m) = model(50, 16);
        let bound = 1.0 / 4.0;
        for (_, var) in ps.vars() {
            let v: Vec<f32> = var.flatten_all().unwrap().to_vec1().unwrap();
            assert!(v.iter().all(|x| x.abs() <= bound + 1e-6));
        }
    }
}
