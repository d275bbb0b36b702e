//! Phase II of LLM-DMsRec (paper sections 4.1–4.2) as a resumable stage, and the files it leaves.
//!
//! [`intents`]: prompts for the selected examples of a split → LLM answers (cached in
//! `OUT/answers.sqlite`, stored a chunk at a time, so a killed run loses at most one chunk) →
//! intents matched to candidates, explicit vs latent (Eq. 5) → E_e / E_l per example (Eq. 6–7).
//!
//! Outputs, each written atomically (temporary file in `OUT`, renamed into place):
//! * `intents_<split>.jsonl`: one line per selected example, in ascending example order;
//! * `intent_items_<split>.tsv`: the intents' item ids, replayable with [`AnswerSource::Replay`];
//! * `embeddings_<split>.safetensors`: a [`SplitEmbeddings`], read back as fusion features by
//!   [`load_intent_features`];
//! * `summary_<split>.json`: rates, speeds, cache counts and provenance.

use crate::provenance::{command_line, git_revision};
use anyhow::{bail, ensure, Context, Result};
use candle_core::Device;
use dmsrec_data::atomic::{write_atomic, write_bytes_atomic};
use dmsrec_data::{tsv, Dataset, Example};
use dmsrec_intent::cache::{generate_cached, settings_json, AnswerCache};
use dmsrec_intent::candidates::{check_aligned, read_candidates};
use dmsrec_intent::embed::{embed_intents, SplitEmbeddings};
use dmsrec_intent::encoder::{models_root, EncoderOptions, TextEncoder};
use dmsrec_intent::gguf::{GgufLlm, GgufOptions, GgufStats, WeightFormat};
use dmsrec_intent::http::{HttpBackend, HttpConfig};
use dmsrec_intent::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use dmsrec_intent::parse::{MatchKind, Matcher, ParseOptions, ParseStats, ParsedAnswer};
use dmsrec_intent::prompt::{PromptBuilder, PromptOptions, PromptTemplate, RenderedPrompt};
use dmsrec_intent::replay::{read_intent_items, write_intent_items, IntentItems, ReplayBackend};
use dmsrec_train::checkpoint::FusionRecord;
use dmsrec_train::fusion::{FusionConfig, IntentFeatures, IntentRow, IntentUse, SplitIntents};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where scripts/fetch-models.sh puts SmolLM2, under the models root.
const SMOLLM2_FILE: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// The GGUF model of the default source: SmolLM2-135M under the models root.
pub fn default_gguf() -> PathBuf {
    models_root().join(SMOLLM2_FILE)
}

/// Which of a dataset's splits a stage works on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    pub fn examples(self, ds: &Dataset) -> &[Example] {
        match self {
            Split::Train => &ds.train,
            Split::Test => &ds.test,
        }
    }
}

/// Where the answers come from.
#[derive(Debug, Clone)]
pub enum AnswerSource {
    /// An in-process GGUF model (constrained decoding built in).
    Gguf { model: PathBuf, weights: WeightFormat },
    /// OpenAI-compatible chat-completions server(s).
    Http(HttpConfig),
    /// Finished intents replayed from an `intent_items_<split>.tsv` of an earlier run (example
    /// index, intent item ids), answered as those items' titles.
    Replay(PathBuf),
}

/// Everything that defines one run of the intent stage.
#[derive(Debug, Clone)]
pub struct IntentsSpec {
    /// Dataset folder (its items.tsv prompt titles are what the LLM reads).
    pub data: PathBuf,
    /// Candidate file aligned with the split (one line per example).
    pub candidates: PathBuf,
    pub split: Split,
    /// Output folder.
    pub out: PathBuf,
    pub source: AnswerSource,
    /// Part of the cache key of every answer.
    pub generation: GenerationSettings,
    /// Prompts answered (and stored in the cache) per step; None: 2 × concurrency for HTTP, 8
    /// otherwise (the GGUF backend decodes a chunk together).
    pub chunk: Option<usize>,
    pub prompt: PromptOptions,
    /// Prompt template file (None: the paper's Prompt 1 + 2).
    pub template: Option<PathBuf>,
    /// Lowest similarity accepted as a fuzzy match of a free-text answer piece.
    pub fuzzy_threshold: f64,
    /// A seeded random share of the split's examples (kept in ascending order).
    pub sample: Option<f64>,
    pub sample_seed: u64,
    /// Only the first N selected examples.
    pub limit: Option<usize>,
    /// Sentence encoder folder.
    pub encoder: PathBuf,
    pub encoder_options: EncoderOptions,
}

