//! In-process GGUF chat models: [`GgufLlm`] implements [`LlmBackend`] for the `llama`
//! (SmolLM2-*-Instruct) and `qwen2` (Qwen2.5-*-Instruct) architectures on candle (f32 GEMM or
//! quantized matmuls), with constrained decoding from [`crate::constrain`].
//!
//! * Loader: our own transformer (private module `gguf/model.rs`); the output projection is `output.weight` when the
//!   file has one and `token_embd.weight` otherwise (tied embeddings — SmolLM2 has no
//!   `output.weight`). qwen2's q/k/v biases and NeoX RoPE are handled on the same code path.
//! * Weights ([`WeightFormat`], default `Auto`): small models (≤ 2 GiB as f32, e.g. SmolLM2-135M,
//!   Qwen2.5-0.5B) are dequantized to f32 at load — exact, and on a 1-thread x86 CPU faster than
//!   candle's quantized kernels (which also quantize the activations to 8 bits, which visibly
//!   hurts a 135M model); larger ones keep the file's types, Q4_1/Q5_x requantized to Q8_0
//!   (candle has AVX2 kernels for Q8_0/Q4_0/K-quants, only scalar code for Q4_1). With quantized
//!   weights, products of at least `dequant_min_rows` rows (prefill chunks) dequantize the weight
//!   and use the f32 GEMM, as llama.cpp hands large batches to BLAS: this made Q8_0 prompts 3× and
//!   Q4_1 prompts 13× faster, ahead of llama.cpp on the same files (README, Speed).
//! * Tokenizer: rebuilt from the GGUF metadata (`tokenizer.ggml.*`), or a tokenizer.json.
//! * Chat template: ChatML (`<|im_start|>role\n…<|im_end|>\n`), checked against
//!   `tokenizer.chat_template`; SmolLM2 and Qwen2.5 both use it.
//! * Prefix reuse: the system message is the same for every prompt, so the KV cache of
//!   `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n` is computed once and copied
//!   into each prompt's cache (the reused length is the longest common token prefix, so a
//!   tokenization difference at the boundary can only shorten it, never make it wrong).
//! * Prefill runs in chunks of `prefill_chunk` tokens (default 256), which bounds the attention
//!   score matrices and skips most of their masked half; at ~1,100 tokens the measured speed of
//!   128/256/512/one pass was the same within the noise of a busy machine.
//! * Decoding: greedy by default, seeded sampling with `temperature > 0`; stops at `<|im_end|>`,
//!   the EOS token or `max_new_tokens`. The requests of a batch are prefilled one after the
//!   other and then decoded together (batched decoding): each step is one forward pass over the
//!   new tokens of every unfinished answer, so each weight matrix is read once per step instead
//!   of once per answer. That is what makes free-text answers of a large model affordable; a
//!   constrained answer of SmolLM2 needs only a few passes (forced tokens go in one pass), so
//!   there prefill dominates.
//! * Threads: candle's CPU kernels use `RAYON_NUM_THREADS` (default: physical cores).

mod model;
#[cfg(test)]
mod tiny;
mod tok;

pub use model::{Arch, WeightFormat, AUTO_F32_MAX_BYTES};

use crate::constrain::{ChoiceGrammar, Decoder};
use crate::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::Device;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::Tokenizer;

/// Where scripts/fetch-models.sh puts the default offline model (relative to the repo root).
pub const SMOLLM2_GGUF: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Debug, Clone)]
pub struct GgufOptions {
    /// In-memory weight format (default: Auto).
    pub weights: WeightFormat,
    /// Use this tokenizer.json instead of the GGUF metadata.
    pub tokenizer_json: Option<PathBuf>,
    /// Compute the shared system-prompt prefix once and reuse its KV cache (default: true).
    pub reuse_prefix: bool,
    /// Longest sequence (prompt + answer) in tokens; capped by the model's context length.
    pub max_context: usize,
    /// Prompt tokens per prefill forward pass (0: the whole prompt in one pass).
    pub prefill_chunk: usize,
    /// Products with at least this many rows (prefill chunks) dequantize quantized weights for
    /// the f32 GEMM, as llama.cpp hands large batches to BLAS (0: quantized kernels only).
    pub dequant_min_rows: usize,
    /// Most answers decoded together; a larger batch given to `generate` runs in groups of this
    /// size (each answer holds its own KV cache, ~32 MB for SmolLM2 at 700 positions).
    pub max_batch: usize,
    pub device: Device,
}

impl Default for GgufOptions {
    fn default() -> Self {
        GgufOptions {
            weights: WeightFormat::default(),
            tokenizer_json: None,
            reuse_prefix: true,
            max_context: 8192,
            prefill_chunk: 256,
            dequant_min_rows: 32,
            max_batch: 16,
            device: Device::Cpu,
        }
    }
}

