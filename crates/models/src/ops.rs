//! Fused CPU kernels for the hot spots of a training step, each with its own backward pass and
//! a test against the stock candle composition.
//!
//! Softmax cross-entropy over all item scores is the widest tensor of a step (`[batch, n_items]`):
//! stock candle runs ~7 ops forward and ~10 backward over it, each allocating a fresh buffer.
//! The fused op makes one pass forward and one backward. On other devices the stock ops run.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

/// Mean softmax cross-entropy of `logits [batch, classes]` (f32) against `targets [batch]` (u32).
pub fn softmax_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == candle_core::DType::F32 {
        logits.contiguous()?.apply_op2(&targets.contiguous()?, SoftmaxCrossEntropy)
    } else {
        candle_nn::loss::cross_entropy(logits, targets)
    }
}

/// `x [rows, cols] + bias [cols]`. Stock candle's backward of the broadcast sums the gradient
/// over rows with a strided reduction, the slowest op of an SR-GNN step; here it is one
/// contiguous pass. On other devices the stock broadcast runs.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() == 2 {
        x.contiguous()?.apply_op2(&bias.contiguous()?, AddBias)
    } else {
        x.broadcast_add(bias)
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, cols) = l1.shape().dims2()?;
        let x = contiguous::<f32>(s1, l1, "add_bias input")?;
        let b = contiguous::<f32>(s2, l2, "add_bias bias")?;
        if b.len() != cols {
            candle_core::bail!("add_bias: {cols} columns but a bias of {}", b.len());
        }
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(cols) {
            for (o, &bi) in row.iter_mut().zip(b) {
                *o += bi;
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.contiguous()?;
        let cols = bias.elem_count();
        let values: Vec<f32> = g.flatten_all()?.to_vec1()?;
        let mut sums = vec![0f32; cols];
        for row in values.chunks_exact(cols) {
            for (s, &v) in sums.iter_mut().zip(row) {
                *s += v;
            }
        }
        Ok((Some(g), Some(Tensor::from_vec(sums, bias.shape(), bias.device())?)))
    }
}

fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

fn rows_and_targets<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> Result<(&'a [f32], &'a [u32], usize)> {
    let (batch, classes) = l1.shape().dims2()?;
    let logits = contiguous::<f32>(s1, l1, "logits")?;
    let targets = contiguous::<u32>(s2, l2, "targets")?;
    if targets.len() != batch {
        candle_core::bail!("softmax_cross_entropy: {batch} rows but {} targets", targets.len());
    }
    if let Some(t) = targets.iter().find(|&&t| t as usize >= classes) {
        candle_core::bail!("softmax_cross_entropy: target {t} outside 0..{classes}");
    }
    Ok((logits, targets, classes))
}

/// log Σ exp over one row, computed stably.
fn log_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    (max, max + sum.ln())
}

struct SoftmaxCrossEntropy;

impl CustomOp2 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, classes) = rows_and_targets(s1, l1, s2, l2)?;
        let mut total = 0f64;
        for (row, &t) in logits.chunks_exact(classes).zip(targets) {
            let (_, lse) = log_sum_exp(row);
            total += (lse - row[t as usize]) as f64;
        }
        let mean = (total / targets.len().max(1) as f64) as f32;
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let g = logits.apply_op2_no_bwd(targets, &SoftmaxCrossEntropyGrad { scale })?;
        Ok((Some(g), None))
    }
}

/// d(mean CE)/d logits = (softmax − onehot(target)) / batch, times the incoming scalar gradient.
struct SoftmaxCrossEntropyGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (logits, targets, classes) = rows_and_targets(s1, l1, s2, l2)?;
        let k = self.scale / targets.len().max(1) as f32;
        let mut out = vec![0f32; logits.len()];
        for ((row, o), &t) in logits.chunks_exact(classes).zip(out.chunks_exact_mut(classes)).zip(targets) {
            let (_, lse) = log_sum_exp(row);
            for (oi, &x) in o.iter_mut().zip(row) {
                *oi = (x - lse).exp() * k;
            }
            o[t as usize] -= k;
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Inverted dropout with a mask from a seeded stream (candle cannot seed its CPU generator), so
/// runs stay reproducible and resume exactly. `p = 0` returns `x` and draws nothing.
pub fn dropout(x: &Tensor, p: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    use rand::Rng;
    if p <= 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - p;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.gen::<f64>() < keep { (1.0 / keep) as f32 } else { 0.0 })
        .collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
}

