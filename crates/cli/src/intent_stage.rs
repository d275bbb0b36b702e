//! Phase II of LLM-DMsRec (paper sections 4.1–4.2) as a resumable stage, and its benchmark.
//!
//! `dmsrec intents`: prompts for the selected examples of a split → LLM answers (cached in
//! `OUT/answers.sqlite`, stored a few at a time, so a killed run loses at most one chunk) →
//! intents matched to candidates, explicit vs latent (Eq. 5) → E_e / E_l per example (Eq. 6–7).
//!
//! Outputs, each written atomically (temporary file in `OUT`, renamed into place):
//! * `intents_<split>.jsonl`: one line per selected example, in ascending example order;
//! * `embeddings_<split>.safetensors`: `explicit`, `latent` F32 `[n, dim]`, `mask`,
//!   `explicit_from_latent`, `latent_from_explicit` U8 `[n]` (the layout of
//!   [`IntentEmbeddings::write_safetensors`], so `read_safetensors` reads it) plus `index` and
//!   `target` U32 `[n]`: row `r` belongs to example `index[r]` of the split;
//! * `summary_<split>.json`: rates, speeds, cache counts and provenance.
//!
//! `dmsrec bench intents`: the embedded backend on a fixed set of ML-1M test prompts, no cache,
//! then the encoder's sentences/s on the catalog's prompt titles.

use crate::report::{command_line, git_revision};
use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use dmsrec_data::atomic::{write_atomic, write_bytes_atomic};
use dmsrec_data::{tsv, Catalog, Example};
use dmsrec_intent::cache::{generate_cached, settings_json, AnswerCache};
use dmsrec_intent::candidates::{check_aligned, read_candidates};
use dmsrec_intent::embed::{embed_intents, IntentEmbeddings};
use dmsrec_intent::encoder::{bench_encoder, models_root, EncoderOptions, Pooling, TextEncoder};
use dmsrec_intent::gguf::{GgufLlm, GgufOptions, GgufStats, WeightFormat};
use dmsrec_intent::http::{Guided, HttpBackend, HttpConfig};
use dmsrec_intent::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use dmsrec_intent::parse::{MatchKind, Matcher, ParseOptions, ParseStats, ParsedAnswer};
use dmsrec_intent::prompt::{PromptBuilder, PromptOptions, PromptTemplate, RenderedPrompt};
use dmsrec_intent::replay::{read_intent_items, write_intent_items, IntentItems, ReplayBackend};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where scripts/fetch-models.sh puts SmolLM2, under the models root.
const SMOLLM2_FILE: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum StageSplit {
    Train,
    Test,
}

