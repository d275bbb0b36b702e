//! A decoder-only transformer read from a GGUF file: the `llama` (SmolLM2, Llama) and `qwen2`
//! (Qwen2.5) layouts, one code path. Weights stay quantized and are multiplied with candle's
//! `QMatMul`; the per-sequence KV cache is preallocated and filled in place.
//!
//! Differences between the two architectures handled here:
//! * RoPE: llama.cpp stores llama q/k weights permuted for the interleaved ("normal") rotary
//!   layout, qwen2 uses the NeoX (half-split) layout.
//! * qwen2 has biases on q/k/v; they are loaded whenever the tensors exist.
//! * The output projection: `output.weight` when present, otherwise tied to `token_embd.weight`
//!   (SmolLM2 and the small Qwen2.5 models have no `output.weight`).

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::io::{Read, Seek};

/// How the matrix weights are held in memory after loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub enum WeightFormat {
    /// F32 when the dequantized weights take at most [`AUTO_F32_MAX_BYTES`] (small models: exact
    /// and the fastest on CPU), otherwise the file's types, with Q4_1/Q5_0/Q5_1 (no SIMD
    /// kernels in candle) requantized to Q8_0.
    #[default]
    Auto,
    /// As stored in the file.
    Native,
    /// Requantized to Q8_0 at load (candle has AVX2 kernels for Q8_0, none for Q4_1).
    Q8_0,
    /// Requantized to Q4_0 (AVX2 kernels, half the memory of Q8_0, lower quality).
    Q4_0,
    /// Dequantized to f32 and multiplied with the f32 GEMM: the file's weights exactly, no
    /// activation quantization; 4 bytes per parameter.
    F32,
}

/// The largest model (dequantized bytes) that [`WeightFormat::Auto`] keeps in f32.
pub const AUTO_F32_MAX_BYTES: u64 = 2 << 30;

impl WeightFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            WeightFormat::Auto => "auto",
            WeightFormat::Native => "native",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::F32 => "f32",
        }
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => WeightFormat::Auto,
            "native" | "asis" | "as-is" | "file" => WeightFormat::Native,
            "q8_0" | "q8" => WeightFormat::Q8_0,
            "q4_0" | "q4" => WeightFormat::Q4_0,
            "f32" => WeightFormat::F32,
            other => bail!("unknown weight format {other:?} (auto, native, q8_0, q4_0, f32)"),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context_length: usize,
    /// Rows of the output projection (may exceed the tokenizer's vocabulary).
    pub n_vocab: usize,
    pub tied_embeddings: bool,
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    ct.metadata.get(key).with_context(|| format!("GGUF metadata has no {key}"))
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = md(ct, key)?;
    let n = v
        .to_u32()
        .map(|x| x as u64)
        .or_else(|_| v.to_u64())
        .or_else(|_| v.to_i32().map(|x| x as u64))
        .or_else(|_| v.to_i64().map(|x| x as u64))
        .with_context(|| format!("{key} is not an integer"))?;
    Ok(n as usize)
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Result<f32> {
    let v = md(ct, key)?;
    v.to_f32().or_else(|_| v.to_f64().map(|x| x as f32)).with_context(|| format!("{key} is not a float"))
}

impl Config {
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch_name = md(ct, "general.architecture")?.to_string()?.clone();
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => bail!("unsupported GGUF architecture {other:?} (llama and qwen2 are supported)"),
        };
        let a = arch_name.as_str();
        let n_head = md_usize(ct, &format!("{a}.attention.head_count"))?;
        let d_model = md_usize(ct, &format!("{a}.embedding_length"))?;
        let head_dim = md_usize(ct, &format!("{a}.attention.key_length")).unwrap_or(d_model / n_head);
        let rope_dim = md_usize(ct, &format!("{a}.rope.dimension_count")).unwrap_or(head_dim);
        if rope_dim != head_dim {
            bail!("partial rotary embeddings (rope dim {rope_dim} != head dim {head_dim}) are not supported");
        }
        if let Ok(v) = md(ct, &format!("{a}.rope.scaling.type")) {
            let t = v.to_string().cloned().unwrap_or_default();
            if !t.is_empty() && t != "none" {
                tracing::warn!("GGUF asks for rope scaling {t:?}; ignored (fine for prompts within the original context)");
            }
        }
        let token_embd = ct.tensor_infos.get("token_embd.weight").context("GGUF has no token_embd.weight")?;
        let n_vocab = match ct.tensor_infos.get("output.weight") {
            Some(info) => info.shape.dims()[0],
            None => token_embd.shape.dims()[0],
        };
        Ok(Config {
            arch,
            n_layer: md_usize(ct, &format!("{a}.block_count"))?,
            d_model,
            n_head,
            n_kv_head: md_usize(ct, &format!("{a}.attention.head_count_kv")).unwrap_or(n_head),
            head_dim,
            ffn: md_usize(ct, &format!("{a}.feed_forward_length"))?,
            rope_base: md_f32(ct, &format!("{a}.rope.freq_base")).unwrap_or(10_000.0),
            rms_eps: md_f32(ct, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f64,
            context_length: md_usize(ct, &format!("{a}.context_length")).unwrap_or(4096),
            n_vocab,
            tied_embeddings: !ct.tensor_infos.contains_key("output.weight"),
        })
    }
}