/// Timing counters, cumulative since load or [`GgufLlm::reset_stats`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct GgufStats {
    pub load_secs: f64,
    pub prompts: usize,
    /// Tokens of all prompts (the full chat, prefix included).
    pub prompt_tokens: usize,
    /// Prompt tokens served from the cached system prefix.
    pub prefix_reused_tokens: usize,
    /// Tokens run through the model in prefill passes (prefix computations included).
    pub prefill_tokens: usize,
    pub prefill_secs: f64,
    /// Tokens in the answers (the final end token excluded).
    pub completion_tokens: usize,
    /// Answer tokens appended without sampling (constrained decoding, one choice left).
    pub forced_tokens: usize,
    /// Forward steps while decoding, counted per answer, and the tokens they processed.
    pub decode_calls: usize,
    /// Forward passes while decoding; one pass serves every unfinished answer of a batch.
    pub decode_passes: usize,
    pub decode_tokens: usize,
    pub decode_secs: f64,
    /// Wall time inside `generate` (tokenization and sampling included).
    pub generate_secs: f64,
}

impl GgufStats {
    pub fn prefill_tok_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_secs)
    }
    /// Answer tokens per second of decoding time.
    pub fn decode_tok_per_s(&self) -> f64 {
        rate(self.completion_tokens, self.decode_secs)
    }
    /// Forward passes per second while decoding (each pass 1 or more tokens of 1 or more answers).
    pub fn decode_passes_per_s(&self) -> f64 {
        rate(self.decode_passes, self.decode_secs)
    }
    pub fn secs_per_prompt(&self) -> f64 {
        if self.prompts == 0 {
            0.0
        } else {
            self.generate_secs / self.prompts as f64
        }
    }
    /// One line for a bench command.
    pub fn summary(&self) -> String {
        format!(
            "{} prompts, {:.0} prompt tok/prompt ({} from cached prefix), prefill {:.1} tok/s, decode {:.1} tok/s \
             ({} answer tokens, {} forced, {} forward passes for {} answer steps), {:.2} s/prompt",
            self.prompts,
            if self.prompts > 0 { self.prompt_tokens as f64 / self.prompts as f64 } else { 0.0 },
            self.prefix_reused_tokens,
            self.prefill_tok_per_s(),
            self.decode_tok_per_s(),
            self.completion_tokens,
            self.forced_tokens,
            self.decode_passes,
            self.decode_calls,
            self.secs_per_prompt()
        )
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// What was loaded.
#[derive(Debug, Clone, Serialize)]
pub struct GgufInfo {
    pub file: String,
    pub file_bytes: u64,
    pub architecture: String,
    pub layers: usize,
    pub embedding: usize,
    pub feed_forward: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tied_embeddings: bool,
    /// The format in use (`Auto` resolved: F32, or `Auto` meaning the file's types with Q4_1/Q5_x
    /// as Q8_0).
    pub weights: WeightFormat,
    /// Weight type of the first attention matrix in the file (e.g. Q4_1).
    pub file_weight_type: String,
    pub max_positions: usize,
}

struct PrefixCache {
    system: String,
    tokens: Vec<u32>,
    kv: model::KvCache,
}

/// A prompt run into its KV cache, ready to decode.
struct StartedAnswer {
    prompt_tokens: usize,
    grammar: Option<ChoiceGrammar>,
    cache: model::KvCache,
    /// The logits after the prompt's last token.
    logits: Vec<f32>,
}

pub struct GgufLlm {
    model: model::Model,
    tokenizer: Tokenizer,
    im_end: u32,
    stop_tokens: Vec<u32>,
    bos: Option<u32>,
    prefix: Option<PrefixCache>,
    reuse_prefix: bool,
    prefill_chunk: usize,
    max_batch: usize,
    info: GgufInfo,
    stats: GgufStats,
}

impl GgufLlm {
    pub fn load(path: impl AsRef<Path>, options: &GgufOptions) -> Result<Self> {
        let t0 = Instant::now();
        let path = path.as_ref();
        let mut file =
            std::fs::File::open(path).with_context(|| format!("opening GGUF model {}", path.display()))?;
        let file_bytes = file.metadata()?.len();
        let ct = gguf_file::Content::read(&mut file)
            .with_context(|| format!("reading GGUF header of {}", path.display()))?;
        let meta_str = |k: &str| ct.metadata.get(k).and_then(|v| v.to_string().ok()).cloned();
        let meta_u32 = |k: &str| ct.metadata.get(k).and_then(|v| v.to_u32().ok());

        let tokenizer = match &options.tokenizer_json {
            Some(p) => {
                Tokenizer::from_file(p).map_err(|e| anyhow::anyhow!("loading {}: {e}", p.display()))?
            }
            None => tok::tokenizer_from_gguf(&ct)?,
        };
        let im_start = tokenizer.token_to_id("<|im_start|>");
        let im_end = tokenizer.token_to_id("<|im_end|>");
        let template = meta_str("tokenizer.chat_template").unwrap_or_default();
        let (Some(_), Some(im_end)) = (im_start, im_end) else {
            bail!("{}: no <|im_start|>/<|im_end|> tokens; only ChatML models are supported", path.display());
        };
        if template.is_empty() {
            tracing::warn!("{}: no tokenizer.chat_template; assuming ChatML", path.display());
        } else if !template.contains("<|im_start|>") {
            bail!("{}: the chat template is not ChatML; only ChatML models are supported", path.display());
        }
        let mut stop_tokens = vec![im_end];
        if let Some(eos) = meta_u32("tokenizer.ggml.eos_token_id") {
            stop_tokens.push(eos);
        }
        if let Some(t) = tokenizer.token_to_id("<|endoftext|>") {
            stop_tokens.push(t);
        }
        stop_tokens.sort_unstable();
        stop_tokens.dedup();
        let add_bos =
            ct.metadata.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
        let bos = if add_bos { meta_u32("tokenizer.ggml.bos_token_id") } else { None };

        let file_weight_type = ct
            .tensor_infos
            .get("blk.0.attn_q.weight")
            .map(|i| format!("{:?}", i.ggml_dtype))
            .unwrap_or_default();
        let weights = model::resolve_format(&ct, options.weights);
        let mut model = model::Model::load(&ct, &mut file, weights, options.max_context, &options.device)?;
        model.set_dequant_min_rows(options.dequant_min_rows);
        let c = &model.cfg;
        let info = GgufInfo {
            file: path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
            file_bytes,
            architecture: meta_str("general.architecture").unwrap_or_default(),
            layers: c.n_layer,
            embedding: c.d_model,
            feed_forward: c.ffn,
            heads: c.n_head,
            kv_heads: c.n_kv_head,
            vocab: c.n_vocab,
            tied_embeddings: c.tied_embeddings,
            weights,
            file_weight_type,
            max_positions: model.max_positions(),
        };
        let stats = GgufStats { load_secs: t0.elapsed().as_secs_f64(), ..Default::default() };
        Ok(GgufLlm {
            model,
            tokenizer,
            im_end,
            stop_tokens,
            bos,
            prefix: None,
            reuse_prefix: options.reuse_prefix,
            prefill_chunk: options.prefill_chunk,
            max_batch: options.max_batch.max(1),
            info,
            stats,
        })
    }

    pub fn info(&self) -> &GgufInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn stats(&self) -> &GgufStats {
        &self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats = GgufStats { load_secs: self.stats.load_secs, ..Default::default() };
    }

    pub fn set_prefill_chunk(&mut self, chunk: usize) {
        self.prefill_chunk = chunk;
    }

    /// Runs prompt tokens in chunks; the logits after the last one when `logits`.
    fn prefill(&self, tokens: &[u32], cache: &mut model::KvCache, logits: bool) -> Result<Vec<f32>> {
        let chunk = if self.prefill_chunk == 0 { tokens.len().max(1) } else { self.prefill_chunk };
        let n = tokens.len().div_ceil(chunk);
        let mut out = Vec::new();
        for (i, part) in tokens.chunks(chunk).enumerate() {
            if let Some(l) = self.model.forward_opt(part, cache, logits && i + 1 == n)? {
                out = l;
            }
        }
        Ok(out)
    }

    pub fn set_reuse_prefix(&mut self, on: bool) {
        self.reuse_prefix = on;
        if !on {
            self.prefix = None;
        }
    }

    /// Tokenizes text as it appears inside a prompt (no BOS; special tokens in the text are
    /// recognized).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
            .get_ids()
            .to_vec())
    }

    pub fn decode_tokens(&self, tokens: &[u32]) -> Result<String> {
        self.tokenizer.decode(tokens, true).map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
    }

    fn prefix_text(system: &str) -> String {
        format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
    }

    /// The ChatML prompt: system and user messages, then the assistant header.
    pub fn chat_text(system: &str, user: &str) -> String {
        format!("{}{user}<|im_end|>\n<|im_start|>assistant\n", Self::prefix_text(system))
    }

    pub fn chat_tokens(&self, system: &str, user: &str) -> Result<Vec<u32>> {
        let mut t: Vec<u32> = self.bos.into_iter().collect();
        t.extend(self.encode(&Self::chat_text(system, user))?);
        Ok(t)
    }

    fn ensure_prefix(&mut self, system: &str) -> Result<()> {
        if self.prefix.as_ref().is_some_and(|p| p.system == system) {
            return Ok(());
        }
        self.prefix = None;
        let mut tokens: Vec<u32> = self.bos.into_iter().collect();
        tokens.extend(self.encode(&Self::prefix_text(system))?);
        let t = Instant::now();
        let mut kv = self.model.new_cache(tokens.len())?;
        self.prefill(&tokens, &mut kv, false)?;
        self.stats.prefill_secs += t.elapsed().as_secs_f64();
        self.stats.prefill_tokens += tokens.len();
        self.prefix = Some(PrefixCache { system: system.to_string(), tokens, kv });
        Ok(())
    }

    /// Answers one chat.
    pub fn generate_one(&mut self, req: &ChatRequest, settings: &GenerationSettings) -> Result<Completion> {
        Ok(self.generate_batch(std::slice::from_ref(req), settings)?.swap_remove(0))
    }

    /// Tokenizes one chat, builds its grammar, and runs its prompt (after the reused system
    /// prefix) into a fresh KV cache.
    fn start_answer(&mut self, req: &ChatRequest, settings: &GenerationSettings) -> Result<StartedAnswer> {
        let prompt = self.chat_tokens(&req.system, &req.user)?;
        let capacity = prompt.len() + settings.max_new_tokens + 64;
        if prompt.len() + 1 >= self.model.max_positions() {
            bail!(
                "prompt of {} tokens does not fit the context of {} positions",
                prompt.len(),
                self.model.max_positions()
            );
        }
        let grammar = match &req.constraint {
            Some(c) => match ChoiceGrammar::new(c, |s| self.encode(s), self.im_end) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::warn!("constraint ignored: {e:#}");
                    None
                }
            },
            None => None,
        };
        let reused = if self.reuse_prefix {
            self.ensure_prefix(&req.system)?;
            let p = self.prefix.as_ref().expect("prefix just computed");
            let common = p.tokens.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
            common.min(prompt.len() - 1)
        } else {
            0
        };
        let t = Instant::now();
        let mut cache = match (&self.prefix, reused) {
            (Some(p), n) if n > 0 => self.model.cache_from_prefix(&p.kv, n, capacity)?,
            _ => self.model.new_cache(capacity)?,
        };
        let logits = self.prefill(&prompt[reused..], &mut cache, true)?;
        let s = &mut self.stats;
        s.prompts += 1;
        s.prompt_tokens += prompt.len();
        s.prefix_reused_tokens += reused;
        s.prefill_tokens += prompt.len() - reused;
        s.prefill_secs += t.elapsed().as_secs_f64();
        Ok(StartedAnswer { prompt_tokens: prompt.len(), grammar, cache, logits })
    }

    /// Answers a batch of chats: each prompt is prefilled on its own (prefill is already one
    /// matrix product per weight), then the answers decode together, one forward pass per step
    /// for all unfinished answers (batched decoding). Greedy answers equal those decoded alone
    /// up to float rounding in the stacked products.
    pub fn generate_batch(
        &mut self,
        requests: &[ChatRequest],
        settings: &GenerationSettings,
    ) -> Result<Vec<Completion>> {
        let t_start = Instant::now();
        let mut prompt_lens = Vec::with_capacity(requests.len());
        let mut grammars = Vec::with_capacity(requests.len());
        let mut caches = Vec::with_capacity(requests.len());
        let mut first_logits = Vec::with_capacity(requests.len());
        for req in requests {
            let started = self.start_answer(req, settings)?;
            prompt_lens.push(started.prompt_tokens);
            grammars.push(started.grammar);
            caches.push(started.cache);
            first_logits.push(started.logits);
        }

        let mut decoders: Vec<Decoder> =
            grammars.iter().map(|g| Decoder::new(g.as_ref(), &self.stop_tokens, settings)).collect();
        let mut pending = decoders
            .iter_mut()
            .zip(&first_logits)
            .map(|(d, l)| d.step(l))
            .collect::<Result<Vec<Option<Vec<u32>>>>>()?;
        let (mut decode_secs, mut passes) = (0.0, 0);
        loop {
            let active: Vec<usize> = (0..requests.len()).filter(|&i| pending[i].is_some()).collect();
            if active.is_empty() {
                break;
            }
            let tokens: Vec<&[u32]> = active.iter().filter_map(|&i| pending[i].as_deref()).collect();
            let mut active_caches: Vec<&mut model::KvCache> = caches
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| pending[*i].is_some())
                .map(|(_, c)| c)
                .collect();
            let t = Instant::now();
            let logits = self.model.forward_batch(&tokens, &mut active_caches, true)?.unwrap_or_default();
            decode_secs += t.elapsed().as_secs_f64();
            passes += 1;
            for (&i, l) in active.iter().zip(&logits) {
                pending[i] = decoders[i].step(l)?;
            }
        }

        let mut completions = Vec::with_capacity(requests.len());
        let outcomes = decoders.into_iter().map(Decoder::outcome).collect::<Result<Vec<_>>>()?;
        for (outcome, prompt_len) in outcomes.iter().zip(prompt_lens) {
            let s = &mut self.stats;
            s.completion_tokens += outcome.tokens.len();
            s.forced_tokens += outcome.forced_tokens;
            s.decode_calls += outcome.forward_calls;
            s.decode_tokens += outcome.forward_tokens;
            completions.push(Completion {
                text: self.decode_tokens(&outcome.tokens)?.trim().to_string(),
                prompt_tokens: prompt_len,
                completion_tokens: outcome.tokens.len(),
            });
        }
        self.stats.decode_passes += passes;
        self.stats.decode_secs += decode_secs;
        self.stats.generate_secs += t_start.elapsed().as_secs_f64();
        Ok(completions)
    }
}