impl StageSplit {
    fn name(self) -> &'static str {
        match self {
            StageSplit::Train => "train",
            StageSplit::Test => "test",
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum BackendKind {
    /// In-process GGUF model (constrained decoding built in).
    Gguf,
    /// OpenAI-compatible chat-completions server(s).
    Http,
}

#[derive(Args, Debug)]
pub struct IntentsArgs {
    /// Dataset folder (items.tsv prompt titles are what the LLM sees).
    #[arg(long)]
    pub data: PathBuf,
    /// Candidate file aligned with the split (one line per example, e.g. from `dmsrec candidates`).
    #[arg(long)]
    pub candidates: PathBuf,
    #[arg(long, value_enum, default_value = "test")]
    pub split: StageSplit,
    /// Output folder: answers.sqlite, intents_<split>.jsonl, embeddings_<split>.safetensors, summary_<split>.json.
    #[arg(long)]
    pub out: PathBuf,

    // --- backend ---
    #[arg(long, value_enum, default_value = "gguf")]
    pub backend: BackendKind,
    /// Replay finished intents instead of asking an LLM: an `intent_items_<split>.tsv` written by
    /// an earlier run (example index, intent item ids), answered as those items' titles.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// gguf: the model file (default: $DMSREC_MODELS or models/, then smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// gguf: in-memory weight format (auto, native, q8_0, q4_0, f32).
    #[arg(long, default_value = "auto")]
    pub weights: WeightFormat,
    /// http: server base URL (repeatable; used round-robin).
    #[arg(long = "url")]
    pub urls: Vec<String>,
    /// http: the `model` field of every request.
    #[arg(long, default_value = "default")]
    pub model_name: String,
    /// http: environment variable holding the API key.
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// http: requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// http: how constraints are sent (none, llama-grammar, vllm, vllm-structured).
    #[arg(long, default_value = "none")]
    pub guided: Guided,
    /// Most answer tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sampling seed of the LLM (part of the cache key).
    #[arg(long, default_value_t = 2024)]
    pub gen_seed: u64,
    /// Prompts answered (and stored in the cache) per step; the gguf backend decodes them together
    /// (default: gguf 8, http 2 × concurrency).
    #[arg(long)]
    pub chunk: Option<usize>,

    // --- prompt ---
    /// Candidates shown per prompt.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// Show only the last N clicks of each session.
    #[arg(long)]
    pub last_n: Option<usize>,
    /// Cap every title at this many characters.
    #[arg(long)]
    pub title_cap: Option<usize>,
    /// Prompt template file (default: the paper's Prompt 1 + 2).
    #[arg(long)]
    pub template: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub min_intents: usize,
    #[arg(long, default_value_t = 5)]
    pub max_intents: usize,
    /// Do not restrict answers to candidate titles.
    #[arg(long)]
    pub no_constrain: bool,
    /// Lowest similarity accepted as a fuzzy match of a free-text answer piece.
    #[arg(long, default_value_t = 0.85)]
    pub fuzzy_threshold: f64,

    // --- selection ---
    /// Only the first N selected examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// A seeded random share of the split's examples (kept in ascending order), e.g. 0.1.
    #[arg(long)]
    pub sample: Option<f64>,
    /// Seed of --sample.
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,

    // --- encoder ---
    /// Sentence encoder folder (default: $DMSREC_MODELS or models/, then all-minilm-l6-v2).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    #[arg(long, default_value = "mean")]
    pub pooling: Pooling,
    /// Sentences per encoder forward pass.
    #[arg(long, default_value_t = 64)]
    pub encoder_batch: usize,
}

#[derive(Args, Debug)]
pub struct BenchIntentsArgs {
    /// Dataset folder (e.g. ../shared/data/ml-1m-paper).
    #[arg(long)]
    pub data: PathBuf,
    /// Test candidate file (default: DATA/test_candidates.tsv).
    #[arg(long)]
    pub candidates: Option<PathBuf>,
    /// The first N test examples are the prompts.
    #[arg(long, default_value_t = 20)]
    pub prompts: usize,
    /// Candidates shown per prompt.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// GGUF model file (default: the SmolLM2 file under the models root).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// In-memory weight formats to measure, comma-separated (auto, native, q8_0, q4_0, f32).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub weights: Vec<WeightFormat>,
    /// Also measure the file's own quantization (native, Q4_1 for SmolLM2) and Q8_0 requantized at load.
    #[arg(long)]
    pub requantize: bool,
    /// Prompts decoded together (batched decoding), comma-separated sizes to compare.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    pub batch: Vec<usize>,
    /// Free-text answers (no constraint), as the paper's Qwen gave; each runs to its end token or
    /// --max-new-tokens.
    #[arg(long)]
    pub unconstrained: bool,
    /// Sentence encoder folder (default: all-minilm-l6-v2 under the models root).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub encoder_batch: usize,
    /// Skip the encoder measurement.
    #[arg(long)]
    pub no_encoder: bool,
    /// Write the figures as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn default_gguf() -> PathBuf {
    models_root().join(SMOLLM2_FILE)
}

fn default_encoder() -> PathBuf {
    dmsrec_intent::encoder::default_model_dir()
}

fn require_model_file(path: &Path) -> Result<()> {
    ensure!(
        path.is_file(),
        "GGUF model {} not found: run scripts/fetch-models.sh (or pass --model)",
        path.display()
    );
    Ok(())
}

fn require_encoder_dir(dir: &Path) -> Result<()> {
    ensure!(
        dir.join("config.json").is_file() && dir.join("model.safetensors").is_file(),
        "encoder folder {} not found or incomplete: run scripts/fetch-models.sh (or pass --encoder)",
        dir.display()
    );
    Ok(())
}

/// Example indices of a split of `n`: a seeded `fraction` of them (ascending), then the first
/// `limit`.
pub fn select_indices(n: usize, sample: Option<f64>, seed: u64, limit: Option<usize>) -> Result<Vec<usize>> {
    let mut idx: Vec<usize> = match sample {
        None => (0..n).collect(),
        Some(f) => {
            ensure!(f > 0.0 && f <= 1.0, "--sample must be in (0, 1], got {f}");
            let take = ((f * n as f64).round() as usize).clamp(usize::from(n > 0), n);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut v = rand::seq::index::sample(&mut rng, n, take).into_vec();
            v.sort_unstable();
            v
        }
    };
    if let Some(l) = limit {
        idx.truncate(l);
    }
    Ok(idx)
}

/// The chosen backend, kept concrete for its statistics.
enum Backend {
    Gguf(Box<GgufLlm>),
    Http(HttpBackend),
    Replay(ReplayBackend),
}

impl Backend {
    fn as_dyn(&mut self) -> &mut dyn LlmBackend {
        match self {
            Backend::Gguf(m) => m.as_mut(),
            Backend::Http(h) => h,
            Backend::Replay(r) => r,
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Backend::Gguf(_) => "gguf",
            Backend::Http(_) => "http",
            Backend::Replay(_) => "replay",
        }
    }
}

/// Counts answered prompts on the progress bar; the gguf backend is fed one prompt at a time so
/// the bar moves per prompt (it decodes them one after the other anyway).
struct Counting<'a> {
    inner: &'a mut dyn LlmBackend,
    bar: &'a ProgressBar,
    one_by_one: bool,
}

impl LlmBackend for Counting<'_> {
    fn model_id(&self) -> String {
        self.inner.model_id()
    }

