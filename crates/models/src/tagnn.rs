//! TAGNN (Yu et al., SIGIR 2020), after the official PyTorch code (CRIPAC-DIG/TAGNN).
//!
//! SR-GNN's gated cell and attention readout (shared in `layers`), with two differences:
//! the attention weights go through a softmax over the session's positions, and every item
//! gets a target-aware term, `score_i = (s_h + Σ_t β_it h_t)·v_i` with
//! `β_i = softmax_t(v_i · W_t h_t)`.
//!
//! The official code pads every sequence of a split to that split's longest one (138 training
//! and 54 test positions on ML-1M) and both softmaxes run over the padded positions: a padded
//! position has the attention logit of the padding node's GNN state and a target logit of 0, and
//! contributes nothing to the sums. With `padding: official` the model adds exactly those terms
//! to the normalisers (training batches use `train_len`, evaluation `eval_len`) without padding
//! anything; `padding: none` uses the session's own positions only.
//!
//! The target term is computed as two `[items, clicks]` products and a fused segment softmax
//! ([`crate::ops::target_attention`]), never as the official `[batch, items, L, d]` tensors.

use crate::init::{Dense, ParamStore};
use crate::layers::{run_gated_gnn, sum_per_session, GatedCell, SoftAttention};
use crate::ops::{target_attention, ClickSegment};
use crate::{Backbone, DataShape, Encoded, Mode, ModelKind};
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How the softmaxes treat padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum TagnnPadding {
    /// As the official code: every session counts `len − its length` padded positions.
    Official { train_len: usize, eval_len: usize },
    /// Only the session's own positions.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagnnConfig {
    pub n_items: usize,
    pub dim: usize,
    /// GNN propagation steps (official default 1).
    pub step: usize,
    /// false: `s_h = W[s_g; h_last]` (official default); true: `s_h = s_g`.
    pub nonhybrid: bool,
    pub padding: TagnnPadding,
}