/// Row sums `[rows, d] → [rows]` as a product with a ones vector (the reduction's backward is
/// then a product too, much faster on CPU than candle's broadcast reduction).
pub fn row_sums(x: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((x.dim(1)?, 1), x.dtype(), x.device())?;
    x.matmul(&ones)?.squeeze(1)
}

/// Softmax of `logits [e]` within each segment (`segment[i]` names the segment of entry i, one
/// of `0..n_segments`). The per-segment maximum is taken on the host and held constant, which
/// leaves the softmax and its gradient unchanged.
pub fn segment_softmax(logits: &Tensor, segment: &Tensor, n_segments: usize) -> Result<Tensor> {
    let values: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
    let seg: Vec<u32> = segment.to_vec1()?;
    let mut max = vec![f32::NEG_INFINITY; n_segments];
    for (&v, &s) in values.iter().zip(&seg) {
        max[s as usize] = max[s as usize].max(v);
    }
    let shift: Vec<f32> = seg.iter().map(|&s| max[s as usize]).collect();
    let shift = Tensor::from_vec(shift, values.len(), logits.device())?.to_dtype(logits.dtype())?;
    let e = (logits - shift)?.exp()?;
    let sums = Tensor::zeros(n_segments, e.dtype(), e.device())?.index_add(segment, &e, 0)?;
    e / sums.index_select(segment, 0)?
}

/// One session's clicks inside a packed batch: columns `start..start + len`, plus `pads`
/// padded positions whose logit is 0 and whose value is 0 (how the official TAGNN pads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickSegment {
    pub start: usize,
    pub len: usize,
    pub pads: usize,
}

/// TAGNN's target attention, reduced to scalars: for item row i and session b,
/// `out[i, b] = Σ_t β_it · values[i, t]` with `β_i = softmax_t(logits[i, t])` over the session's
/// clicks t and its padded positions (logit 0, value 0). `logits` and `values` are `[items, clicks]`.
/// This never builds the official `[batch, items, L, d]` tensors. With `keep_weights` (training)
/// the forward pass keeps the weights β (one float per input element) so that the backward pass
/// needs no exponentials; without it a backward pass recomputes them.
pub fn target_attention(
    logits: &Tensor,
    values: &Tensor,
    segments: &[ClickSegment],
    keep_weights: bool,
) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == candle_core::DType::F32 {
        let op = TargetAttention { segments: segments.to_vec(), keep_weights, kept: Default::default() };
        logits.contiguous()?.apply_op2(&values.contiguous()?, op)
    } else {
        target_attention_stock(logits, values, segments)
    }
}

/// The same with stock candle ops, one session at a time (for devices without the fused op).
pub fn target_attention_stock(logits: &Tensor, values: &Tensor, segments: &[ClickSegment]) -> Result<Tensor> {
    let rows = logits.dim(0)?;
    let mut columns = Vec::with_capacity(segments.len());
    for s in segments {
        let mut l = logits.narrow(1, s.start, s.len)?;
        let mut v = values.narrow(1, s.start, s.len)?;
        if s.pads > 0 {
            let zeros = Tensor::zeros((rows, s.pads), logits.dtype(), logits.device())?;
            l = Tensor::cat(&[&l, &zeros], 1)?;
            v = Tensor::cat(&[&v, &zeros], 1)?;
        }
        let beta = candle_nn::ops::softmax(&l, 1)?;
        columns.push((beta * v)?.sum_keepdim(1)?);
    }
    Tensor::cat(&columns, 1)
}

struct TargetAttention {
    segments: Vec<ClickSegment>,
    keep_weights: bool,
    /// β of the last forward pass `[rows, cols]`, taken by the first backward pass.
    kept: std::sync::Mutex<Option<Vec<f32>>>,
}

impl TargetAttention {
    /// The shift of one row's softmax over a segment: its largest logit, 0 included when padded.
    fn shift(l: &[f32], s: &ClickSegment) -> f32 {
        let init = if s.pads > 0 { 0f32 } else { f32::NEG_INFINITY };
        l[s.start..s.start + s.len].iter().copied().fold(init, f32::max)
    }