    fn generate(
        &mut self,
        requests: &[ChatRequest],
        settings: &GenerationSettings,
    ) -> Result<Vec<Completion>> {
        if self.one_by_one {
            let mut out = Vec::with_capacity(requests.len());
            for r in requests {
                out.extend(self.inner.generate(std::slice::from_ref(r), settings)?);
                self.bar.inc(1);
            }
            Ok(out)
        } else {
            let out = self.inner.generate(requests, settings)?;
            self.bar.inc(requests.len() as u64);
            Ok(out)
        }
    }
}

/// Log lines written above the progress bar instead of through it.
#[derive(Clone)]
struct BarLog(ProgressBar);

struct BarLine {
    bar: ProgressBar,
    buf: Vec<u8>,
}

impl Write for BarLine {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BarLine {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            self.bar.suspend(|| {
                let _ = std::io::stderr().write_all(&buf);
            });
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BarLog {
    type Writer = BarLine;
    fn make_writer(&'a self) -> BarLine {
        BarLine { bar: self.0.clone(), buf: Vec::new() }
    }
}

/// Runs `f` with this thread's log events printed above `bar` while the bar is drawn (to plain
/// stderr, without colour codes when that is not a terminal, while it is hidden). The per-chunk
/// lines of the answer cache are silenced: the bar, or the stage's own progress lines, replace
/// them. `RUST_LOG` still overrides the filter.
fn with_bar_logging<T>(bar: &ProgressBar, f: impl FnOnce() -> T) -> T {
    use std::io::IsTerminal;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,dmsrec_intent::cache=warn".into())
    };
    if bar.is_hidden() {
        let sub = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .without_time()
            .finish();
        return tracing::subscriber::with_default(sub, f);
    }
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(BarLog(bar.clone()))
        .without_time()
        .finish();
    tracing::subscriber::with_default(sub, f)
}

fn per_s(n: usize, secs: f64) -> Option<f64> {
    (n > 0 && secs > 0.0).then(|| n as f64 / secs)
}

/// Writes `tensors` as safetensors, atomically.
fn save_tensors_atomic(path: &Path, tensors: &HashMap<&str, Tensor>) -> Result<()> {
    dmsrec_data::atomic::write_via_path(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(std::io::Error::other)
    })
    .with_context(|| format!("writing {}", path.display()))
}

fn write_embeddings(path: &Path, emb: &IntentEmbeddings, index: &[usize], targets: &[u32]) -> Result<()> {
    let (n, dim) = (emb.len(), emb.dim);
    ensure!(index.len() == n && targets.len() == n, "embedding rows and example indices disagree");
    let dev = Device::Cpu;
    let idx: Vec<u32> = index.iter().map(|&i| u32::try_from(i)).collect::<Result<_, _>>()?;
    let mut t: HashMap<&str, Tensor> = HashMap::new();
    t.insert("explicit", Tensor::from_slice(&emb.e_explicit, (n, dim), &dev)?);
    t.insert("latent", Tensor::from_slice(&emb.e_latent, (n, dim), &dev)?);
    t.insert("mask", Tensor::from_slice(&emb.mask, n, &dev)?);
    t.insert("explicit_from_latent", Tensor::from_slice(&emb.explicit_from_latent, n, &dev)?);
    t.insert("latent_from_explicit", Tensor::from_slice(&emb.latent_from_explicit, n, &dev)?);
    t.insert("index", Tensor::from_slice(&idx, n, &dev)?);
    t.insert("target", Tensor::from_slice(targets, n, &dev)?);
    save_tensors_atomic(path, &t)
}

