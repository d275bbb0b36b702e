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

    /// The official code's dense formulation for one session: `A_in`, `A_out` as `[n, n]`
    /// matrices over the sorted unique items, masked attention over positions.
    fn official_session(m: &SrGnn, s: &[u32]) -> Vec<f32> {
        let dev = Device::Cpu;
        let mut nodes = s.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let n = nodes.len();
        let pos = |i: u32| nodes.iter().position(|&x| x == i).unwrap();
        let mut a = vec![0f32; n * n];
        for w in s.windows(2) {
            a[pos(w[0]) * n + pos(w[1])] = 1.0;
        }
        // u_A_in = A / colsum, transposed; u_A_out = A / rowsum.
        let mut a_in = vec![0f32; n * n];
        let mut a_out = vec![0f32; n * n];
        for u in 0..n {
            for v in 0..n {
                let col: f32 = (0..n).map(|k| a[k * n + v]).sum::<f32>().max(1.0);
                let row: f32 = (0..n).map(|k| a[u * n + k]).sum::<f32>().max(1.0);
                a_in[v * n + u] = a[u * n + v] / col;
                a_out[u * n + v] = a[u * n + v] / row;
            }
        }
        let a_in = Tensor::from_vec(a_in, (n, n), &dev).unwrap();
        let a_out = Tensor::from_vec(a_out, (n, n), &dev).unwrap();
        let ids = Tensor::from_vec(nodes.clone(), n, &dev).unwrap();
        let h = m.embedding.index_select(&ids, 0).unwrap();
        let c = &m.cell;
        let d = m.cfg.dim;
        let input_in = a_in.matmul(&c.edge_in.forward(&h).unwrap()).unwrap().broadcast_add(&c.b_iah).unwrap();
        let input_out =
            a_out.matmul(&c.edge_out.forward(&h).unwrap()).unwrap().broadcast_add(&c.b_oah).unwrap();
        let inputs = Tensor::cat(&[&input_in, &input_out], 1).unwrap();
        let gi = c.input_gates.forward(&inputs).unwrap();
        let gh = c.hidden_gates.forward(&h).unwrap();
        let part = |t: &Tensor, k: usize| t.narrow(1, k * d, d).unwrap();
        let r = candle_nn::ops::sigmoid(&(part(&gi, 0) + part(&gh, 0)).unwrap()).unwrap();
        let z = candle_nn::ops::sigmoid(&(part(&gi, 1) + part(&gh, 1)).unwrap()).unwrap();
        let nn = (part(&gi, 2) + r.mul(&part(&gh, 2)).unwrap()).unwrap().tanh().unwrap();
        let hy = (&nn + z.mul(&(&h - &nn).unwrap()).unwrap()).unwrap();
        let alias =
            Tensor::from_vec(s.iter().map(|&i| pos(i) as u32).collect::<Vec<_>>(), s.len(), &dev).unwrap();
        let seq = hy.index_select(&alias, 0).unwrap();
        let ht = seq.narrow(0, s.len() - 1, 1).unwrap();
        let q1 = m.attn_last.forward(&ht).unwrap();
        let q2 = m.attn_item.forward(&seq).unwrap();
        let alpha =
            m.attn_score.forward(&candle_nn::ops::sigmoid(&q2.broadcast_add(&q1).unwrap()).unwrap()).unwrap();
        let a = seq.broadcast_mul(&alpha).unwrap().sum_keepdim(0).unwrap();
        let out = m.transform.as_ref().unwrap().forward(&Tensor::cat(&[&a, &ht], 1).unwrap()).unwrap();
        out.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn packed_batch_equals_official_dense_formulation() {
        let (_ps, m) = model(30, 12);
        let sessions: Vec<&[u32]> = vec![&[5, 3, 5, 7], &[9], &[1, 2, 1, 2, 3, 30], &[4, 4, 4], &[8, 6]];
        let batch: Vec<Vec<f32>> = m.session(&sessions, false).unwrap().to_vec2().unwrap();
        for (s, got) in sessions.iter().zip(&batch) {
            let want = official_session(&m, s);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "session {s:?}: {a} vs {b}");
            }
        }
    }

    /// Central differences in f64 against autograd, for the gated cell's input and a bias.
    #[test]
    fn gated_cell_gradient_matches_finite_differences() {
        use candle_core::{DType, Var};
        let dev = Device::Cpu;
        let d = 4;
        let ps = ParamStore::new(3, &dev);
        let cell32 = GatedCell::new(&ps, d, 0.5).unwrap();
        let to64 = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap();
        let dense = |x: &Dense| Dense {
            weight: to64(&x.weight).as_tensor().clone(),
            bias: x.bias.as_ref().map(|b| to64(b).as_tensor().clone()),
        };
        let b_iah = to64(&cell32.b_iah);
        let cell = GatedCell {
            edge_in: dense(&cell32.edge_in),
            edge_out: dense(&cell32.edge_out),
            b_iah: b_iah.as_tensor().clone(),
            b_oah: to64(&cell32.b_oah).as_tensor().clone(),
            input_gates: dense(&cell32.input_gates),
            hidden_gates: dense(&cell32.hidden_gates),
        };
        let g = PackedGraphs::build(&[&[1, 2, 3, 2], &[4, 5]]);
        let n = g.n_nodes();
        let edges = |e: &Edges| {
            let w: Vec<f64> = e.weight.iter().map(|&x| x as f64).collect();
            Some(EdgeTensors {
                src: Tensor::new(e.src.as_slice(), &dev).unwrap(),
                dst: Tensor::new(e.dst.as_slice(), &dev).unwrap(),
                weight: Tensor::from_vec(w, (e.src.len(), 1), &dev).unwrap(),
                n_nodes: n,
            })
        };
        let (inc, out) = (edges(&g.incoming), edges(&g.outgoing));
        let h0: Vec<f64> = (0..n * d).map(|i| ((i * 37 % 11) as f64 - 5.0) / 7.0).collect();
        let probe = Tensor::from_vec(
            (0..n * d).map(|i| ((i * 13 % 7) as f64 - 3.0) / 3.0).collect::<Vec<_>>(),
            (n, d),
            &dev,
        )
        .unwrap();
        let loss_of = |h: &Tensor, cell: &GatedCell| -> Tensor {
            cell.step(&inc, &out, h).unwrap().mul(&probe).unwrap().sum_all().unwrap()
        };
        let h = Var::from_tensor(&Tensor::from_vec(h0.clone(), (n, d), &dev).unwrap()).unwrap();
        let grads = loss_of(h.as_tensor(), &cell).backward().unwrap();
        let gh: Vec<f64> = grads.get(h.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let gb: Vec<f64> = grads.get(b_iah.as_tensor()).unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        let eval_h = |i: usize, delta: f64| {
            let mut v = h0.clone();
            v[i] += delta;
            loss_of(&Tensor::from_vec(v, (n, d), &dev).unwrap(), &cell).to_scalar::<f64>().unwrap()
        };
        for i in 0..n * d {
            let fd = (eval_h(i, eps) - eval_h(i, -eps)) / (2.0 * eps);
            assert!((fd - gh[i]).abs() < 1e-6, "dL/dh[{i}]: fd {fd} vs autograd {}", gh[i]);
        }
        let base: Vec<f64> = b_iah.as_tensor().to_vec1().unwrap();
        let h_t = h.as_tensor().clone();
        for i in 0..d {
            let shifted = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                b_iah.set(&Tensor::new(v.as_slice(), &dev).unwrap()).unwrap();
                loss_of(&h_t, &cell).to_scalar::<f64>().unwrap()
            };
            let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            assert!((fd - gb[i]).abs() < 1e-6, "dL/db_iah[{i}]: fd {fd} vs autograd {}", gb[i]);
        }
    }
}