impl TagnnConfig {
    /// The official defaults, padded like the official code for data of this shape.
    pub fn new(shape: &DataShape) -> Self {
        Self {
            n_items: shape.n_items,
            dim: 100,
            step: 1,
            nonhybrid: false,
            padding: TagnnPadding::Official { train_len: shape.train_max_len, eval_len: shape.test_max_len },
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tagnn {
    cfg: TagnnConfig,
    embedding: Tensor,
    cell: GatedCell,
    attention: SoftAttention,
    transform: Option<Dense>,
    target: Dense,
}

/// What scoring needs from encoding: the click states and where each session's clicks are.
struct ClickStates {
    clicks: Tensor,
    segments: Vec<ClickSegment>,
}

impl Tagnn {
    /// Creates the parameters in `ps` (names follow the official code; the unused
    /// `linear_edge_f` is left out).
    pub fn new(cfg: TagnnConfig, ps: &ParamStore) -> Result<Self> {
        let d = cfg.dim;
        let stdv = 1.0 / (d as f64).sqrt();
        let embedding = ps.uniform(&[cfg.n_items + 1, d], "embedding.weight", stdv)?;
        let cell = GatedCell::new(&ps.pp("gnn"), d, stdv)?;
        let attention = SoftAttention::new(ps, d, stdv)?;
        let transform = if cfg.nonhybrid {
            None
        } else {
            Some(Dense::new(ps, 2 * d, d, true, "linear_transform", stdv)?)
        };
        let target = Dense::new(ps, d, d, false, "linear_t", stdv)?;
        Ok(Self { cfg, embedding, cell, attention, transform, target })
    }

    /// Padded positions per session under the configured padding.
    fn pads(&self, len: usize, mode: &Mode) -> usize {
        match self.cfg.padding {
            TagnnPadding::Official { train_len, eval_len } => {
                let padded = if mode.is_train() { train_len } else { eval_len };
                padded.saturating_sub(len)
            }
            TagnnPadding::None => 0,
        }
    }

    /// The padding node's state after the GNN: item 0 without neighbours `[1, d]`.
    fn pad_state(&self) -> Result<Tensor> {
        let mut h = self.embedding.narrow(0, 0, 1)?;
        for _ in 0..self.cfg.step {
            h = self.cell.step(None, None, &h)?;
        }
        Ok(h)
    }

    fn items(&self) -> Result<Tensor> {
        self.embedding.narrow(0, 1, self.cfg.n_items)
    }
}

impl Backbone for Tagnn {
    fn kind(&self) -> ModelKind {
        ModelKind::Tagnn
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
        let b = sessions.len();
        let g = run_gated_gnn(&self.embedding, &self.cell, self.cfg.step, sessions)?;
        let mut segments = Vec::with_capacity(b);
        let mut start = 0;
        for s in sessions {
            segments.push(ClickSegment { start, len: s.len(), pads: self.pads(s.len(), mode) });
            start += s.len();
        }
        // α = softmax over the session's positions, padded ones included; s_g = Σ_t α_t h_t.
        let logits = self.attention.logits(&g)?.squeeze(1)?;
        let pad_logits = self.attention.pad_logits(&g, &self.pad_state()?)?.squeeze(1)?;
        let alpha = padded_segment_softmax(&logits, &pad_logits, &segments)?;
        let global = sum_per_session(&g.clicks, &alpha.unsqueeze(1)?, &g.click_sessions, b)?;
        let session = match &self.transform {
            Some(t) => t.forward(&Tensor::cat(&[&global, &g.last], 1)?)?,
            None => global.clone(),
        };
        let context = ClickStates { clicks: g.clicks, segments };
        Ok(Encoded { session, attention: Some(global), context: Some(Arc::new(context)) })
    }

    fn scores(&self, enc: &Encoded, mode: &mut Mode) -> Result<Tensor> {
        let states = enc
            .context
            .as_ref()
            .and_then(|c| c.downcast_ref::<ClickStates>())
            .ok_or_else(|| candle_core::Error::Msg("TAGNN scores need TAGNN's encoding".into()))?;
        let items = self.items()?;
        let base = enc.session.matmul(&items.t()?)?;
        // β_it = softmax_t(v_i · W_t h_t); the target term Σ_t β_it (h_t · v_i).
        let logits = items.matmul(&self.target.forward(&states.clicks)?.t()?)?;
        let values = items.matmul(&states.clicks.t()?)?;
        let target = target_attention(&logits, &values, &states.segments, mode.is_train())?;
        base + target.t()?
    }
}

/// Softmax of each session's click logits together with its `pads` copies of `pad_logits[b]`;
/// returns the weights of the clicks only `[clicks]`.
fn padded_segment_softmax(logits: &Tensor, pad_logits: &Tensor, segments: &[ClickSegment]) -> Result<Tensor> {
    let l: Vec<f32> = logits.to_vec1()?;
    let p: Vec<f32> = pad_logits.to_vec1()?;
    let mut shift = Vec::with_capacity(l.len());
    let mut session_of = Vec::with_capacity(l.len());
    let mut pad_shift = Vec::with_capacity(segments.len());
    let mut pad_count = Vec::with_capacity(segments.len());
    for (b, s) in segments.iter().enumerate() {
        let mut max = l[s.start..s.start + s.len].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if s.pads > 0 {
            max = max.max(p[b]);
        }
        shift.extend(std::iter::repeat_n(max, s.len));
        session_of.extend(std::iter::repeat_n(b as u32, s.len));
        pad_shift.push(max);
        pad_count.push(s.pads as f32);
    }
    let dev = logits.device();
    let n = l.len();
    let session_of = Tensor::from_vec(session_of, n, dev)?;
    let e = (logits - Tensor::from_vec(shift, n, dev)?)?.exp()?;
    let pad_e = (pad_logits - Tensor::from_vec(pad_shift, segments.len(), dev)?)?.exp()?;
    let pad_mass = (pad_e * Tensor::from_vec(pad_count, segments.len(), dev)?)?;
    let sums = pad_mass.index_add(&session_of, &e, 0)?;
    e / sums.index_select(&session_of, 0)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    fn model(padding: TagnnPadding) -> Tagnn {
        let ps = ParamStore::new(4, &Device::Cpu);
        let cfg = TagnnConfig { n_items: 20, dim: 6, step: 1, nonhybrid: false, padding };
        Tagnn::new(cfg, &ps).unwrap()
    }

    /// The official `compute_scores` for a batch padded to `len` positions: dense `[B, L, d]`
    /// states (padded positions hold the padding node's state), softmaxes over all L positions,
    /// target attention through the `[B, N, L]` and `[B, N, d]` tensors.
    fn official_scores(m: &Tagnn, sessions: &[&[u32]], len: usize) -> Vec<Vec<f32>> {
        let dev = Device::Cpu;
        let g = run_gated_gnn(&m.embedding, &m.cell, 1, sessions).unwrap();
        let pad = m.pad_state().unwrap();
        let mut rows = Vec::new();
        let mut start = 0;
        for (b, s) in sessions.iter().enumerate() {
            let clicks = g.clicks.narrow(0, start, s.len()).unwrap();
            start += s.len();
            let pads = len - s.len();
            let hidden = if pads == 0 {
                clicks
            } else {
                Tensor::cat(&[clicks, pad.repeat((pads, 1)).unwrap()], 0).unwrap()
            }; // [L, d]
            let mask: Vec<f32> = (0..len).map(|t| if t < s.len() { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::from_vec(mask, (len, 1), &dev).unwrap();
            let ht = g.last.narrow(0, b, 1).unwrap();
            let q1 = m.attention.last.forward(&ht).unwrap();
            let q2 = m.attention.item.forward(&hidden).unwrap();
            let alpha = m
                .attention
                .score
                .forward(&candle_nn::ops::sigmoid(&q2.broadcast_add(&q1).unwrap()).unwrap())
                .unwrap();
            let alpha = candle_nn::ops::softmax(&alpha, 0).unwrap();
            let a =
                hidden.broadcast_mul(&alpha).unwrap().broadcast_mul(&mask).unwrap().sum_keepdim(0).unwrap();
            let a = m.transform.as_ref().unwrap().forward(&Tensor::cat(&[&a, &ht], 1).unwrap()).unwrap();
            let hm = hidden.broadcast_mul(&mask).unwrap();
            let qt = m.target.forward(&hm).unwrap();
            let items = m.items().unwrap();
            let beta = candle_nn::ops::softmax(&items.matmul(&qt.t().unwrap()).unwrap(), D::Minus1).unwrap();
            let target = beta.matmul(&hm).unwrap(); // [N, d]
            let full = target.broadcast_add(&a).unwrap();
            let scores = (full * &items).unwrap().sum(1).unwrap();
            assert_eq!(scores.dims(), &[m.cfg.n_items]);
            rows.push(scores.to_vec1().unwrap());
        }
        rows
    }

    #[test]
    fn scores_equal_the_official_padded_computation() {
        let sessions: Vec<&[u32]> = vec![&[3, 5, 3, 9], &[7], &[1, 2, 4, 8, 16, 20]];
        for (padding, train) in [
            (TagnnPadding::Official { train_len: 9, eval_len: 6 }, true),
            (TagnnPadding::Official { train_len: 9, eval_len: 6 }, false),
            (TagnnPadding::None, false),
        ] {
            let m = model(padding);
            let mut rng = rand::SeedableRng::seed_from_u64(1);
            let mut mode = if train { Mode::Train(&mut rng) } else { Mode::Eval };
            let enc = m.encode(&sessions, &mut mode).unwrap();
            let got: Vec<Vec<f32>> = m.scores(&enc, &mut mode).unwrap().to_vec2().unwrap();
            let len = match padding {
                TagnnPadding::Official { train_len, eval_len } => {
                    if train {
                        train_len
                    } else {
                        eval_len
                    }
                }
                TagnnPadding::None => 0,
            };
            for (b, s) in sessions.iter().enumerate() {
                let want = official_scores(&m, &[s], len.max(s.len()));
                for (x, y) in got[b].iter().zip(&want[0]) {
                    assert!((x - y).abs() < 1e-5, "{padding:?} train {train} session {s:?}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn padding_changes_the_scores() {
        let sessions: Vec<&[u32]> = vec![&[3, 5, 3, 9]];
        let a = model(TagnnPadding::Official { train_len: 50, eval_len: 50 });
        let b = model(TagnnPadding::None);
        let sa = a.scores(&a.encode(&sessions, &mut Mode::Eval).unwrap(), &mut Mode::Eval).unwrap();
        let sb = b.scores(&b.encode(&sessions, &mut Mode::Eval).unwrap(), &mut Mode::Eval).unwrap();
        let diff = (sa - sb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff > 1e-4, "padding of 46 positions should matter, differs by {diff}");
    }
}