fn kind_str(k: MatchKind) -> &'static str {
    match k {
        MatchKind::Exact => "exact",
        MatchKind::Fuzzy => "fuzzy",
        MatchKind::Free => "free",
    }
}

fn intents_line(index: usize, ex: &Example, answer: &str, parsed: &ParsedAnswer) -> Value {
    let intents: Vec<Value> = parsed
        .intents
        .iter()
        .map(|i| {
            json!({
                "text": i.text,
                "item": i.item,
                "kind": kind_str(i.kind),
                "explicit": i.explicit,
                "session_item": i.session_item,
            })
        })
        .collect();
    json!({"index": index, "target": ex.target, "answer": answer, "intents": intents})
}

fn gguf_speeds(s: &GgufStats) -> (Option<f64>, Option<f64>) {
    (
        (s.prefill_tokens > 0 && s.prefill_secs > 0.0).then(|| s.prefill_tok_per_s()),
        (s.completion_tokens > 0 && s.decode_secs > 0.0).then(|| s.decode_tok_per_s()),
    )
}

fn load_gguf(path: &Path, weights: WeightFormat) -> Result<GgufLlm> {
    require_model_file(path)?;
    let opts = GgufOptions { weights, ..Default::default() };
    GgufLlm::load(path, &opts).with_context(|| format!("loading {}", path.display()))
}

fn prompt_builder(a: &IntentsArgs) -> Result<PromptBuilder> {
    let template = match &a.template {
        Some(p) => PromptTemplate::from_file(p)?,
        None => PromptTemplate::paper(),
    };
    let options = PromptOptions {
        k: a.k,
        last_n: a.last_n,
        title_max_chars: a.title_cap,
        constrain: !a.no_constrain,
        min_intents: a.min_intents,
        max_intents: a.max_intents,
        ..Default::default()
    };
    PromptBuilder::new(template, options)
}

