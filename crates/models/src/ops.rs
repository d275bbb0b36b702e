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
}