    /// Writes `exp(l_t − max)` of the segment's clicks into `e`; returns the normaliser (the
    /// padded positions' mass included) and the output `Σ_t β_t v_t`.
    fn weights(l: &[f32], v: &[f32], s: &ClickSegment, e: &mut Vec<f32>) -> (f32, f32) {
        let max = Self::shift(l, s);
        e.clear();
        e.extend(l[s.start..s.start + s.len].iter().map(|&x| (x - max).exp()));
        let den = e.iter().fold(s.pads as f32 * (-max).exp(), |acc, &x| acc + x);
        let num: f32 = e.iter().zip(&v[s.start..s.start + s.len]).map(|(a, b)| a * b).sum();
        (den, num / den)
    }
}

impl CustomOp2 for TargetAttention {
    fn name(&self) -> &'static str {
        "target-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, cols) = l1.shape().dims2()?;
        if l2.shape().dims2()? != (rows, cols) {
            candle_core::bail!("target_attention: logits {:?} but values {:?}", l1.shape(), l2.shape());
        }
        let logits = contiguous::<f32>(s1, l1, "target_attention logits")?;
        let values = contiguous::<f32>(s2, l2, "target_attention values")?;
        let b = self.segments.len();
        let mut out = vec![0f32; rows * b];
        let mut beta = if self.keep_weights { vec![0f32; rows * cols] } else { Vec::new() };
        let mut e = Vec::new();
        for i in 0..rows {
            let (l, v) = (&logits[i * cols..(i + 1) * cols], &values[i * cols..(i + 1) * cols]);
            for (k, s) in self.segments.iter().enumerate() {
                let (den, o) = Self::weights(l, v, s, &mut e);
                out[i * b + k] = o;
                if self.keep_weights {
                    let row = &mut beta[i * cols + s.start..i * cols + s.start + s.len];
                    row.iter_mut().zip(&e).for_each(|(w, &ej)| *w = ej / den);
                }
            }
        }
        if self.keep_weights {
            *self
                .kept
                .lock()
                .map_err(|_| candle_core::Error::Msg("target attention: poisoned lock".into()))? = Some(beta);
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, b))))
    }

    /// d out/d v_t = β_t and d out/d l_t = β_t (v_t − out) for the session's clicks t: from the
    /// kept β ([`KeptWeightsGrad`]), or with β recomputed ([`TargetAttentionGrad`]) when none
    /// was kept (evaluation mode, or a second backward pass over the same graph).
    fn bwd(
        &self,
        logits: &Tensor,
        values: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let kept = self.kept.lock().ok().and_then(|mut k| k.take());
        let both = match kept {
            Some(beta) => {
                let op = KeptWeightsGrad { segments: self.segments.clone(), beta };
                values.contiguous()?.apply_op3_no_bwd(&res.contiguous()?, &grad.contiguous()?, &op)?
            }
            None => {
                let op = TargetAttentionGrad { segments: self.segments.clone() };
                logits.contiguous()?.apply_op3_no_bwd(&values.contiguous()?, &grad.contiguous()?, &op)?
            }
        };
        Ok((Some(both.get(0)?), Some(both.get(1)?)))
    }
}

/// The backward of [`TargetAttention`]: `[2, rows, cols]`, the logits' gradient then the values'.
struct TargetAttentionGrad {
    segments: Vec<ClickSegment>,
}

impl candle_core::CustomOp3 for TargetAttentionGrad {
    fn name(&self) -> &'static str {
        "target-attention-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, cols) = l1.shape().dims2()?;
        let l = contiguous::<f32>(s1, l1, "target_attention logits")?;
        let v = contiguous::<f32>(s2, l2, "target_attention values")?;
        let g = contiguous::<f32>(s3, l3, "target_attention gradient")?;
        let b = self.segments.len();
        // Columns outside every segment (none in TAGNN) keep a zero gradient.
        let mut out = vec![0f32; 2 * rows * cols];
        let (gl, gv) = out.split_at_mut(rows * cols);
        let mut e = Vec::new();
        for i in 0..rows {
            let row = i * cols..(i + 1) * cols;
            let (li, vi) = (&l[row.clone()], &v[row.clone()]);
            let (gli, gvi) = (&mut gl[row.clone()], &mut gv[row]);
            for (k, s) in self.segments.iter().enumerate() {
                let (den, out) = TargetAttention::weights(li, vi, s, &mut e);
                let gk = g[i * b + k];
                for (j, &ej) in e.iter().enumerate() {
                    let t = s.start + j;
                    gvi[t] = gk * (ej / den);
                    gli[t] = gvi[t] * (vi[t] - out);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((2, rows, cols))))
    }
}