struct Linear {
    w: QMatMul,
    b: Option<Tensor>,
}

/// Products with at most this many rows run as `(w · xᵀ)ᵀ`: the f32 GEMM packs its right-hand
/// side on every call, which for a few rows (batched decoding) costs more than the product;
/// measured at 1 thread on a 1536×576 weight, 8 rows took 0.21 ms this way against 0.34 ms as
/// `x · wᵀ`, while from ~128 rows on `x · wᵀ` is faster.
const TRANSPOSED_MAX_ROWS: usize = 64;

/// `x · wᵀ`. With at least `dequant_min_rows` rows (a prefill chunk, a large decode batch) a
/// quantized weight is dequantized for this product and multiplied with the f32 GEMM, as
/// llama.cpp hands large batches to BLAS: candle's quantized kernels work row by row and lose
/// to the GEMM once a product has more than a few rows. 0 keeps the quantized kernels always.
fn matmul(w: &QMatMul, x: &Tensor, dequant_min_rows: usize) -> Result<Tensor> {
    let k = x.dim(candle_core::D::Minus1)?;
    let rows = x.elem_count() / k.max(1);
    let dense = match w {
        QMatMul::Tensor(t) => t.clone(),
        QMatMul::QTensor(q) if dequant_min_rows > 0 && rows >= dequant_min_rows => {
            q.dequantize(x.device())?
        }
        _ => return Ok(w.forward(x)?),
    };
    if (2..=TRANSPOSED_MAX_ROWS).contains(&rows) {
        let mut dims = x.dims().to_vec();
        *dims.last_mut().expect("x has a last dimension") = dense.dim(0)?;
        let y = dense.matmul(&x.reshape((rows, k))?.t()?)?.t()?.contiguous()?;
        return Ok(y.reshape(dims)?);
    }
    Ok(QMatMul::Tensor(dense).forward(x)?)
}

