//! Blocks shared by several backbones: SR-GNN's gated graph cell (also TAGNN's and
//! Atten-Mixer's encoder), its soft-attention scores, and layer normalisation.

use crate::graph::{Edges, PackedGraphs};
use crate::init::{Dense, ParamStore};
use candle_core::{Device, Result, Tensor, D};

/// The gated graph cell of SR-GNN (`GNN.GNNCell` in the official code).
#[derive(Debug, Clone)]
pub(crate) struct GatedCell {
    pub(crate) edge_in: Dense,
    pub(crate) edge_out: Dense,
    pub(crate) b_iah: Tensor,
    pub(crate) b_oah: Tensor,
    pub(crate) input_gates: Dense,
    pub(crate) hidden_gates: Dense,
}

impl GatedCell {
    pub(crate) fn new(ps: &ParamStore, d: usize, stdv: f64) -> Result<Self> {
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
    pub(crate) fn step(
        &self,
        incoming: Option<&EdgeTensors>,
        outgoing: Option<&EdgeTensors>,
        hidden: &Tensor,
    ) -> Result<Tensor> {
        let d = hidden.dim(D::Minus1)?;
        let msg_in = average(incoming, &self.edge_in.forward(hidden)?)?.broadcast_add(&self.b_iah)?;
        let msg_out = average(outgoing, &self.edge_out.forward(hidden)?)?.broadcast_add(&self.b_oah)?;
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
pub(crate) struct EdgeTensors {
    pub(crate) src: Tensor,
    pub(crate) dst: Tensor,
    pub(crate) weight: Tensor,
    pub(crate) n_nodes: usize,
}

impl EdgeTensors {
    /// None for a batch without edges (only one-click sessions).
    pub(crate) fn new(e: Edges, n_nodes: usize, dev: &Device) -> Result<Option<Self>> {
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

/// Per node, the weighted sum of its neighbours' rows of `x` (zero without neighbours).
fn average(edges: Option<&EdgeTensors>, x: &Tensor) -> Result<Tensor> {
    match edges {
        None => x.zeros_like(),
        Some(e) => {
            let msgs = x.index_select(&e.src, 0)?.broadcast_mul(&e.weight)?;
            Tensor::zeros((e.n_nodes, x.dim(1)?), x.dtype(), x.device())?.index_add(&e.dst, &msgs, 0)
        }
    }
}

/// A batch after the gated GNN: states of every node and of every click, packed.
pub(crate) struct GnnOutput {
    /// State of every click, session after session `[clicks, d]`.
    pub(crate) clicks: Tensor,
    /// State of each session's last click `[batch, d]`.
    pub(crate) last: Tensor,
    /// Session index of every click `[clicks]`.
    pub(crate) click_sessions: Tensor,
}

/// Embeds the session graphs' nodes and runs `steps` propagation steps of the cell.
pub(crate) fn run_gated_gnn(
    embedding: &Tensor,
    cell: &GatedCell,
    steps: usize,
    sessions: &[&[u32]],
) -> Result<GnnOutput> {
    let dev = embedding.device();
    let g = PackedGraphs::build(sessions);
    let (b, n, p) = (g.batch, g.n_nodes(), g.position_nodes.len());
    let incoming = EdgeTensors::new(g.incoming, n, dev)?;
    let outgoing = EdgeTensors::new(g.outgoing, n, dev)?;
    let mut hidden = embedding.index_select(&Tensor::from_vec(g.node_items, n, dev)?, 0)?;
    for _ in 0..steps {
        hidden = cell.step(incoming.as_ref(), outgoing.as_ref(), &hidden)?;
    }
    let clicks = hidden.index_select(&Tensor::from_vec(g.position_nodes, p, dev)?, 0)?;
    let last = hidden.index_select(&Tensor::from_vec(g.last_nodes, b, dev)?, 0)?;
    let click_sessions = Tensor::from_vec(g.position_sessions, p, dev)?;
    Ok(GnnOutput { clicks, last, click_sessions })
}

/// SR-GNN's attention logits `α_i = q·σ(W₁ h_last + W₂ h_i + c)` (`linear_one/two/three`).
#[derive(Debug, Clone)]
pub(crate) struct SoftAttention {
    pub(crate) last: Dense,
    pub(crate) item: Dense,
    pub(crate) score: Dense,
}

impl SoftAttention {
    pub(crate) fn new(ps: &ParamStore, d: usize, stdv: f64) -> Result<Self> {
        Ok(Self {
            last: Dense::new(ps, d, d, true, "linear_one", stdv)?,
            item: Dense::new(ps, d, d, true, "linear_two", stdv)?,
            score: Dense::new(ps, d, 1, false, "linear_three", stdv)?,
        })
    }

    /// Logits `[clicks, 1]` of every click against its session's last click.
    pub(crate) fn logits(&self, g: &GnnOutput) -> Result<Tensor> {
        let q1 = self.last.forward(&g.last)?.index_select(&g.click_sessions, 0)?;
        let q2 = self.item.forward(&g.clicks)?;
        self.score.forward(&candle_nn::ops::sigmoid(&(q1 + q2)?)?)
    }

    /// The logit of a padded position per session `[batch, 1]`, whose state is `pad [1, d]`.
    pub(crate) fn pad_logits(&self, g: &GnnOutput, pad: &Tensor) -> Result<Tensor> {
        let q1 = self.last.forward(&g.last)?;
        let q2 = self.item.forward(pad)?;
        self.score.forward(&candle_nn::ops::sigmoid(&q1.broadcast_add(&q2)?)?)
    }
}

/// Per session, `Σ_i w_i x_i` over its clicks: `weights [clicks, 1]`, `x [clicks, d]`.
pub(crate) fn sum_per_session(
    x: &Tensor,
    weights: &Tensor,
    sessions: &Tensor,
    batch: usize,
) -> Result<Tensor> {
    let weighted = x.broadcast_mul(weights)?;
    Tensor::zeros((batch, x.dim(1)?), x.dtype(), x.device())?.index_add(sessions, &weighted, 0)
}

/// `nn.LayerNorm` over the last dimension (biased variance), written with differentiable
/// primitives because candle's fused layer norm has no backward pass.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    pub(crate) gain: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) eps: f64,
}

impl LayerNorm {
    /// Gain and bias uniform(±bound): the models that use it initialise them like every other
    /// parameter (SHARE's `reset_parameters` does, so its gains start near ±0.1, not at 1).
    pub(crate) fn new(ps: &ParamStore, d: usize, name: &str, bound: f64, eps: f64) -> Result<Self> {
        let ps = ps.pp(name);
        Ok(Self { gain: ps.uniform(&[d], "weight", bound)?, bias: ps.uniform(&[d], "bias", bound)?, eps })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.gain)?
            .broadcast_add(&self.bias)
    }
}