/// The backward of [`TargetAttention`] from its kept β: inputs `values`, the forward output and
/// its gradient; `[2, rows, cols]` as [`TargetAttentionGrad`].
struct KeptWeightsGrad {
    segments: Vec<ClickSegment>,
    beta: Vec<f32>,
}

impl candle_core::CustomOp3 for KeptWeightsGrad {
    fn name(&self) -> &'static str {
        "target-attention-kept-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, cols) = l1.shape().dims2()?;
        let v = contiguous::<f32>(s1, l1, "target_attention values")?;
        let out = contiguous::<f32>(s2, l2, "target_attention output")?;
        let g = contiguous::<f32>(s3, l3, "target_attention gradient")?;
        if self.beta.len() != rows * cols {
            candle_core::bail!("target_attention: kept {} weights for [{rows}, {cols}]", self.beta.len());
        }
        let b = self.segments.len();
        let mut grads = vec![0f32; 2 * rows * cols];
        let (gl, gv) = grads.split_at_mut(rows * cols);
        for i in 0..rows {
            for (k, s) in self.segments.iter().enumerate() {
                let (gk, ok) = (g[i * b + k], out[i * b + k]);
                for t in i * cols + s.start..i * cols + s.start + s.len {
                    gv[t] = gk * self.beta[t];
                    gl[t] = gv[t] * (v[t] - ok);
                }
            }
        }
        Ok((CpuStorage::F32(grads), Shape::from((2, rows, cols))))
    }
}

/// LeakyReLU in one pass forward and one backward (candle_nn's composition runs five ops
/// forward and more backward; GCE-GNN applies it to `[nodes·12, d]`). Stock ops elsewhere.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(LeakyRelu { slope: slope as f32 })
    } else {
        candle_nn::ops::leaky_relu(x, slope)
    }
}

struct LeakyRelu {
    slope: f32,
}

impl candle_core::CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s, l, "leaky_relu input")?;
        let out = x.iter().map(|&v| if v > 0.0 { v } else { v * self.slope }).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &LeakyReluGrad { slope: self.slope })?))
    }
}

