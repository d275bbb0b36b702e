//! BERT-family sentence encoder ξ_Bert of Eq. 6–7, on candle's `models::bert`.
//!
//! A model folder holds `config.json` (a BERT config), `model.safetensors` (BertModel weights, with
//! or without the `bert.` prefix, LayerNorm `weight/bias` or old `gamma/beta` names) and
//! `tokenizer.json`. The offline default is all-MiniLM-L6-v2 (384-d, fetched by
//! `scripts/fetch-models.sh` into `models/all-minilm-l6-v2`); pointing at a bert-base-uncased folder
//! gives 768-d vectors with the same code.
//!
//! Two poolings:
//! - [`Pooling::Mean`]: mean of the last hidden states over the real tokens (attention-masked),
//!   inputs padded per batch only — the sentence-transformers semantics. all-MiniLM-L6-v2's
//!   sentence-transformers pipeline then L2-normalizes (its `modules.json` lists a `Normalize`
//!   module); [`EncoderOptions::normalize`] `None` reads that file and normalizes exactly when it
//!   asks to. sentence-transformers truncates MiniLM at 256 tokens, we at `max_length` (128 by
//!   default): identical for every text of at most 128 tokens (all titles and intents).
//! - [`Pooling::Padded`]: what the paper authors' script did with bert-base-uncased: tokenize with
//!   `padding="max_length", max_length=128, truncation=True`, run BERT with the attention mask, then a
//!   plain mean of `last_hidden_state` over all 128 positions (padding positions included), with no
//!   normalization. [`EncoderOptions::paper`] selects this.
//!
//! Threads: candle's CPU kernels use `RAYON_NUM_THREADS` (default: all cores).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// Folder name of the default encoder under the models root.
pub const MINILM_DIR: &str = "all-minilm-l6-v2";

/// The models root: `$DMSREC_MODELS`, else `models` (relative to the working directory, i.e. the
/// repository root when run from there).
pub fn models_root() -> PathBuf {
    match std::env::var_os("DMSREC_MODELS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("models"),
    }
}

/// `models_root()/all-minilm-l6-v2`.
pub fn default_model_dir() -> PathBuf {
    models_root().join(MINILM_DIR)
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean over the real tokens (attention-masked); sentence-transformers semantics.
    #[default]
    Mean,
    /// Inputs padded to `max_length`; plain mean over all `max_length` output positions (the paper
    /// authors' script).
    Padded,
}

impl FromStr for Pooling {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "mean" => Ok(Pooling::Mean),
            "padded" | "padded-mean" | "paper" => Ok(Pooling::Padded),
            other => bail!("unknown pooling {other:?} (expected \"mean\" or \"padded\")"),
        }
    }
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Padded => "padded",
        })
    }
}

/// Options of [`TextEncoder`].
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    pub pooling: Pooling,
    /// L2-normalize each sentence vector. `None`: do it when the folder's sentence-transformers
    /// `modules.json` lists a `Normalize` module (all-MiniLM-L6-v2: yes; a plain BERT: no).
    pub normalize: Option<bool>,
    /// Truncation length in tokens, special tokens included (and the padded length of
    /// [`Pooling::Padded`]).
    pub max_length: usize,
    /// Sentences per forward pass.
    pub batch_size: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self { pooling: Pooling::Mean, normalize: None, max_length: 128, batch_size: 64 }
    }
}

impl EncoderOptions {
    /// The paper authors' recipe: padded to 128, mean over the 128 positions, no normalization.
    pub fn paper() -> Self {
        Self { pooling: Pooling::Padded, normalize: Some(false), max_length: 128, batch_size: 64 }
    }
}

/// A sentence encoder: BERT + tokenizer + pooling, with a cache of distinct strings.
pub struct TextEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dir: PathBuf,
    pooling: Pooling,
    normalize: bool,
    max_length: usize,
    batch_size: usize,
    dim: usize,
    pad_id: u32,
    cache: HashMap<String, Vec<f32>>,
    encoded: usize,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_length", &self.max_length)
            .field("batch_size", &self.batch_size)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// Whether a sentence-transformers folder asks for L2 normalization (`modules.json`).