impl IntentsSpec {
    /// The defaults of `dmsrec intents`: every example of the split, SmolLM2 greedy answers
    /// constrained to the first `k` candidates, MiniLM mean pooling.
    pub fn new(data: &Path, candidates: &Path, split: Split, out: &Path, k: usize) -> Self {
        Self {
            data: data.to_path_buf(),
            candidates: candidates.to_path_buf(),
            split,
            out: out.to_path_buf(),
            source: AnswerSource::Gguf { model: default_gguf(), weights: WeightFormat::Auto },
            generation: GenerationSettings::default(),
            chunk: None,
            prompt: PromptOptions { k, ..Default::default() },
            template: None,
            fuzzy_threshold: ParseOptions::default().fuzzy_threshold,
            sample: None,
            sample_seed: 2024,
            limit: None,
            encoder: dmsrec_intent::encoder::default_model_dir(),
            encoder_options: EncoderOptions::default(),
        }
    }

    fn chunk(&self) -> usize {
        self.chunk.unwrap_or(match &self.source {
            AnswerSource::Http(cfg) => 2 * cfg.concurrency.max(1),
            _ => 8,
        })
    }
}

/// What the stage reports while it works.
#[derive(Debug)]
pub enum IntentsEvent<'a> {
    /// Prompts are built and the backend is loaded.
    Started {
        split: Split,
        k: usize,
        prompts: usize,
        already_answered: usize,
        model: &'a str,
        cache: &'a Path,
    },
    /// This many more prompts were answered by the backend (not the cache).
    Answered(usize),
    /// A chunk that needed the backend is stored.
    Stored { answered: usize, prompts: usize, hits: usize, generated: usize, generation_s: f64 },
}

/// What a finished stage did, for its caller to print.
#[derive(Debug, Clone)]
pub struct IntentsOutcome {
    pub split: Split,
    pub examples: usize,
    pub cache_hits: usize,
    pub generated: usize,
    pub parse: ParseStats,
    pub latent_share: f64,
    pub prompts_per_s: Option<f64>,
    pub prefill_tok_s: Option<f64>,
    pub decode_tok_s: Option<f64>,
    pub embedding_rows: usize,
    pub embedding_dim: usize,
    /// Examples without any intent (zero rows).
    pub without_intents: usize,
    pub jsonl: PathBuf,
    pub embeddings: PathBuf,
    pub summary: PathBuf,
}

/// Example indices of a split of `n`: a seeded `fraction` of them (ascending), then the first
/// `limit`.
pub fn select_indices(n: usize, sample: Option<f64>, seed: u64, limit: Option<usize>) -> Result<Vec<usize>> {
    let mut idx: Vec<usize> = match sample {
        None => (0..n).collect(),
        Some(f) => {
            ensure!(f > 0.0 && f <= 1.0, "the sample share must be in (0, 1], got {f}");
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

/// Refuses a GGUF path that is not a file, naming the fix.
pub fn require_model_file(path: &Path) -> Result<()> {
    ensure!(
        path.is_file(),
        "GGUF model {} not found: run scripts/fetch-models.sh (or pass --model)",
        path.display()
    );
    Ok(())
}

/// Refuses an encoder folder without its config and weights, naming the fix.
pub fn require_encoder_dir(dir: &Path) -> Result<()> {
    ensure!(
        dir.join("config.json").is_file() && dir.join("model.safetensors").is_file(),
        "encoder folder {} not found or incomplete: run scripts/fetch-models.sh (or pass --encoder)",
        dir.display()
    );
    Ok(())
}

pub fn load_gguf(path: &Path, weights: WeightFormat) -> Result<GgufLlm> {
    require_model_file(path)?;
    let opts = GgufOptions { weights, ..Default::default() };
    GgufLlm::load(path, &opts).with_context(|| format!("loading {}", path.display()))
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

/// Reports answered prompts; the GGUF and replay backends are fed one prompt at a time so that
/// progress moves per prompt (GGUF decodes them one after the other anyway).
struct Counting<'a> {
    inner: &'a mut dyn LlmBackend,
    on_event: &'a dyn Fn(IntentsEvent),
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
                (self.on_event)(IntentsEvent::Answered(1));
            }
            Ok(out)
        } else {
            let out = self.inner.generate(requests, settings)?;
            (self.on_event)(IntentsEvent::Answered(requests.len()));
            Ok(out)
        }
    }
}