struct LeakyReluGrad {
    slope: f32,
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "leaky-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = contiguous::<f32>(s1, l1, "leaky_relu input")?;
        let g = contiguous::<f32>(s2, l2, "leaky_relu gradient")?;
        let out = x.iter().zip(g).map(|(&v, &gi)| if v > 0.0 { gi } else { gi * self.slope }).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn fused_cross_entropy_matches_stock_value_and_gradient() {
        let dev = Device::Cpu;
        let logits = Var::from_tensor(&(Tensor::randn(0f32, 3.0, (7, 50), &dev).unwrap())).unwrap();
        let targets = Tensor::new(&[0u32, 49, 3, 3, 17, 8, 22], &dev).unwrap();
        let fused = softmax_cross_entropy(logits.as_tensor(), &targets).unwrap();
        let stock = candle_nn::loss::cross_entropy(logits.as_tensor(), &targets).unwrap();
        let (a, b) = (fused.to_scalar::<f32>().unwrap(), stock.to_scalar::<f32>().unwrap());
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        // Scale the loss so the incoming gradient is not 1.
        let ga = (fused * 2.5).unwrap().backward().unwrap();
        let gb = (stock * 2.5).unwrap().backward().unwrap();
        let diff = (ga.get(&logits).unwrap() - gb.get(&logits).unwrap()).unwrap();
        let max = diff.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max < 1e-5, "gradient differs by {max}");
    }

    #[test]
    fn fused_bias_add_matches_stock_value_and_gradients() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (9, 5), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, 5, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (9, 5), &dev).unwrap();
        let fused = add_bias(x.as_tensor(), b.as_tensor()).unwrap();
        let stock = x.as_tensor().broadcast_add(b.as_tensor()).unwrap();
        let max_abs = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max_abs((&fused - &stock).unwrap()) < 1e-6);
        let ga = fused.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = stock.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &b] {
            assert!(max_abs((ga.get(v).unwrap() - gb.get(v).unwrap()).unwrap()) < 1e-5);
        }
    }

    #[test]
    fn out_of_range_target_is_an_error() {
        let logits = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 3], &Device::Cpu).unwrap();
        assert!(softmax_cross_entropy(&logits, &targets).is_err());
    }

    #[test]
    fn target_attention_matches_padded_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let l = Var::from_tensor(&Tensor::randn(0f32, 2.0, (5, 7), &dev).unwrap()).unwrap();
        let v = Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 7), &dev).unwrap()).unwrap();
        let segs = [
            ClickSegment { start: 0, len: 3, pads: 4 },
            ClickSegment { start: 3, len: 1, pads: 0 },
            ClickSegment { start: 4, len: 3, pads: 1 },
        ];
        let fused = target_attention(l.as_tensor(), v.as_tensor(), &segs, true).unwrap();
        let stock = target_attention_stock(l.as_tensor(), v.as_tensor(), &segs).unwrap();
        assert_eq!(fused.dims(), &[5, 3]);
        let max_abs = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max_abs((&fused - &stock).unwrap()) < 1e-6);
        let probe = Tensor::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        let loss = fused.mul(&probe).unwrap().sum_all().unwrap();
        let gb = stock.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        // The first backward pass uses the kept weights, the second recomputes them.
        for pass in ["kept weights", "recomputed weights"] {
            let ga = loss.backward().unwrap();
            for x in [&l, &v] {
                let diff = max_abs((ga.get(x).unwrap() - gb.get(x).unwrap()).unwrap());
                assert!(diff < 1e-5, "{pass}: gradient differs by {diff}");
            }
        }
        // Without kept weights: the same values, and the backward pass recomputes the weights.
        let eval = target_attention(l.as_tensor(), v.as_tensor(), &segs, false).unwrap();
        assert_eq!(max_abs((&eval - &fused).unwrap()), 0.0);
        let ge = eval.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_abs((ge.get(&l).unwrap() - gb.get(&l).unwrap()).unwrap()) < 1e-5);
    }

    #[test]
    fn segment_softmax_sums_to_one_per_segment() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[1f32, 2.0, 3.0, 100.0, -100.0], &dev).unwrap();
        let seg = Tensor::new(&[0u32, 0, 1, 1, 2], &dev).unwrap();
        let p: Vec<f32> = segment_softmax(&logits, &seg, 3).unwrap().to_vec1().unwrap();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6 && (p[1] / p[0] - 1f32.exp()).abs() < 1e-4);
        assert!((p[3] - 1.0).abs() < 1e-6 && p[2] < 1e-30);
        assert_eq!(p[4], 1.0);
    }

    #[test]
    fn dropout_keeps_expectation_and_is_seeded() {
        use rand::SeedableRng;
        use rand_chacha::ChaCha8Rng;
        let x = Tensor::ones((200, 50), candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b = dropout(&x, 0.25, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let va: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(va, b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let zeros = va.iter().filter(|&&v| v == 0.0).count() as f64 / va.len() as f64;
        assert!((zeros - 0.25).abs() < 0.02, "dropped share {zeros}");
        let mean = va.iter().map(|&v| v as f64).sum::<f64>() / va.len() as f64;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        assert!(va.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let none = dropout(&x, 0.0, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(none.sum_all().unwrap().to_scalar::<f32>().unwrap(), 10_000.0);
    }

    #[test]
    fn fused_leaky_relu_matches_stock_value_and_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (6, 5), &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (6, 5), &dev).unwrap();
        let fused = leaky_relu(x.as_tensor(), 0.2).unwrap();
        let stock = candle_nn::ops::leaky_relu(x.as_tensor(), 0.2).unwrap();
        let max_abs = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(max_abs((&fused - &stock).unwrap()) < 1e-7);
        let ga = fused.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = stock.mul(&probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert!(max_abs((ga.get(&x).unwrap() - gb.get(&x).unwrap()).unwrap()) < 1e-6);
    }
}