fn sentence_transformers_normalizes(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else { return false };
    let Ok(modules) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else { return false };
    modules.iter().any(|m| {
        m.get("type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with(".Normalize") || t == "Normalize")
    })
}

fn missing_model_hint(dir: &Path, file: &str) -> String {
    format!(
        "{} not found: the encoder folder needs config.json, model.safetensors and tokenizer.json \
         (run scripts/fetch-models.sh for the default all-MiniLM-L6-v2, or point at a BERT folder)",
        dir.join(file).display()
    )
}

impl TextEncoder {
    /// Load from `dir` on the CPU.
    pub fn load(dir: impl AsRef<Path>, options: EncoderOptions) -> Result<Self> {
        Self::load_on(dir, options, Device::Cpu)
    }

    /// Load from `dir` on `device`.
    pub fn load_on(dir: impl AsRef<Path>, options: EncoderOptions, device: Device) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        for file in ["config.json", "model.safetensors", "tokenizer.json"] {
            ensure!(dir.join(file).is_file(), missing_model_hint(&dir, file));
        }
        ensure!(options.batch_size > 0, "batch_size must be positive");
        ensure!(options.max_length >= 2, "max_length must leave room for [CLS] and [SEP]");

        let config_text = std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("reading {}", dir.join("config.json").display()))?;
        let config: Config = serde_json::from_str(&config_text)
            .with_context(|| format!("parsing BERT config {}", dir.join("config.json").display()))?;
        ensure!(
            options.max_length <= config.max_position_embeddings,
            "max_length {} exceeds the model's max_position_embeddings {}",
            options.max_length,
            config.max_position_embeddings
        );

        let weights = dir.join("model.safetensors");
        // SAFETY: the weights file is memory-mapped read-only; it must not be modified while the
        // encoder lives (fetch-models.sh only ever replaces whole folders by rename).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .with_context(|| format!("mapping {}", weights.display()))?;
        let model = BertModel::load(vb, &config)
            .with_context(|| format!("loading BERT weights from {}", weights.display()))?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("reading {}", dir.join("tokenizer.json").display()))?;
        // We pad ourselves (per batch or to max_length); the file's own padding/truncation settings
        // are replaced.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: options.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(anyhow::Error::msg)?;
        let pad_id = tokenizer.token_to_id("[PAD]").unwrap_or(config.pad_token_id as u32);

        let normalize = options.normalize.unwrap_or_else(|| sentence_transformers_normalizes(&dir));
        Ok(Self {
            model,
            tokenizer,
            device,
            dir,
            pooling: options.pooling,
            normalize,
            max_length: options.max_length,
            batch_size: options.batch_size,
            dim: config.hidden_size,
            pad_id,
            cache: HashMap::new(),
            encoded: 0,
        })
    }

    /// Width of the sentence vectors (384 for MiniLM-L6, 768 for bert-base).
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }
    /// Whether vectors are L2-normalized (after the `None` = auto rule was applied).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }
    pub fn max_length(&self) -> usize {
        self.max_length
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    pub fn set_batch_size(&mut self, batch_size: usize) {
        self.batch_size = batch_size.max(1);
    }
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }
    /// A short description for logs and run manifests.
    pub fn describe(&self) -> String {
        format!(
            "{} dim={} pooling={} normalize={} max_length={}",
            self.dir.display(),
            self.dim,
            self.pooling,
            self.normalize,
            self.max_length
        )
    }
    /// How many strings went through the model since loading (cache hits excluded).
    pub fn sentences_encoded(&self) -> usize {
        self.encoded
    }
    /// Number of distinct strings in the cache.
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }
    /// The cached vector of `text`, if [`Self::encode_cached`] has seen it.
    pub fn cached(&self, text: &str) -> Option<&[f32]> {
        self.cache.get(text).map(Vec::as_slice)
    }

    /// Token ids of `text` as the model sees them ([CLS] … [SEP], truncated to `max_length`).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(anyhow::Error::msg)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encode every text (no cache): one vector of [`Self::dim`] floats per text, in order.
    ///
    /// Texts are sorted by token length (longest first) and batched (at most `batch_size` per
    /// forward pass), so each batch pads little; results do not depend on which other texts share
    /// a batch (to ~1e-6).
    pub fn encode<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
        let encodings = self.tokenizer.encode_batch(inputs, true).map_err(anyhow::Error::msg)?;
        let ids: Vec<&[u32]> = encodings.iter().map(|e| e.get_ids()).collect();

        // Longest first, as sentence-transformers does; stable for equal lengths.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));

        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut start = 0;
        while start < order.len() {
            // Up to batch_size texts; with mean pooling a batch also ends before a text with less
            // than half the tokens of the batch's longest (when that one has 32+ tokens), so a few
            // long outliers do not make 63 short texts run padded to 128.
            let width = ids[order[start]].len();
            let mut end = start + 1;
            while end < order.len()
                && end - start < self.batch_size
                && (self.pooling == Pooling::Padded || width < 32 || 2 * ids[order[end]].len() >= width)
            {
                end += 1;
            }
            let chunk = &order[start..end];
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i]).collect();
            let vectors = self.forward_batch(&batch)?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
            start = end;
        }
        self.encoded += texts.len();
        Ok(out)
    }

    /// Like [`Self::encode`], but each distinct string is encoded once over the encoder's life:
    /// duplicates within `texts` and strings seen by earlier calls come from the cache.
    pub fn encode_cached<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>> {
        self.ensure_cached(texts)?;
        Ok(texts.iter().map(|t| self.cache[t.as_ref()].clone()).collect())
    }

    /// Encode the strings of `texts` that are not cached yet (each distinct one once), so that
    /// [`Self::cached`] then answers for all of them without copying.
    pub fn ensure_cached<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<()> {
        let mut missing: Vec<&str> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in texts {
            let t = t.as_ref();
            if !self.cache.contains_key(t) && seen.insert(t) {
                missing.push(t);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let vectors = self.encode(&missing)?;
        for (t, v) in missing.into_iter().zip(vectors) {
            self.cache.insert(t.to_owned(), v);
        }
        Ok(())
    }

    /// One forward pass over a batch of token-id sequences; returns one pooled vector per sequence.
    fn forward_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let b = batch.len();
        let width = match self.pooling {
            Pooling::Mean => batch.iter().map(|s| s.len()).max().unwrap_or(0),
            Pooling::Padded => self.max_length,
        };
        let mut ids = vec![self.pad_id; b * width];
        let mut mask = vec![0u32; b * width];
        for (r, seq) in batch.iter().enumerate() {
            let n = seq.len().min(width);
            ids[r * width..r * width + n].copy_from_slice(&seq[..n]);
            mask[r * width..r * width + n].fill(1);
        }
        let ids = Tensor::from_vec(ids, (b, width), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, width), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?; // (b, width, dim)

        let pooled = match self.pooling {
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, width, 1)
                let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, dim)
                let counts = m.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
                summed.broadcast_div(&counts)?
            }
            Pooling::Padded => hidden.mean(1)?,
        };
        let pooled = if self.normalize {
            // torch.nn.functional.normalize: x / max(‖x‖₂, 1e-12).
            let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norms)?
        } else {
            pooled
        };
        Ok(pooled.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }
}