impl Linear {
    fn forward(&self, x: &Tensor, dequant_min_rows: usize) -> Result<Tensor> {
        let y = matmul(&self.w, x, dequant_min_rows)?;
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// Resolves [`WeightFormat::Auto`] for a file: F32 for small models; otherwise it stays `Auto`,
/// which [`to_matmul`] reads as the file's types with those lacking SIMD kernels as Q8_0.
pub fn resolve_format(ct: &gguf_file::Content, fmt: WeightFormat) -> WeightFormat {
    if fmt != WeightFormat::Auto {
        return fmt;
    }
    let elems: u64 = ct.tensor_infos.values().map(|i| i.shape.elem_count() as u64).sum();
    if elems * 4 <= AUTO_F32_MAX_BYTES {
        WeightFormat::F32
    } else {
        WeightFormat::Auto
    }
}

/// Converts one weight to the requested in-memory format (`Auto` here means: the file's type,
/// except Q4_1/Q5_0/Q5_1/Q8_1 which become Q8_0).
fn to_matmul(qt: QTensor, fmt: WeightFormat, device: &Device) -> Result<QMatMul> {
    let target = match fmt {
        WeightFormat::Native => return Ok(QMatMul::from_qtensor(qt)?),
        WeightFormat::F32 => return Ok(QMatMul::Tensor(qt.dequantize(device)?)),
        WeightFormat::Q8_0 => GgmlDType::Q8_0,
        WeightFormat::Q4_0 => GgmlDType::Q4_0,
        WeightFormat::Auto => match qt.dtype() {
            GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1 => GgmlDType::Q8_0,
            _ => return Ok(QMatMul::from_qtensor(qt)?),
        },
    };
    let cols = *qt.shape().dims().last().unwrap_or(&0);
    if qt.dtype() == target
        || !cols.is_multiple_of(target.block_size())
        || matches!(qt.dtype(), GgmlDType::F32 | GgmlDType::F16)
    {
        return Ok(QMatMul::from_qtensor(qt)?);
    }
    let t = qt.dequantize(device)?;
    Ok(QMatMul::from_qtensor(QTensor::quantize(&t, target)?)?)
}

pub struct Model {
    pub cfg: Config,
    /// Token embeddings (shared with `output` when tied).
    embed: QMatMul,
    layers: Vec<Layer>,
    out_norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    max_positions: usize,
    /// See [`matmul`].
    dequant_min_rows: usize,
}

/// Keys and values of one sequence, `(1, n_kv_head, capacity, head_dim)` per layer; the first
/// `len` positions are filled.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    cap: usize,
}

impl KvCache {
    /// Positions filled.
    #[cfg(test)]
    pub fn positions(&self) -> usize {
        self.len
    }
}

impl Model {
    /// `fmt` must be resolved ([`resolve_format`]) by the caller.
    pub fn load<R: Read + Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        fmt: WeightFormat,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let cfg = Config::from_gguf(ct)?;
        let mut get = |name: &str| -> Result<QTensor> {
            ct.tensor(reader, name, device).with_context(|| format!("reading tensor {name}"))
        };
        let embed = to_matmul(get("token_embd.weight")?, fmt, device)?;
        let out_norm = get("output_norm.weight")?.dequantize(device)?;
        let output =
            if cfg.tied_embeddings { embed.clone() } else { to_matmul(get("output.weight")?, fmt, device)? };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let linear = |name: &str, get: &mut dyn FnMut(&str) -> Result<QTensor>| -> Result<Linear> {
                let w = to_matmul(get(&format!("{p}.{name}.weight"))?, fmt, device)?;
                let bias_name = format!("{p}.{name}.bias");
                let b = if ct.tensor_infos.contains_key(&bias_name) {
                    Some(get(&bias_name)?.dequantize(device)?)
                } else {
                    None
                };
                Ok(Linear { w, b })
            };
            let wq = linear("attn_q", &mut get)?;
            let wk = linear("attn_k", &mut get)?;
            let wv = linear("attn_v", &mut get)?;
            let wo = linear("attn_output", &mut get)?;
            layers.push(Layer {
                attn_norm: get(&format!("{p}.attn_norm.weight"))?.dequantize(device)?,
                wq,
                wk,
                wv,
                wo,
                ffn_norm: get(&format!("{p}.ffn_norm.weight"))?.dequantize(device)?,
                gate: to_matmul(get(&format!("{p}.ffn_gate.weight"))?, fmt, device)?,
                up: to_matmul(get(&format!("{p}.ffn_up.weight"))?, fmt, device)?,
                down: to_matmul(get(&format!("{p}.ffn_down.weight"))?, fmt, device)?,
            });
        }
        let max_positions = max_positions.min(cfg.context_length).max(16);
        let half = cfg.head_dim / 2;
        let inv: Vec<f32> =
            (0..half).map(|i| 1.0 / cfg.rope_base.powf((2 * i) as f32 / cfg.head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(max_positions * half);
        let mut sin = Vec::with_capacity(max_positions * half);
        for pos in 0..max_positions {
            for f in &inv {
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (max_positions, half), device)?;
        let sin = Tensor::from_vec(sin, (max_positions, half), device)?;
        Ok(Model {
            cfg,
            embed,
            layers,
            out_norm,
            output,
            cos,
            sin,
            device: device.clone(),
            max_positions,
            dequant_min_rows: 0,
        })
    }

    /// Products with at least this many rows dequantize quantized weights for the f32 GEMM
    /// (0: never); see [`matmul`].
    pub fn set_dequant_min_rows(&mut self, rows: usize) {
        self.dequant_min_rows = rows;
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        let cap = capacity.clamp(1, self.max_positions);
        let shape = (1, self.cfg.n_kv_head, cap, self.cfg.head_dim);
        let mut k = Vec::with_capacity(self.cfg.n_layer);
        let mut v = Vec::with_capacity(self.cfg.n_layer);
        for _ in 0..self.cfg.n_layer {
            k.push(Tensor::zeros(shape, DType::F32, &self.device)?);
            v.push(Tensor::zeros(shape, DType::F32, &self.device)?);
        }
        Ok(KvCache { k, v, len: 0, cap })
    }

    /// A fresh cache of `capacity` positions that starts with the first `n` positions of `from`.
    pub fn cache_from_prefix(&self, from: &KvCache, n: usize, capacity: usize) -> Result<KvCache> {
        let n = n.min(from.len);
        let mut c = self.new_cache(capacity.max(n + 1))?;
        if n > 0 {
            for l in 0..self.cfg.n_layer {
                c.k[l].slice_set(&from.k[l].narrow(2, 0, n)?.contiguous()?, 2, 0)?;
                c.v[l].slice_set(&from.v[l].narrow(2, 0, n)?.contiguous()?, 2, 0)?;
            }
        }
        c.len = n;
        Ok(c)
    }

    fn grow(&self, cache: &mut KvCache, needed: usize) -> Result<()> {
        if needed <= cache.cap {
            return Ok(());
        }
        if needed > self.max_positions {
            bail!("sequence of {needed} tokens exceeds the context of {} positions", self.max_positions);
        }
        let new_cap = (needed + needed / 2).max(64).min(self.max_positions);
        let grown = self.cache_from_prefix(cache, cache.len, new_cap)?;
        *cache = grown;
        Ok(())
    }

    fn rope(&self, x: &Tensor, pos: usize, len: usize) -> Result<Tensor> {
        let cos = self.cos.narrow(0, pos, len)?;
        let sin = self.sin.narrow(0, pos, len)?;
        Ok(match self.cfg.arch {
            Arch::Llama => candle_nn::rotary_emb::rope_i(x, &cos, &sin)?,
            Arch::Qwen2 => candle_nn::rotary_emb::rope(x, &cos, &sin)?,
        })
    }

    /// Runs `tokens` (appended after the cache's positions) and returns the logits of the last
    /// one, `n_vocab` floats.
    #[cfg(test)]
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        Ok(self.forward_opt(tokens, cache, true)?.unwrap_or_default())
    }

    /// [`Model::forward`], skipping the output projection when `logits` is false (prefill chunks
    /// before the last).
    pub fn forward_opt(&self, tokens: &[u32], cache: &mut KvCache, logits: bool) -> Result<Option<Vec<f32>>> {
        let out = self.forward_batch(&[tokens], &mut [cache], logits)?;
        Ok(out.map(|mut rows| rows.swap_remove(0)))
    }

    /// Runs several sequences in one pass (batched decoding): `tokens[i]` is appended after
    /// `caches[i]`'s positions. The projections and the MLP see all the new tokens as one
    /// matrix, so each weight is read once per pass, not once per sequence; attention runs per
    /// sequence over its own cache. Returns the logits after each sequence's last token.
    pub fn forward_batch(
        &self,
        tokens: &[&[u32]],
        caches: &mut [&mut KvCache],
        logits: bool,
    ) -> Result<Option<Vec<Vec<f32>>>> {
        if tokens.len() != caches.len() {
            bail!("{} token lists for {} caches", tokens.len(), caches.len());
        }
        if tokens.is_empty() || tokens.iter().any(|t| t.is_empty()) {
            bail!("forward with no tokens");
        }
        let c = &self.cfg;
        let (nh, nkv, hd) = (c.n_head, c.n_kv_head, c.head_dim);
        let n_rep = nh / nkv;
        let eps = c.rms_eps as f32;
        let scale = 1.0 / (hd as f64).sqrt();

        // (row offset in the stacked batch, new tokens, positions already cached) per sequence
        let mut spans = Vec::with_capacity(tokens.len());
        let mut offset = 0;
        for (t, cache) in tokens.iter().zip(caches.iter_mut()) {
            self.grow(cache, cache.len + t.len())?;
            spans.push((offset, t.len(), cache.len));
            offset += t.len();
        }
        let ids = Tensor::new(tokens.concat(), &self.device)?;
        let mut x = self.embed.embedding(&ids)?.unsqueeze(0)?; // (1, all new tokens, d)

        // Additive causal mask (s, total) per sequence: query i sees keys 0..=pos+i.
        let masks = spans
            .iter()
            .map(|&(_, s, pos)| {
                if s == 1 {
                    return Ok(None);
                }
                let total = pos + s;
                let mut m = vec![0f32; s * total];
                for i in 0..s {
                    for j in (pos + i + 1)..total {
                        m[i * total + j] = f32::NEG_INFINITY;
                    }
                }
                Ok(Some(Tensor::from_vec(m, (s, total), &self.device)?))
            })
            .collect::<Result<Vec<_>>>()?;

        for (l, layer) in self.layers.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let q_all = layer.wq.forward(&h, self.dequant_min_rows)?;
            let k_all = layer.wk.forward(&h, self.dequant_min_rows)?;
            let v_all = layer.wv.forward(&h, self.dequant_min_rows)?;
            let mut ys = Vec::with_capacity(spans.len());
            for (i, &(off, s, pos)) in spans.iter().enumerate() {
                let total = pos + s;
                let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
                    Ok(t.narrow(1, off, s)?.reshape((1, s, n, hd))?.transpose(1, 2)?.contiguous()?)
                };
                let q = self.rope(&heads(&q_all, nh)?, pos, s)?;
                let k = self.rope(&heads(&k_all, nkv)?, pos, s)?;
                let v = heads(&v_all, nkv)?;
                let cache = &mut caches[i];
                cache.k[l].slice_set(&k, 2, pos)?;
                cache.v[l].slice_set(&v, 2, pos)?;
                let keys = cache.k[l].narrow(2, 0, total)?;
                let values = cache.v[l].narrow(2, 0, total)?;
                // Grouped-query attention without copying K/V per head: the n_rep query heads
                // that share a KV head are stacked along the sequence axis.
                let q = q.reshape((1, nkv, n_rep * s, hd))?;
                let att = (q.matmul(&keys.t()?)? * scale)?; // (1, nkv, n_rep*s, total)
                let att = match &masks[i] {
                    Some(m) => att.reshape((1, nh, s, total))?.broadcast_add(m)?,
                    None => att,
                };
                let att = candle_nn::ops::softmax_last_dim(&att)?.reshape((1, nkv, n_rep * s, total))?;
                let y = att.matmul(&values)?; // (1, nkv, n_rep*s, hd)
                ys.push(y.reshape((1, nh, s, hd))?.transpose(1, 2)?.reshape((1, s, nh * hd))?);
            }
            let y = if ys.len() == 1 { ys.swap_remove(0) } else { Tensor::cat(&ys, 1)? };
            let y = layer.wo.forward(&y, self.dequant_min_rows)?;
            x = (x + y)?;

            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let rows = self.dequant_min_rows;
            let g = matmul(&layer.gate, &h, rows)?;
            let u = matmul(&layer.up, &h, rows)?;
            let y = matmul(&layer.down, &(candle_nn::ops::silu(&g)? * u)?, rows)?;
            x = (x + y)?;
        }
        for (cache, &(_, s, pos)) in caches.iter_mut().zip(&spans) {
            cache.len = pos + s;
        }
        if !logits {
            return Ok(None);
        }
        let last: Vec<Tensor> = spans
            .iter()
            .map(|&(off, s, _)| x.narrow(1, off + s - 1, 1))
            .collect::<candle_core::Result<_>>()?;
        let last = if last.len() == 1 { last[0].clone() } else { Tensor::cat(&last, 1)? };
        let last = candle_nn::ops::rms_norm(&last, &self.out_norm, eps)?;
        let out = matmul(&self.output, &last, self.dequant_min_rows)?.squeeze(0)?; // (sequences, n_vocab)
        Ok(Some(out.to_dtype(DType::F32)?.to_vec2::<f32>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Every route of `matmul` computes `x · wᵀ`: the dequantized GEMM for many rows equals the
    /// f32 product with the dequantized weight, and the transposed form for a few rows equals
    /// the plain one.
    #[test]
    fn matmul_routes_agree() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (96, 64), &dev).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let w_deq = q.dequantize(&dev).unwrap();
        let quantized = QMatMul::from_qtensor(q).unwrap();
        let dense = QMatMul::Tensor(w_deq.clone());
        for rows in [1usize, 3, 8, 40, 100] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 64), &dev).unwrap();
            let reference = x.broadcast_matmul(&w_deq.t().unwrap()).unwrap();
            let via_dense = matmul(&dense, &x, 0).unwrap();
            assert_eq!(via_dense.dims(), &[1, rows, 96]);
            assert!(max_diff(&via_dense, &reference) < 1e-4, "{rows} rows, f32 weight");
            let via_dequant = matmul(&quantized, &x, 32).unwrap();
            if rows >= 32 {
                assert!(max_diff(&via_dequant, &reference) < 1e-4, "{rows} rows, dequantized");
            } else {
                // candle's Q8_0 kernel also quantizes x to 8 bits: close, not equal
                let scale = reference
                    .abs()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .max(0)
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(max_diff(&via_dequant, &reference) < 0.05 * scale, "{rows} rows, quantized kernel");
            }
        }
    }
}
