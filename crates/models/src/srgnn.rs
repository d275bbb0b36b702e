//! SR-GNN (Wu et al., AAAI 2019), after the official PyTorch code (CRIPAC-DIG/SR-GNN).
//!
//! Per-session graph → gated GNN (`step` iterations of GRU-style gates over averaged in/out
//! neighbour messages) → soft-attention readout `s_g = Σ α_i h_i` with
//! `α_i = q·σ(W₁h_last + W₂h_i + c)` → hybrid `W₃[s_g; h_last]` → scores `s·v_i`.
//! Every parameter starts uniform(±1/√d), as `reset_parameters` does in the official code.

use crate::init::{Dense, ParamStore};
use crate::layers::{run_gated_gnn, sum_per_session, GatedCell, SoftAttention};
use crate::{dot_scores, Backbone, Encoded, Mode, ModelKind};
use candle_core::{Result, Tensor};
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

#[derive(Debug, Clone)]
pub struct SrGnn {
    cfg: SrGnnConfig,
    embedding: Tensor,
    cell: GatedCell,
    attention: SoftAttention,
    transform: Option<Dense>,
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
        let attention = SoftAttention::new(ps, d, stdv)?;
        Ok(Self { embedding, cell, attention, transform, cfg })
    }
}

impl Backbone for SrGnn {
    fn kind(&self) -> ModelKind {
        ModelKind::Srgnn
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

    /// G = W₃[s_g; h_last] (or s_g with `nonhybrid`); SR-GNN has no dropout.
    fn encode(&self, sessions: &[&[u32]], _mode: &mut Mode) -> Result<Encoded> {
        let g = run_gated_gnn(&self.embedding, &self.cell, self.cfg.step, sessions)?;
        // s_g = Σ_i α_i h_i per session, α unnormalised as in the official code.
        let alpha = self.attention.logits(&g)?;
        let global = sum_per_session(&g.clicks, &alpha, &g.click_sessions, sessions.len())?;
        Ok(match &self.transform {
            Some(t) => Encoded {
                session: t.forward(&Tensor::cat(&[&global, &g.last], 1)?)?,
                attention: Some(global),
                context: None,
            },
            None => Encoded::new(global),
        })
    }

    fn scores(&self, enc: &Encoded, _mode: &mut Mode) -> Result<Tensor> {
        dot_scores(&enc.session, &self.embedding.narrow(0, 1, self.cfg.n_items)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
        let together = m.encode(&[a, b], &mut Mode::Eval).unwrap();
        let together_scores = m.scores(&together, &mut Mode::Eval).unwrap();
        let together = together.session;
        assert_eq!(together.dims(), &[2, 8]);
        // A session's representation must not depend on what else is in the batch (padding).
        let alone = m.encode(&[b], &mut Mode::Eval).unwrap().session;
        let diff = (together.narrow(0, 1, 1).unwrap() - alone).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
        assert_eq!(together_scores.dims(), &[2, 10]);
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
        let q1 = m.attention.last.forward(&ht).unwrap();
        let q2 = m.attention.item.forward(&seq).unwrap();
        let alpha = m
            .attention
            .score
            .forward(&candle_nn::ops::sigmoid(&q2.broadcast_add(&q1).unwrap()).unwrap())
            .unwrap();
        let a = seq.broadcast_mul(&alpha).unwrap().sum_keepdim(0).unwrap();
        let out = m.transform.as_ref().unwrap().forward(&Tensor::cat(&[&a, &ht], 1).unwrap()).unwrap();
        out.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn packed_batch_equals_official_dense_formulation() {
        let (_ps, m) = model(30, 12);
        let sessions: Vec<&[u32]> = vec![&[5, 3, 5, 7], &[9], &[1, 2, 1, 2, 3, 30], &[4, 4, 4], &[8, 6]];
        let batch: Vec<Vec<f32>> = m.encode(&sessions, &mut Mode::Eval).unwrap().session.to_vec2().unwrap();
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
        use crate::graph::{Edges, PackedGraphs};
        use crate::layers::EdgeTensors;
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
            EdgeTensors {
                src: Tensor::new(e.src.as_slice(), &dev).unwrap(),
                dst: Tensor::new(e.dst.as_slice(), &dev).unwrap(),
                weight: Tensor::from_vec(w, (e.src.len(), 1), &dev).unwrap(),
                n_nodes: n,
            }
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
            cell.step(Some(&inc), Some(&out), h).unwrap().mul(&probe).unwrap().sum_all().unwrap()
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