/// Timing of one [`bench_encoder`] run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodeBench {
    pub sentences: usize,
    /// Wall-clock seconds of the timed `encode` call.
    pub wall_s: f64,
    /// CPU seconds (user + system, all threads) the process spent meanwhile; Linux only. On a
    /// busy machine `sentences / cpu_s` is the better estimate of the 1-thread speed.
    pub cpu_s: Option<f64>,
}

impl EncodeBench {
    pub fn sentences_per_s(&self) -> f64 {
        self.sentences as f64 / self.wall_s.max(1e-9)
    }
    pub fn sentences_per_cpu_s(&self) -> Option<f64> {
        self.cpu_s.map(|c| self.sentences as f64 / c.max(1e-9))
    }
}

/// User + system CPU seconds of this process, from `/proc/self/stat` (assumes 100 ticks/s).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Time [`TextEncoder::encode`] on `texts` (no cache), after a warm-up batch. The thread count is
/// the caller's `RAYON_NUM_THREADS`. Reference: sentence-transformers on PyTorch encodes ~258 short
/// titles/s with all-MiniLM-L6-v2 on 1 thread at batch 64.
pub fn bench_encoder<S: AsRef<str>>(encoder: &mut TextEncoder, texts: &[S]) -> Result<EncodeBench> {
    ensure!(!texts.is_empty(), "nothing to benchmark");
    let warm = texts.len().min(encoder.batch_size().min(16));
    encoder.encode(&texts[..warm])?;
    let cpu0 = process_cpu_seconds();
    let start = Instant::now();
    let out = encoder.encode(texts)?;
    let wall_s = start.elapsed().as_secs_f64();
    let cpu_s = match (cpu0, process_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    ensure!(out.len() == texts.len());
    Ok(EncodeBench { sentences: texts.len(), wall_s, cpu_s })
}

/// Wall-clock sentences per second of [`TextEncoder::encode`] on `texts`; see [`bench_encoder`].
pub fn bench_sentences_per_s<S: AsRef<str>>(encoder: &mut TextEncoder, texts: &[S]) -> Result<f64> {
    Ok(bench_encoder(encoder, texts)?.sentences_per_s())
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The MiniLM folder for tests: `$DMSREC_MODELS/all-minilm-l6-v2`, else `<repo>/models/...`.
    /// Missing: panic telling to run the fetch script, unless `DMSREC_SKIP_MODEL_TESTS=1` (then
    /// `None`, and the test says loudly that it skipped).
    pub(crate) fn minilm_dir_or_skip(test: &str) -> Option<PathBuf> {
        let root = match std::env::var_os("DMSREC_MODELS") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        };
        let dir = root.join(MINILM_DIR);
        if ["config.json", "model.safetensors", "tokenizer.json"].iter().all(|f| dir.join(f).is_file()) {
            return Some(dir);
        }
        if std::env::var("DMSREC_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
            // Straight to the stderr handle: libtest's capture (of eprintln!) would hide it.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "!!! SKIPPED {test}: MiniLM not found at {} and DMSREC_SKIP_MODEL_TESTS=1 !!!",
                dir.display()
            );
            return None;
        }
        panic!(
            "{test}: the all-MiniLM-L6-v2 model is missing at {}: run scripts/fetch-models.sh \
             (or set DMSREC_SKIP_MODEL_TESTS=1 to skip model tests)",
            dir.display()
        );
    }

    fn load(test: &str, options: EncoderOptions) -> Option<TextEncoder> {
        let dir = minilm_dir_or_skip(test)?;
        Some(TextEncoder::load(dir, options).expect("loading MiniLM"))
    }

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn encoder_minilm_dim_and_unit_norm() {
        let Some(mut enc) = load("encoder_minilm_dim_and_unit_norm", EncoderOptions::default()) else {
            return;
        };
        assert_eq!(enc.dim(), 384);
        assert!(enc.normalizes(), "modules.json of MiniLM asks for Normalize");
        let v = enc.encode(&["This is an example sentence"]).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].len(), 384);
        assert!((norm(&v[0]) - 1.0).abs() < 1e-5, "norm {}", norm(&v[0]));

        let mut raw = load(
            "encoder_minilm_dim_and_unit_norm",
            EncoderOptions { normalize: Some(false), ..Default::default() },
        )
        .unwrap();
        assert!(!raw.normalizes());
        let r = raw.encode(&["This is an example sentence"]).unwrap();
        assert!((norm(&r[0]) - 1.0).abs() > 1e-3, "unnormalized mean should not be unit norm");
        let rescaled: Vec<f32> = r[0].iter().map(|x| x / norm(&r[0])).collect();
        assert!(max_abs_diff(&rescaled, &v[0]) < 1e-5);
    }

    /// Cross-check with an independent implementation: fastembed-rs (ONNX Runtime, the ONNX export of
    /// sentence-transformers/all-MiniLM-L6-v2, mean pooling + L2 normalization) publishes the sum of
    /// the 384 components for these four documents in its test suite (tests/text-embeddings.rs),
    /// checked there to 1e-2.
    #[test]
    fn encoder_minilm_matches_published_reference() {
        let Some(mut enc) = load("encoder_minilm_matches_published_reference", EncoderOptions::default())
        else {
            return;
        };
        let docs = [
            "Hello, World!",
            "This is an example passage.",
            "fastembed-rs is licensed under Apache-2.0",
            "Some other short text here blah blah blah",
        ];
        let expected = [0.59605527f32, 0.36542925, -0.16450031, -0.40903988];
        let v = enc.encode(&docs).unwrap();
        for (i, (e, want)) in v.iter().zip(expected).enumerate() {
            let sum: f32 = e.iter().sum();
            assert!((sum - want).abs() < 1e-3, "doc {i} {:?}: sum {sum} vs {want}", docs[i]);
        }
        // The first components printed on the all-MiniLM-L6-v2 model card (sentence-transformers),
        // also reproduced by an independent numpy BertModel (max abs diff 1.6e-7 over all 384).
        let card = enc.encode(&["This is an example sentence"]).unwrap().remove(0);
        let want = [0.06765689f32, 0.06349590, 0.04871311, 0.07930498, 0.03744806, 0.00265280];
        assert!(max_abs_diff(&card[..6], &want) < 1e-5, "{:?} vs {want:?}", &card[..6]);
        // The authors' padded pooling (no normalization), against the same numpy reference
        // (padding="max_length" 128, mean over all 128 positions): max abs diff 1.4e-6 there.
        let mut padded = load("encoder_minilm_matches_published_reference", EncoderOptions::paper()).unwrap();
        let p = padded.encode(&["This is an example sentence", "Toy Story (1995)"]).unwrap();
        let want0 = [0.03026317f32, 0.23216414, 0.63583493, 0.27803876, 0.14521476, -0.25280495];
        let want2 = [-0.40032891f32, 0.25165946, 0.40320785, -0.03877188];
        assert!(max_abs_diff(&p[0][..6], &want0) < 1e-4, "{:?} vs {want0:?}", &p[0][..6]);
        assert!(max_abs_diff(&p[1][..4], &want2) < 1e-4, "{:?} vs {want2:?}", &p[1][..4]);
    }

    #[test]
    fn encoder_cosine_ordering() {
        let Some(mut enc) = load("encoder_cosine_ordering", EncoderOptions::default()) else { return };
        let v = enc.encode(&["hiking tent", "camping tent", "espresso machine"]).unwrap();
        let near = cosine(&v[0], &v[1]);
        let far = cosine(&v[0], &v[2]);
        assert!(near > far + 0.2, "cos(hiking, camping) {near} vs cos(hiking, espresso) {far}");
        // Unit vectors: the dot product is the cosine.
        let dot: f32 = v[0].iter().zip(&v[1]).map(|(a, b)| a * b).sum();
        assert!((dot - near).abs() < 1e-5);
    }

    #[test]
    fn encoder_batching_invariance() {
        let Some(mut enc) =
            load("encoder_batching_invariance", EncoderOptions { batch_size: 3, ..Default::default() })
        else {
            return;
        };
        let target = "Toy Story";
        let alone = enc.encode(&[target]).unwrap().remove(0);
        let texts = vec![
            "A much longer movie title about a space adventure with many, many words in it".to_string(),
            target.to_string(),
            "Shampoo for dry hair with argan oil and keratin, 500 ml family pack".to_string(),
            "short".to_string(),
            "Another rather long product description that forces plenty of padding tokens".to_string(),
            // 40+ tokens: with a larger batch size this one gets a batch of its own.
            "Professional salon quality hair dryer with ionic technology, three heat settings, two speed \
             settings, cool shot button, concentrator nozzle, diffuser attachment and a long power cord"
                .to_string(),
        ];
        let batched = enc.encode(&texts).unwrap();
        let d = max_abs_diff(&alone, &batched[1]);
        assert!(d < 1e-5, "vector changed by batching: max diff {d}");
        // Order of results follows the input order.
        let short_alone = enc.encode(&["short"]).unwrap().remove(0);
        assert!(max_abs_diff(&short_alone, &batched[3]) < 1e-5);
        // Same batch composition, different batch size.
        enc.set_batch_size(64);
        let one_batch = enc.encode(&texts).unwrap();
        for (a, b) in batched.iter().zip(&one_batch) {
            assert!(max_abs_diff(a, b) < 1e-5);
        }
    }

    #[test]
    fn encoder_padded_pooling_differs_from_mean() {
        let Some(mut mean) = load("encoder_padded_pooling_differs_from_mean", EncoderOptions::default())
        else {
            return;
        };
        let mut padded = load("encoder_padded_pooling_differs_from_mean", EncoderOptions::paper()).unwrap();
        assert_eq!(padded.pooling(), Pooling::Padded);
        assert!(!padded.normalizes());
        let texts = ["wireless noise cancelling headphones", "x"];
        let m = mean.encode(&texts).unwrap();
        let p = padded.encode(&texts).unwrap();
        assert_eq!(p[0].len(), 384);
        for (a, b) in m.iter().zip(&p) {
            let a_unit: Vec<f32> = a.iter().map(|x| x / norm(a)).collect();
            let b_unit: Vec<f32> = b.iter().map(|x| x / norm(b)).collect();
            assert!(max_abs_diff(&a_unit, &b_unit) > 1e-2, "padded pooling should differ from mean pooling");
        }
        // Padded pooling is batch invariant too, and deterministic.
        let again = padded.encode(&["wireless noise cancelling headphones"]).unwrap();
        assert!(max_abs_diff(&again[0], &p[0]) < 1e-5);
        // Truncation: a text longer than max_length is cut, not rejected.
        let long = "tent ".repeat(400);
        assert_eq!(padded.token_ids(&long).unwrap().len(), 128);
        assert_eq!(padded.encode(&[long]).unwrap()[0].len(), 384);
    }

    #[test]
    fn encoder_cache_encodes_duplicates_once() {
        let Some(mut enc) = load("encoder_cache_encodes_duplicates_once", EncoderOptions::default()) else {
            return;
        };
        let texts: Vec<String> =
            ["red lipstick", "blue jeans", "red lipstick", "red lipstick", "blue jeans", "green tea"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let v = enc.encode_cached(&texts).unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(enc.sentences_encoded(), 3);
        assert_eq!(enc.cache_len(), 3);
        assert_eq!(v[0], v[2]);
        assert_eq!(v[1], v[4]);
        let again = enc.encode_cached(&["green tea", "red lipstick", "black coffee"]).unwrap();
        assert_eq!(enc.sentences_encoded(), 4);
        assert_eq!(again[0], v[5]);
        assert_eq!(again[1], v[0]);
        let direct = enc.encode(&["black coffee"]).unwrap();
        assert!(max_abs_diff(&direct[0], &again[2]) < 1e-5);
        assert_eq!(enc.cached("black coffee").map(|c| c.len()), Some(384));
    }

    #[test]
    fn encoder_missing_folder_names_the_fetch_script() {
        let err = TextEncoder::load("/nonexistent/dmsrec-model", EncoderOptions::default()).unwrap_err();
        assert!(format!("{err:#}").contains("scripts/fetch-models.sh"), "{err:#}");
        assert_eq!("padded".parse::<Pooling>().unwrap(), Pooling::Padded);
        assert_eq!("Mean".parse::<Pooling>().unwrap(), Pooling::Mean);
        assert!("cls".parse::<Pooling>().is_err());
    }

    /// `RAYON_NUM_THREADS=1 cargo test -p dmsrec-intent encoder_bench -- --ignored --nocapture`
    /// Titles: the first 512 ML-1M titles from ../shared/data when present, else synthetic ones.
    #[test]
    #[ignore]
    fn encoder_bench_titles() {
        let Some(mut enc) = load("encoder_bench_titles", EncoderOptions::default()) else { return };
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        let sets = [("ml-1m", "ml-1m-paper/items.tsv"), ("beauty", "beauty-paper/items.tsv")];
        for (name, file) in sets {
            let titles: Vec<String> = match std::fs::read_to_string(shared.join(file)) {
                Ok(text) => text
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split('\t').nth(2).map(str::to_string))
                    .take(512)
                    .collect(),
                Err(_) => {
                    (0..512).map(|i| format!("Product number {i} with a short descriptive title")).collect()
                }
            };
            let tokens: usize = titles.iter().map(|t| enc.token_ids(t).unwrap().len()).sum();
            enc.set_batch_size(64);
            let b = bench_encoder(&mut enc, &titles).unwrap();
            eprintln!(
                "encoder bench {name}: {} titles ({:.1} tokens avg), batch 64, RAYON_NUM_THREADS={:?}: \
                 {:.1} sentences/s wall, {} sentences per CPU-second",
                titles.len(),
                tokens as f64 / titles.len() as f64,
                std::env::var("RAYON_NUM_THREADS").ok(),
                b.sentences_per_s(),
                b.sentences_per_cpu_s().map_or("n/a".to_string(), |r| format!("{r:.1}")),
            );
        }
    }
}