fn per_s(n: usize, secs: f64) -> Option<f64> {
    (n > 0 && secs > 0.0).then(|| n as f64 / secs)
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

fn prompt_builder(spec: &IntentsSpec) -> Result<PromptBuilder> {
    let template = match &spec.template {
        Some(p) => PromptTemplate::from_file(p)?,
        None => PromptTemplate::paper(),
    };
    PromptBuilder::new(template, spec.prompt.clone())
}

/// Runs the intent stage (resuming from the answer cache in `spec.out`).
pub fn intents(spec: &IntentsSpec, on_event: &dyn Fn(IntentsEvent)) -> Result<IntentsOutcome> {
    let started = Instant::now();
    let split = spec.split.name();

    // Inputs first, so that a wrong path fails before any model is loaded.
    let ds = tsv::read_dataset(&spec.data).with_context(|| format!("reading {}", spec.data.display()))?;
    let examples = spec.split.examples(&ds);
    let cands = read_candidates(&spec.candidates)?;
    check_aligned(&cands, examples).with_context(|| {
        format!("{} vs the {split} split of {}", spec.candidates.display(), spec.data.display())
    })?;
    let n_items = ds.catalog.n_items() as u32;
    if let Some((i, id)) =
        cands.iter().enumerate().find_map(|(i, row)| row.iter().find(|&&id| id > n_items).map(|&id| (i, id)))
    {
        bail!("{}:{}: item {id} is not in the catalog of {n_items} items", spec.candidates.display(), i + 1);
    }
    let builder = prompt_builder(spec)?;
    let selected = select_indices(examples.len(), spec.sample, spec.sample_seed, spec.limit)?;
    ensure!(!selected.is_empty(), "no examples selected ({} in the {split} split)", examples.len());
    let prompts: Vec<RenderedPrompt> =
        selected.iter().map(|&i| builder.render(&ds.catalog, &examples[i].prefix, &cands[i])).collect();

    require_encoder_dir(&spec.encoder)?;
    let mut encoder = TextEncoder::load(&spec.encoder, spec.encoder_options.clone())?;

    let mut backend = match &spec.source {
        AnswerSource::Replay(file) => {
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
        AnswerSource::Gguf { model, weights } => Backend::Gguf(Box::new(load_gguf(model, *weights)?)),
        AnswerSource::Http(cfg) => Backend::Http(HttpBackend::new(cfg.clone())?),
    };
    let model_id = backend.as_dyn().model_id();
    let chunk = spec.chunk();
    ensure!(chunk > 0, "the chunk of prompts must be at least 1");
    let settings = &spec.generation;

    std::fs::create_dir_all(&spec.out).with_context(|| format!("creating {}", spec.out.display()))?;
    let cache_path = spec.out.join("answers.sqlite");
    let mut cache = AnswerCache::open(&cache_path)?;
    let settings_key = settings_json(settings);
    let hashes: Vec<String> = prompts.iter().map(|p| p.hash.clone()).collect();
    let already = cache.get_many(&model_id, &settings_key, &hashes)?.iter().filter(|c| c.is_some()).count();
    let total = prompts.len();
    on_event(IntentsEvent::Started {
        split: spec.split,
        k: spec.prompt.k,
        prompts: total,
        already_answered: already,
        model: &model_id,
        cache: &cache_path,
    });

    // Answers: a chunk at a time, each stored before the next is generated.
    let requests: Vec<ChatRequest> = prompts.iter().map(|p| p.request.clone()).collect();
    let one_by_one = matches!(backend, Backend::Gguf(_) | Backend::Replay(_));
    let (mut hits, mut generated) = (0usize, 0usize);
    let mut completions: Vec<Completion> = Vec::with_capacity(total);
    let gen_start = Instant::now();
    {
        let mut counting = Counting { inner: backend.as_dyn(), on_event, one_by_one };
        for part in requests.chunks(chunk) {
            let run = generate_cached(&mut counting, &mut cache, part, settings, chunk)?;
            hits += run.hits;
            generated += run.generated;
            completions.extend(run.completions);
            if run.generated > 0 {
                on_event(IntentsEvent::Stored {
                    answered: completions.len(),
                    prompts: total,
                    hits,
                    generated,
                    generation_s: gen_start.elapsed().as_secs_f64(),
                });
            }
        }
    }
    let gen_secs = gen_start.elapsed().as_secs_f64();
    ensure!(completions.len() == total, "{} answers for {total} prompts", completions.len());

    // Parse: intents matched to the prompt's candidates, explicit when a session item.
    let popts = ParseOptions { fuzzy_threshold: spec.fuzzy_threshold, ..Default::default() };
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
    let jsonl_path = spec.out.join(format!("intents_{split}.jsonl"));
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
    write_intent_items(&spec.out.join(format!("intent_items_{split}.tsv")), &items)?;
    let emb_path = spec.out.join(format!("embeddings_{split}.safetensors"));
    let (embedding_rows, embedding_dim) = (emb.len(), emb.dim);
    let file = SplitEmbeddings {
        embeddings: emb,
        index: selected.iter().map(|&i| u32::try_from(i)).collect::<Result<_, _>>()?,
        targets: selected.iter().map(|&i| examples[i].target).collect(),
    };
    file.write(&emb_path)?;

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
    let summary_path = spec.out.join(format!("summary_{split}.json"));
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
        "data": spec.data.display().to_string(),
        "candidates": spec.candidates.display().to_string(),
        "backend": backend.name(),
        "model": model_id,
        "gguf": match &backend { Backend::Gguf(m) => serde_json::to_value(m.info())?, _ => Value::Null },
        "k": spec.prompt.k,
        "prompt_options": builder.options,
        "template": spec.template.as_ref().map(|p| p.display().to_string()),
        "generation": settings,
        "selection": {"limit": spec.limit, "sample": spec.sample, "seed": spec.sample_seed, "first": selected.first(), "last": selected.last()},
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
            "dir": spec.encoder.display().to_string(),
            "description": encoder.describe(),
            "dim": encoder.dim(),
            "sentences": encoder.sentences_encoded(),
        },
        "encoder_sent_s": per_s(encoder.sentences_encoded(), enc_secs),
        "embeddings": {
            "rows": embedding_rows,
            "dim": embedding_dim,
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
    Ok(IntentsOutcome {
        split: spec.split,
        examples: total,
        cache_hits: hits,
        generated,
        parse: stats,
        latent_share,
        prompts_per_s: per_s(generated, gen_secs),
        prefill_tok_s: prefill,
        decode_tok_s: decode,
        embedding_rows,
        embedding_dim,
        without_intents: emb_stats.empty,
        jsonl: jsonl_path,
        embeddings: emb_path,
        summary: summary_path,
    })
}

/// LLM intents to fuse into a backbone: the fusion config and each split's features.
pub struct FusionSetup {
    pub cfg: FusionConfig,
    /// The intent stage's output folder the features came from.
    pub source: PathBuf,
    pub intents: SplitIntents,
}

impl FusionSetup {
    /// What checkpoints and results files record of it.
    pub fn record(&self) -> FusionRecord {
        FusionRecord { config: self.cfg.clone(), intents: self.source.clone() }
    }
}

/// One split's intent features from the intent stage's `embeddings_<split>.safetensors` in `dir`
/// (rows for a subset of the split's `examples`, named by its `index` tensor), and their width.
/// A row whose recorded target is not its example's target is refused: the file was made for
/// another split or dataset.
pub fn load_intent_features(
    dir: &Path,
    split: &str,
    examples: &[Example],
    usage: IntentUse,
) -> Result<(IntentFeatures, usize)> {
    let path = dir.join(format!("embeddings_{split}.safetensors"));
    let SplitEmbeddings { embeddings: emb, index, targets } = SplitEmbeddings::read(&path)?;
    for (r, (&i, &target)) in index.iter().zip(&targets).enumerate() {
        let example = examples.get(i as usize).with_context(|| {
            format!(
                "{}: row {r} is example {i}, but the {split} split has {}",
                path.display(),
                examples.len()
            )
        })?;
        ensure!(
            example.target == target,
            "{}: row {r} (example {i}) has target {target}, but the {split} split's example {i} has {}",
            path.display(),
            example.target
        );
    }
    let rows = index.iter().enumerate().map(|(r, &i)| {
        let has_any = emb.mask[r] == 1;
        (
            i as usize,
            IntentRow {
                explicit: emb.explicit_row(r),
                latent: emb.latent_row(r),
                has_explicit: has_any && emb.explicit_from_latent[r] == 0,
                has_latent: has_any && emb.latent_from_explicit[r] == 0,
            },
        )
    });
    let features = IntentFeatures::new(examples.len(), emb.dim, usage, rows, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((features, emb.dim))
}

/// Both splits' intent features from the intent stage's folder `dir`, and their width.
pub fn load_split_intents(dir: &Path, ds: &Dataset, usage: IntentUse) -> Result<(SplitIntents, usize)> {
    let (train, dim) = load_intent_features(dir, "train", &ds.train, usage)?;
    let (test, test_dim) = load_intent_features(dir, "test", &ds.test, usage)?;
    ensure!(dim == test_dim, "{}: train intents are {dim} wide, test intents {test_dim}", dir.display());
    Ok((SplitIntents { train, test }, dim))
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