/// `dmsrec intents`.
pub fn intents(a: &IntentsArgs) -> Result<()> {
    let started = Instant::now();
    let split = a.split.name();

    // Inputs first, so that a wrong path fails before any model is loaded.
    let ds = tsv::read_dataset(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let examples: &[Example] = match a.split {
        StageSplit::Train => &ds.train,
        StageSplit::Test => &ds.test,
    };
    let cands = read_candidates(&a.candidates)?;
    check_aligned(&cands, examples).with_context(|| {
        format!("{} vs the {split} split of {}", a.candidates.display(), a.data.display())
    })?;
    let n_items = ds.catalog.n_items() as u32;
    if let Some((i, id)) =
        cands.iter().enumerate().find_map(|(i, row)| row.iter().find(|&&id| id > n_items).map(|&id| (i, id)))
    {
        bail!("{}:{}: item {id} is not in the catalog of {n_items} items", a.candidates.display(), i + 1);
    }
    let builder = prompt_builder(a)?;
    let selected = select_indices(examples.len(), a.sample, a.seed, a.limit)?;
    ensure!(!selected.is_empty(), "no examples selected ({} in the {split} split)", examples.len());
    let prompts: Vec<RenderedPrompt> =
        selected.iter().map(|&i| builder.render(&ds.catalog, &examples[i].prefix, &cands[i])).collect();

    let encoder_dir = a.encoder.clone().unwrap_or_else(default_encoder);
    require_encoder_dir(&encoder_dir)?;
    let enc_opts =
        EncoderOptions { pooling: a.pooling, batch_size: a.encoder_batch.max(1), ..Default::default() };
    let mut encoder = TextEncoder::load(&encoder_dir, enc_opts)?;

    let mut backend = match (&a.replay, a.backend) {
        (Some(file), _) => {
            let items = read_intent_items(file)?;
            let answers = selected
                .iter()
                .zip(&prompts)
                .map(|(i, p)| {
                    let ids = items
                        .get(i)
                        .with_context(|| format!("{}: no line for example {i}", file.display()))?;
                    let titles: Vec<&str> = ids.iter().map(|&id| ds.catalog.prompt_title(id)).collect();
                    Ok((p.request.clone(), titles.join("; ")))
                })
                .collect::<Result<Vec<_>>>()?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Backend::Replay(ReplayBackend::new(format!("replay:{name}"), answers))
        }
        (None, BackendKind::Gguf) => {
            let path = a.model.clone().unwrap_or_else(default_gguf);
            Backend::Gguf(Box::new(load_gguf(&path, a.weights)?))
        }
        (None, BackendKind::Http) => {
            let mut cfg = HttpConfig {
                model: a.model_name.clone(),
                api_key_env: a.api_key_env.clone(),
                concurrency: a.concurrency.max(1),
                guided: a.guided,
                ..Default::default()
            };
            if !a.urls.is_empty() {
                cfg.base_urls = a.urls.clone();
            }
            Backend::Http(HttpBackend::new(cfg)?)
        }
    };
    let model_id = backend.as_dyn().model_id();
    let chunk = a.chunk.unwrap_or(match a.backend {
        BackendKind::Gguf => 8,
        BackendKind::Http => 2 * a.concurrency.max(1),
    });
    ensure!(chunk > 0, "--chunk must be at least 1");
    let settings =
        GenerationSettings { max_new_tokens: a.max_new_tokens, temperature: a.temperature, seed: a.gen_seed };

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let cache_path = a.out.join("answers.sqlite");
    let mut cache = AnswerCache::open(&cache_path)?;
    let settings_key = settings_json(&settings);
    let hashes: Vec<String> = prompts.iter().map(|p| p.hash.clone()).collect();
    let already = cache.get_many(&model_id, &settings_key, &hashes)?.iter().filter(|c| c.is_some()).count();
    let total = prompts.len();
    eprintln!(
        "intents: {total} {split} prompts ({already} already answered) with {model_id}, k = {}, cache {}",
        a.k,
        cache_path.display()
    );

    // Answers: a chunk at a time, each stored before the next is generated.
    let bar = ProgressBar::new((total - already) as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} prompts {per_sec} eta {eta}")
            .expect("valid progress template"),
    );
    bar.set_message("LLM answers");
    let requests: Vec<ChatRequest> = prompts.iter().map(|p| p.request.clone()).collect();
    let one_by_one = matches!(backend, Backend::Gguf(_) | Backend::Replay(_));
    let (mut hits, mut generated) = (0usize, 0usize);
    let mut completions: Vec<Completion> = Vec::with_capacity(total);
    let gen_start = Instant::now();
    let gen_result = with_bar_logging(&bar, || -> Result<()> {
        let mut counting = Counting { inner: backend.as_dyn(), bar: &bar, one_by_one };
        for part in requests.chunks(chunk) {
            let run = generate_cached(&mut counting, &mut cache, part, &settings, chunk)?;
            hits += run.hits;
            generated += run.generated;
            completions.extend(run.completions);
            if bar.is_hidden() && run.generated > 0 {
                let rate = generated as f64 / gen_start.elapsed().as_secs_f64().max(1e-9);
                let left = (total - already).saturating_sub(generated);
                eprintln!(
                    "intents: {}/{total} prompts answered ({hits} cached, {generated} generated and stored), \
                     {rate:.3} prompts/s, eta {:.0} s",
                    completions.len(),
                    left as f64 / rate
                );
            }
        }
        Ok(())
    });
    let gen_secs = gen_start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    gen_result?;
    ensure!(completions.len() == total, "{} answers for {total} prompts", completions.len());

    // Parse: intents matched to the prompt's candidates, explicit when a session item.
    let popts = ParseOptions { fuzzy_threshold: a.fuzzy_threshold, ..Default::default() };
    let parsed: Vec<ParsedAnswer> = prompts
        .iter()
        .zip(&completions)
        .map(|(p, c)| Matcher::new(&p.candidates, &p.session, popts.clone()).parse(&c.text))
        .collect();
    let stats = ParseStats::from_answers(&parsed);

    // Eq. 6–7.
    let per_example: Vec<Vec<(String, bool)>> =
        parsed.iter().map(|p| p.intents.iter().map(|i| (i.text.clone(), i.explicit)).collect()).collect();
    let enc_start = Instant::now();
    let emb = embed_intents(&mut encoder, &per_example)?;
    let enc_secs = enc_start.elapsed().as_secs_f64();
    let emb_stats = emb.stats();

    // Outputs.
    let jsonl_path = a.out.join(format!("intents_{split}.jsonl"));
    let mut text = String::new();
    for ((&i, c), p) in selected.iter().zip(&completions).zip(&parsed) {
        text.push_str(&serde_json::to_string(&intents_line(i, &examples[i], &c.text, p))?);
        text.push('\n');
    }
    write_bytes_atomic(&jsonl_path, text.as_bytes())?;
    let items: IntentItems = selected
        .iter()
        .zip(&parsed)
        .map(|(&i, p)| (i, p.intents.iter().filter_map(|x| x.item).collect()))
        .collect();
    write_intent_items(&a.out.join(format!("intent_items_{split}.tsv")), &items)?;
    let emb_path = a.out.join(format!("embeddings_{split}.safetensors"));
    let targets: Vec<u32> = selected.iter().map(|&i| examples[i].target).collect();
    write_embeddings(&emb_path, &emb, &selected, &targets)?;

    let (prefill, decode, gguf_stats) = match &backend {
        Backend::Gguf(m) if generated > 0 => {
            let (p, d) = gguf_speeds(m.stats());
            (p, d, Some(serde_json::to_value(m.stats())?))
        }
        _ => (None, None, None),
    };
    let prompt_tokens: usize = completions.iter().map(|c| c.prompt_tokens).sum();
    let completion_tokens: usize = completions.iter().map(|c| c.completion_tokens).sum();
    let latent_share = if stats.intents > 0 { stats.latent as f64 / stats.intents as f64 } else { 0.0 };
    // LLM time over every run that generated answers for this output (resumed runs add up).
    let summary_path = a.out.join(format!("summary_{split}.json"));
    let earlier_llm_s = std::fs::read(&summary_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|v| v["model"] == model_id.as_str())
        .and_then(|v| v["llm_s_total"].as_f64().or(v["generation_s"].as_f64()))
        .unwrap_or(0.0);
    let llm_s_total = earlier_llm_s + if generated > 0 { gen_secs } else { 0.0 };
    let summary = json!({
        "split": split,
        "examples": total,
        "split_examples": examples.len(),
        "data": a.data.display().to_string(),
        "candidates": a.candidates.display().to_string(),
        "backend": backend.name(),
        "model": model_id,
        "gguf": match &backend { Backend::Gguf(m) => serde_json::to_value(m.info())?, _ => Value::Null },
        "k": a.k,
        "prompt_options": builder.options,
        "template": a.template.as_ref().map(|p| p.display().to_string()),
        "generation": settings,
        "selection": {"limit": a.limit, "sample": a.sample, "seed": a.seed, "first": selected.first(), "last": selected.last()},
        "valid_rate": stats.parseable_rate(),
        "exact_share": stats.exact_rate(),
        "fuzzy_share": stats.fuzzy_rate(),
        "free_share": stats.free_rate(),
        "explicit_share": stats.explicit_share(),
        "latent_share": latent_share,
        "mean_intents": stats.mean_intents_per_answer(),
        "parse": stats,
        "mean_prompt_tokens": prompt_tokens as f64 / total as f64,
        "mean_answer_tokens": completion_tokens as f64 / total as f64,
        "prompts_per_s": per_s(generated, gen_secs),
        "s_per_prompt": per_s(generated, gen_secs).map(|r| 1.0 / r),
        "prefill_tok_s": prefill,
        "decode_tok_s": decode,
        "gguf_stats": gguf_stats,
        "encoder": {
            "dir": encoder_dir.display().to_string(),
            "description": encoder.describe(),
            "dim": encoder.dim(),
            "sentences": encoder.sentences_encoded(),
        },
        "encoder_sent_s": per_s(encoder.sentences_encoded(), enc_secs),
        "embeddings": {
            "rows": emb.len(),
            "dim": emb.dim,
            "empty": emb_stats.empty,
            "explicit_from_latent": emb_stats.explicit_from_latent,
            "latent_from_explicit": emb_stats.latent_from_explicit,
        },
        "cache": {"path": cache_path.display().to_string(), "hits": hits, "generated": generated},
        "generation_s": gen_secs,
        "llm_s_total": llm_s_total,
        "wall_s": started.elapsed().as_secs_f64(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "command": command_line(),
        "git": git_revision(),
    });
    write_atomic(&summary_path, |w| {
        serde_json::to_writer_pretty(&mut *w, &summary)?;
        w.write_all(b"\n")
    })?;

    println!("{split}: {total} examples, {hits} answers from the cache, {generated} generated");
    println!(
        "valid answers {:.1}%, {:.2} intents/answer (exact {:.1}%, fuzzy {:.1}%, free {:.1}%), explicit {:.1}%, latent {:.1}%",
        100.0 * stats.parseable_rate(),
        stats.mean_intents_per_answer(),
        100.0 * stats.exact_rate(),
        100.0 * stats.fuzzy_rate(),
        100.0 * stats.free_rate(),
        100.0 * stats.explicit_share(),
        100.0 * latent_share
    );
    if let Some(r) = per_s(generated, gen_secs) {
        let speeds = match (prefill, decode) {
            (Some(p), Some(d)) => format!(", prefill {p:.1} tok/s, decode {d:.1} tok/s"),
            _ => String::new(),
        };
        println!("LLM {r:.3} prompts/s ({:.2} s/prompt){speeds}", 1.0 / r);
    }
    println!(
        "embeddings {} x {} ({} without intents) -> {}",
        emb.len(),
        emb.dim,
        emb_stats.empty,
        emb_path.display()
    );
    println!("-> {}, {}", jsonl_path.display(), summary_path.display());
    Ok(())
}

/// `dmsrec bench intents`.
pub fn bench(a: &BenchIntentsArgs) -> Result<()> {
    let ds = tsv::read_dataset(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let cand_path = match &a.candidates {
        Some(p) => p.clone(),
        None => {
            let p = a.data.join("test_candidates.tsv");
            ensure!(
                p.is_file(),
                "{} has no test_candidates.tsv: pass --candidates FILE (e.g. from `dmsrec candidates --split test`)",
                a.data.display()
            );
            p
        }
    };
    let cands = read_candidates(&cand_path)?;
    check_aligned(&cands, &ds.test).with_context(|| format!("{} vs the test split", cand_path.display()))?;
    let n = a.prompts.min(ds.test.len());
    ensure!(n > 0, "no test examples");
    let builder =
        PromptBuilder::new(PromptTemplate::paper(), PromptOptions { k: a.k, ..Default::default() })?;
    let prompts: Vec<RenderedPrompt> =
        (0..n).map(|i| builder.render(&ds.catalog, &ds.test[i].prefix, &cands[i])).collect();
    let mut requests: Vec<ChatRequest> = prompts.iter().map(|p| p.request.clone()).collect();
    if a.unconstrained {
        requests.iter_mut().for_each(|r| r.constraint = None);
    }
    ensure!(a.batch.iter().all(|&b| b > 0), "--batch sizes must be at least 1");
    let settings = GenerationSettings { max_new_tokens: a.max_new_tokens, ..Default::default() };

    let mut formats = a.weights.clone();
    if a.requantize {
        for f in [WeightFormat::Native, WeightFormat::Q8_0] {
            if !formats.contains(&f) {
                formats.push(f);
            }
        }
    }
    let model_path = a.model.clone().unwrap_or_else(default_gguf);
    require_model_file(&model_path)?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    println!(
        "bench intents: {n} test prompts of {} ({} candidates each), {}, greedy, max {} new tokens, threads {threads}",
        ds.name,
        a.k,
        if a.unconstrained { "free text" } else { "constrained" },
        a.max_new_tokens
    );
    let mut llm_rows = Vec::new();
    for fmt in formats {
        let mut m = load_gguf(&model_path, fmt)?;
        let load_s = m.stats().load_secs;
        println!(
            "LLM {} (weights {} -> {}, file {}), loaded in {load_s:.1} s",
            m.info().file,
            fmt.as_str(),
            m.info().weights.as_str(),
            m.info().file_weight_type
        );
        // Warm-up (also computes the shared system prefix), not timed.
        m.generate(&requests[..1], &settings)?;
        for &batch in &a.batch {
            m.reset_stats();
            let t = Instant::now();
            let mut answers = Vec::with_capacity(n);
            for part in requests.chunks(batch) {
                answers.extend(m.generate(part, &settings)?);
            }
            let wall = t.elapsed().as_secs_f64();
            let s = m.stats().clone();
            let parsed: Vec<ParsedAnswer> = prompts
                .iter()
                .zip(&answers)
                .map(|(p, c)| Matcher::new(&p.candidates, &p.session, ParseOptions::default()).parse(&c.text))
                .collect();
            let ps = ParseStats::from_answers(&parsed);
            let mean_prompt_tokens = s.prompt_tokens as f64 / s.prompts.max(1) as f64;
            let row = json!({
                "weights": fmt.as_str(),
                "resolved_weights": m.info().weights.as_str(),
                "file_weight_type": m.info().file_weight_type,
                "model": m.model_id(),
                "load_s": load_s,
                "prompts": n,
                "batch": batch,
                "constrained": !a.unconstrained,
                "mean_prompt_tokens": mean_prompt_tokens,
                "mean_prefilled_tokens": s.prefill_tokens as f64 / s.prompts.max(1) as f64,
                "mean_answer_tokens": s.completion_tokens as f64 / s.prompts.max(1) as f64,
                "prefill_tok_s": s.prefill_tok_per_s(),
                "decode_tok_s": s.decode_tok_per_s(),
                "prefill_s": s.prefill_secs,
                "decode_s": s.decode_secs,
                "prompts_per_s": n as f64 / wall,
                "s_per_prompt": wall / n as f64,
                "valid_rate": ps.parseable_rate(),
                "explicit_share": ps.explicit_share(),
                "mean_intents": ps.mean_intents_per_answer(),
                "stats": s,
            });
            println!(
                "  batch {batch}: prompt {mean_prompt_tokens:.1} tokens ({} reused from the system prefix)",
                s.prefix_reused_tokens / s.prompts.max(1)
            );
            println!("    prefill            {:.1} tok/s ({:.1} s)", s.prefill_tok_per_s(), s.prefill_secs);
            println!(
                "    decode             {:.1} tok/s ({:.1} s, {:.1} answer tokens/prompt, {} passes)",
                s.decode_tok_per_s(),
                s.decode_secs,
                s.completion_tokens as f64 / s.prompts.max(1) as f64,
                s.decode_passes
            );
            println!(
                "    prompts            {:.3} prompts/s ({:.2} s/prompt)",
                n as f64 / wall,
                wall / n as f64
            );
            println!(
                "    answers            {:.0}% valid, {:.2} intents/answer, explicit {:.1}%",
                100.0 * ps.parseable_rate(),
                ps.mean_intents_per_answer(),
                100.0 * ps.explicit_share()
            );
            llm_rows.push(row);
        }
    }

    let encoder_row = if a.no_encoder {
        Value::Null
    } else {
        let dir = a.encoder.clone().unwrap_or_else(default_encoder);
        require_encoder_dir(&dir)?;
        let mut enc = TextEncoder::load(
            &dir,
            EncoderOptions { batch_size: a.encoder_batch.max(1), ..Default::default() },
        )?;
        let titles = catalog_prompt_titles(&ds.catalog);
        let b = bench_encoder(&mut enc, &titles)?;
        println!(
            "encoder {}: {} titles, batch {}, threads {threads}: {:.1} sentences/s{}",
            enc.describe(),
            b.sentences,
            enc.batch_size(),
            b.sentences_per_s(),
            b.sentences_per_cpu_s().map(|r| format!(" ({r:.1} per CPU second)")).unwrap_or_default()
        );
        json!({
            "dir": dir.display().to_string(),
            "description": enc.describe(),
            "sentences": b.sentences,
            "batch": enc.batch_size(),
            "wall_s": b.wall_s,
            "sentences_per_s": b.sentences_per_s(),
            "sentences_per_cpu_s": b.sentences_per_cpu_s(),
        })
    };
    if let Some(path) = &a.json {
        let out = json!({
            "data": a.data.display().to_string(),
            "candidates": cand_path.display().to_string(),
            "prompts": n,
            "k": a.k,
            "max_new_tokens": a.max_new_tokens,
            "threads": threads,
            "llm": llm_rows,
            "encoder": encoder_row,
            "command": command_line(),
            "git": git_revision(),
        });
        write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &out)?;
            w.write_all(b"\n")
        })?;
        println!("-> {}", path.display());
    }
    Ok(())
}

/// The prompt title of every catalog item (its display title when empty), in id order.
fn catalog_prompt_titles(catalog: &Catalog) -> Vec<String> {
    catalog
        .iter()
        .map(|(id, _)| {
            let t = catalog.prompt_title(id);
            if t.is_empty() { catalog.title(id) } else { t }.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_seeded_sorted_and_limited() {
        assert_eq!(select_indices(5, None, 1, None).unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(select_indices(5, None, 1, Some(2)).unwrap(), vec![0, 1]);
        let a = select_indices(100, Some(0.1), 7, None).unwrap();
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, select_indices(100, Some(0.1), 7, None).unwrap());
        assert_ne!(a, select_indices(100, Some(0.1), 8, None).unwrap());
        assert_eq!(select_indices(100, Some(0.1), 7, Some(3)).unwrap(), a[..3].to_vec());
        assert!(select_indices(10, Some(0.0), 1, None).is_err());
        assert_eq!(select_indices(10, Some(0.01), 1, None).unwrap().len(), 1);
    }
}