impl LlmBackend for GgufLlm {
    /// File name and size, plus the in-memory weight format when it is not the file's.
    fn model_id(&self) -> String {
        let mut id = format!("{}:{}", self.info.file, self.info.file_bytes);
        if self.info.weights != WeightFormat::Native {
            id.push('@');
            id.push_str(self.info.weights.as_str());
        }
        id
    }

    /// Up to `max_batch` answers decode together ([`GgufLlm::generate_batch`]).
    fn generate(
        &mut self,
        requests: &[ChatRequest],
        settings: &GenerationSettings,
    ) -> Result<Vec<Completion>> {
        let mut out = Vec::with_capacity(requests.len());
        for group in requests.chunks(self.max_batch) {
            out.extend(self.generate_batch(group, settings)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::Constraint;
    use std::sync::{Mutex, MutexGuard, OnceLock};

    fn model_path() -> PathBuf {
        if let Ok(p) = std::env::var("DMSREC_SMOLLM2_GGUF") {
            return PathBuf::from(p);
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(SMOLLM2_GGUF)
    }

    /// The model shared by the tests (loading and requantizing takes a few seconds). None (and
    /// a loud message) when the file is missing and DMSREC_SKIP_MODEL_TESTS=1; a failure when
    /// it is missing otherwise.
    fn shared() -> Option<MutexGuard<'static, GgufLlm>> {
        static MODEL: OnceLock<Option<Mutex<GgufLlm>>> = OnceLock::new();
        let m = MODEL.get_or_init(|| {
            let path = model_path();
            if !path.exists() {
                if std::env::var("DMSREC_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
                    eprintln!("SKIPPED: model tests skipped (DMSREC_SKIP_MODEL_TESTS=1); {} is missing", path.display());
                    return None;
                }
                panic!(
                    "model file {} is missing: run scripts/fetch-models.sh (or set DMSREC_SKIP_MODEL_TESTS=1 to skip)",
                    path.display()
                );
            }
            Some(Mutex::new(GgufLlm::load(&path, &GgufOptions::default()).expect("loading SmolLM2")))
        });
        match m {
            Some(m) => Some(m.lock().unwrap_or_else(|e| e.into_inner())),
            None => {
                eprintln!("SKIPPED: model test (DMSREC_SKIP_MODEL_TESTS=1, no model file)");
                None
            }
        }
    }

    pub(crate) const SYSTEM: &str = "You are tasked with inferring the user's intents based on a sequence of items they have interacted with.\n\
Requirements:\n\
1. If multiple intents are inferred, list all relevant intents that reflect the user's current preferences and separate them with semicolons.\n\
2. The inferred intents must be selected from the Candidate item set.\n\
3. Note that the number of recommended intents should be appropriate.";

    /// A hand-written fixture (not from the project's data): well-known films.
    pub(crate) const MOVIES: [&str; 50] = [
        "The Matrix (1999)",
        "Toy Story (1995)",
        "Heat (1995)",
        "Fargo (1996)",
        "Alien (1979)",
        "Aliens (1986)",
        "Jurassic Park (1993)",
        "Titanic (1997)",
        "Braveheart (1995)",
        "Pulp Fiction (1994)",
        "The Lion King (1994)",
        "Forrest Gump (1994)",
        "Star Wars: Episode IV - A New Hope (1977)",
        "Men in Black (1997)",
        "The Terminator (1984)",
        "Back to the Future (1985)",
        "Groundhog Day (1993)",
        "Casablanca (1942)",
        "Goodfellas (1990)",
        "Independence Day (ID4) (1996)",
        "Blade Runner (1982)",
        "Die Hard (1988)",
        "The Godfather (1972)",
        "Schindler's List (1993)",
        "The Silence of the Lambs (1991)",
        "Raiders of the Lost Ark (1981)",
        "E.T. the Extra-Terrestrial (1982)",
        "Apollo 13 (1995)",
        "Twelve Monkeys (1995)",
        "The Usual Suspects (1995)",
        "Se7en (1995)",
        "Speed (1994)",
        "True Lies (1994)",
        "The Fugitive (1993)",
        "Batman (1989)",
        "Ghostbusters (1984)",
        "The Shawshank Redemption (1994)",
        "Good Will Hunting (1997)",
        "L.A. Confidential (1997)",
        "Fight Club (1999)",
        "American Beauty (1999)",
        "The Sixth Sense (1999)",
        "Saving Private Ryan (1998)",
        "Mission: Impossible (1996)",
        "Twister (1996)",
        "The Rock (1996)",
        "Face/Off (1997)",
        "Contact (1997)",
        "Gattaca (1997)",
        "Starship Troopers (1997)",
    ];

    pub(crate) const GENRES: [&str; 10] = [
        "Action|Sci-Fi|Thriller",
        "Animation|Children's|Comedy",
        "Action|Crime|Thriller",
        "Crime|Drama|Thriller",
        "Action|Horror|Sci-Fi",
        "Action|Sci-Fi|War",
        "Action|Adventure|Sci-Fi",
        "Drama|Romance",
        "Action|Drama|War",
        "Comedy|Romance",
    ];

    fn user_prompt(session: &[&str], candidates: &[String]) -> String {
        let mut s = String::from("The order in which users click on items is as follows:\n");
        for (i, t) in session.iter().enumerate() {
            s.push_str(&format!("{}. {t}\n", i + 1));
        }
        s.push_str("\nCandidate item set:\n");
        for (i, t) in candidates.iter().enumerate() {
            s.push_str(&format!("{}. {t}\n", i + 1));
        }
        s.push_str(
            "\nAnswer with the user's intents, chosen from the candidate item set, separated by semicolons.",
        );
        s
    }

    const SESSION: [&str; 4] =
        ["Terminator 2: Judgment Day (1991)", "Total Recall (1990)", "RoboCop (1987)", "Predator (1987)"];

    fn request(n_candidates: usize, min: usize, max: usize) -> ChatRequest {
        let candidates: Vec<String> = MOVIES[..n_candidates].iter().map(|s| s.to_string()).collect();
        ChatRequest {
            system: SYSTEM.to_string(),
            user: user_prompt(&SESSION, &candidates),
            constraint: Some(Constraint {
                choices: candidates,
                min_items: min,
                max_items: max,
                separator: "; ".into(),
            }),
        }
    }

    fn split_answer(text: &str) -> Vec<String> {
        text.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn gguf_tokenizer_from_metadata() {
        let Some(llm) = shared() else { return };
        assert_eq!(llm.info().architecture, "llama");
        assert!(llm.info().tied_embeddings, "SmolLM2 has no output.weight");
        assert_eq!(llm.info().vocab, 49152);
        let ids = llm.encode("<|im_start|>user\nHello world<|im_end|>").unwrap();
        assert_eq!(ids[0], 1, "<|im_start|> is id 1: {ids:?}");
        assert_eq!(*ids.last().unwrap(), 2, "<|im_end|> is id 2: {ids:?}");
        // digits are split one by one (smollm pre-tokenizer)
        let y = llm.encode("1999").unwrap();
        assert_eq!(y.len(), 4, "{y:?}");
        for text in
            ["Star Wars: Episode IV - A New Hope (1977)", "Amélie (2001); Léon", "  two  spaces\n\nand lines"]
        {
            let ids = llm.encode(text).unwrap();
            assert_eq!(llm.decode_tokens(&ids).unwrap(), text);
        }
        // a word with and without a leading space are different tokens
        let a = llm.encode("Heat").unwrap();
        let b = llm.encode(" Heat").unwrap();
        assert_ne!(a, b);
        // "; Title" = ";" then " Title"
        let c = llm.encode("; Heat").unwrap();
        assert_eq!(&c[1..], &b[..]);
    }

    #[test]
    fn gguf_constrained_answer_uses_candidates() {
        let Some(mut llm) = shared() else { return };
        let settings = GenerationSettings::default();
        for (min, max) in [(1, 5), (2, 5)] {
            let req = request(20, min, max);
            let out = llm.generate_one(&req, &settings).unwrap();
            eprintln!("constrained min {min}: {:?} ({} tokens)", out.text, out.completion_tokens);
            let items = split_answer(&out.text);
            let cands = &req.constraint.as_ref().unwrap().choices;
            assert!((min..=5).contains(&items.len()), "{} items: {:?}", items.len(), out.text);
            for it in &items {
                assert!(cands.contains(it), "{it:?} is not a candidate (answer {:?})", out.text);
            }
            let mut dedup = items.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), items.len(), "repeated title in {:?}", out.text);
        }
        eprintln!("{}", llm.stats().summary());
    }

    #[test]
    fn gguf_greedy_is_deterministic_and_prefix_reuse_is_exact() {
        let Some(mut llm) = shared() else { return };
        let settings = GenerationSettings { max_new_tokens: 40, ..Default::default() };
        let mut req = request(10, 1, 5);
        req.constraint = None;
        llm.set_reuse_prefix(true);
        let a = llm.generate_one(&req, &settings).unwrap();
        let b = llm.generate_one(&req, &settings).unwrap();
        assert_eq!(a, b);
        assert!(!a.text.is_empty());
        llm.set_reuse_prefix(false);
        let c = llm.generate_one(&req, &settings).unwrap();
        llm.set_reuse_prefix(true);
        assert_eq!(a.text, c.text, "prefix reuse changed the answer");
        eprintln!("unconstrained: {:?}", a.text);
        // seeded sampling: same seed, same answer
        let s2 = GenerationSettings { max_new_tokens: 20, temperature: 0.8, seed: 7 };
        let d = llm.generate_one(&req, &s2).unwrap();
        let e = llm.generate_one(&req, &s2).unwrap();
        assert_eq!(d, e);
    }

    /// Batched decoding gives every answer of a batch exactly what it gets alone: constrained
    /// answers of different lengths and a free-text one, finishing at different steps.
    #[test]
    fn gguf_batch_generate_matches_single() {
        let Some(mut llm) = shared() else { return };
        let settings = GenerationSettings { max_new_tokens: 24, ..Default::default() };
        let r1 = request(12, 1, 3);
        let mut r2 = request(8, 2, 2);
        r2.user = r2.user.replace("Predator (1987)", "Alien (1979)");
        let mut r3 = request(6, 1, 5);
        r3.constraint = None;
        let batch = [r1, r2, r3];
        llm.reset_stats();
        let together = llm.generate(&batch, &settings).unwrap();
        let passes = llm.stats().decode_passes;
        let steps = llm.stats().decode_calls;
        let alone: Vec<Completion> = batch.iter().map(|r| llm.generate_one(r, &settings).unwrap()).collect();
        assert_eq!(together, alone);
        assert_eq!(split_answer(&together[1].text).len(), 2, "{:?}", together[1].text);
        assert_eq!(together[2].completion_tokens, 24, "the free-text answer runs to max_new_tokens");
        assert!(passes < steps, "answers shared forward passes: {passes} passes for {steps} steps");
        assert!(llm.model_id().starts_with("SmolLM2-135M-Instruct.Q4_1.gguf:"));
    }

    /// One batched pass over sequences at different positions, with 1 and 3 new tokens, gives
    /// each sequence the logits of its own pass.
    #[test]
    fn gguf_forward_batch_matches_separate_passes() {
        let Some(llm) = shared() else { return };
        let prompts = ["Name a film.", "What is the capital of France? Answer in one word.", "Hi"];
        let news: [&[u32]; 3] = [&[1276], &[30, 31, 32], &[17]];
        let model = &llm.model;
        let mut batched = Vec::new();
        let mut separate = Vec::new();
        for p in prompts {
            let toks = llm.chat_tokens("You are a helpful assistant.", p).unwrap();
            let mut a = model.new_cache(8).unwrap();
            model.forward(&toks, &mut a).unwrap();
            let b = model.cache_from_prefix(&a, toks.len(), toks.len() + 8).unwrap();
            batched.push(a);
            separate.push(b);
        }
        let mut refs: Vec<&mut model::KvCache> = batched.iter_mut().collect();
        let together = model.forward_batch(&news, &mut refs, true).unwrap().unwrap();
        for (i, cache) in separate.iter_mut().enumerate() {
            let alone = model.forward(news[i], cache).unwrap();
            let diff = alone.iter().zip(&together[i]).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-4, "sequence {i}: logits differ by {diff}");
            assert_eq!(batched[i].positions(), cache.positions());
        }
    }

    /// The forward pass equals candle's own quantized_llama (which ties the output to
    /// token_embd when output.weight is missing) on the file's native weights.
    #[test]
    fn gguf_forward_matches_candle_quantized_llama() {
        if shared().is_none() {
            return;
        }
        let path = model_path();
        let llm = GgufLlm::load(&path, &GgufOptions { weights: WeightFormat::Native, ..Default::default() })
            .unwrap();
        let toks = llm.chat_tokens("You are a helpful assistant.", "Name a film from 1995.").unwrap();
        let mut cache = llm.model.new_cache(64).unwrap();
        let ours = llm.model.forward(&toks, &mut cache).unwrap();
        let ours_next = llm.model.forward(&[1276], &mut cache).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let ct = gguf_file::Content::read(&mut f).unwrap();
        let mut reference =
            candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)
                .unwrap();
        let run =
            |m: &mut candle_transformers::models::quantized_llama::ModelWeights, t: &[u32], pos: usize| {
                let x = candle_core::Tensor::new(t, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                m.forward(&x, pos).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
            };
        let theirs = run(&mut reference, &toks, 0);
        let theirs_next = run(&mut reference, &[1276], toks.len());
        let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert_eq!(ours.len(), theirs.len());
        assert!(diff(&ours, &theirs) < 1e-3, "prefill logits differ by {}", diff(&ours, &theirs));
        assert!(
            diff(&ours_next, &theirs_next) < 1e-3,
            "decode logits differ by {}",
            diff(&ours_next, &theirs_next)
        );
    }

    /// End-to-end sanity of the default (f32) path: the model knows the answer.
    #[test]
    fn gguf_knows_the_capital_of_france() {
        let Some(mut llm) = shared() else { return };
        let req = ChatRequest {
            system: "You are a helpful AI assistant named SmolLM, trained by Hugging Face".into(),
            user: "What is the capital of France?".into(),
            constraint: None,
        };
        let out =
            llm.generate_one(&req, &GenerationSettings { max_new_tokens: 24, ..Default::default() }).unwrap();
        assert!(out.text.contains("Paris"), "{:?}", out.text);
    }

    fn bench_requests(n: usize) -> Vec<ChatRequest> {
        (0..n)
            .map(|p| {
                // 50 candidates (every third with its genres), rotated per prompt; a 10-item session
                let candidates: Vec<String> = (0..50)
                    .map(|i| {
                        let j = (i + 7 * p) % 50;
                        if j % 3 == 0 {
                            format!("{} [{}]", MOVIES[j], GENRES[j % 10])
                        } else {
                            MOVIES[j].to_string()
                        }
                    })
                    .collect();
                let session: Vec<&str> = (0..10).map(|i| MOVIES[(3 * i + p + 11) % 50]).collect();
                ChatRequest {
                    system: SYSTEM.to_string(),
                    user: user_prompt(&session, &candidates),
                    constraint: Some(Constraint {
                        choices: candidates,
                        min_items: 1,
                        max_items: 5,
                        separator: "; ".into(),
                    }),
                }
            })
            .collect()
    }

    /// Timing run (1 thread: `RAYON_NUM_THREADS=1 cargo test -p dmsrec-intent --release gguf_bench
    /// -- --ignored --nocapture`): ~1,000-token prompts with 50 candidates, constrained, then an
    /// unconstrained 64-token answer for decode speed. DMSREC_BENCH_FORMATS (default
    /// `f32,q8_0,q4_0,native`), DMSREC_BENCH_CHUNKS (default `256`), DMSREC_BENCH_PROMPTS (3).
    #[test]
    #[ignore]
    fn gguf_bench_constrained_50_candidates() {
        let path = model_path();
        if !path.exists() {
            panic!("model file {} is missing: run scripts/fetch-models.sh", path.display());
        }
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let formats = env("DMSREC_BENCH_FORMATS", "f32,q8_0,q4_0,native");
        let chunks = env("DMSREC_BENCH_CHUNKS", "256");
        let n_prompts: usize = env("DMSREC_BENCH_PROMPTS", "3").parse().unwrap();
        let settings = GenerationSettings::default();
        let reqs = bench_requests(n_prompts);
        for f in formats.split(',') {
            let weights: WeightFormat = f.parse().unwrap();
            let mut llm = GgufLlm::load(&path, &GgufOptions { weights, ..Default::default() }).unwrap();
            let load = llm.stats().load_secs;
            for ch in chunks.split(',') {
                let ch: usize = ch.parse().unwrap();
                llm.set_prefill_chunk(ch);
                llm.set_reuse_prefix(false);
                llm.set_reuse_prefix(true);
                llm.reset_stats();
                // the first request computes the shared prefix; reported separately
                llm.generate(&reqs[..1], &settings).unwrap();
                let first = llm.stats().clone();
                llm.reset_stats();
                let outs = llm.generate(&reqs[1..], &settings).unwrap();
                let s = llm.stats().clone();
                eprintln!(
                    "[{f} chunk {ch}] load {load:.2}s; first prompt (prefix computed) {:.2}s for {} tokens; then {}",
                    first.generate_secs,
                    first.prompt_tokens,
                    s.summary()
                );
                eprintln!(
                    "[{f} chunk {ch}]   prefill {:.2}s, decode {:.2}s ({:.1} forward passes/s); last answer {:?}",
                    s.prefill_secs,
                    s.decode_secs,
                    s.decode_passes_per_s(),
                    outs.last().map(|o| o.text.clone())
                );
            }
            let mut free = reqs[0].clone();
            free.constraint = None;
            llm.reset_stats();
            let long = GenerationSettings { max_new_tokens: 64, ..Default::default() };
            let out = llm.generate_one(&free, &long).unwrap();
            let s = llm.stats();
            eprintln!(
                "[{f}] unconstrained: {} tokens, decode {:.1} tok/s ({:.1} ms/token)",
                out.completion_tokens,
                s.decode_tok_per_s(),
                1000.0 * s.decode_secs / s.decode_passes.max(1) as f64
            );
        }
    }
}
