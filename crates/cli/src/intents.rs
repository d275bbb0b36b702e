//! `dmsrec intents` (phase II from the command line: the stage is `dmsrec_pipeline::intents`,
//! here its arguments, progress bar and summary lines) and `dmsrec bench intents`: the embedded
//! backend on a fixed set of ML-1M test prompts, no cache, then the encoder's sentences/s on the
//! catalog's prompt titles.

use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};
use dmsrec_data::atomic::write_atomic;
use dmsrec_data::{tsv, Catalog};
use dmsrec_intent::candidates::{check_aligned, read_candidates};
use dmsrec_intent::encoder::{bench_encoder, EncoderOptions, Pooling, TextEncoder};
use dmsrec_intent::gguf::WeightFormat;
use dmsrec_intent::http::{Guided, HttpConfig};
use dmsrec_intent::llm::{ChatRequest, GenerationSettings, LlmBackend};
use dmsrec_intent::parse::{Matcher, ParseOptions, ParseStats, ParsedAnswer};
use dmsrec_intent::prompt::{PromptBuilder, PromptOptions, PromptTemplate, RenderedPrompt};
use dmsrec_pipeline::intents::{
    default_gguf, load_gguf, require_encoder_dir, require_model_file, AnswerSource, IntentsEvent,
    IntentsOutcome, IntentsSpec,
};
use dmsrec_pipeline::provenance::{command_line, git_revision};
use dmsrec_pipeline::Split;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
    pub split: Split,
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

impl IntentsArgs {
    /// The stage's spec: these arguments over [`IntentsSpec::new`]'s defaults.
    pub fn spec(&self) -> IntentsSpec {
        let source = match (&self.replay, self.backend) {
            (Some(file), _) => AnswerSource::Replay(file.clone()),
            (None, BackendKind::Gguf) => AnswerSource::Gguf {
                model: self.model.clone().unwrap_or_else(default_gguf),
                weights: self.weights,
            },
            (None, BackendKind::Http) => {
                let mut cfg = HttpConfig {
                    model: self.model_name.clone(),
                    api_key_env: self.api_key_env.clone(),
                    concurrency: self.concurrency.max(1),
                    guided: self.guided,
                    ..Default::default()
                };
                if !self.urls.is_empty() {
                    cfg.base_urls = self.urls.clone();
                }
                AnswerSource::Http(cfg)
            }
        };
        let defaults = IntentsSpec::new(&self.data, &self.candidates, self.split, &self.out, self.k);
        IntentsSpec {
            source,
            generation: GenerationSettings {
                max_new_tokens: self.max_new_tokens,
                temperature: self.temperature,
                seed: self.gen_seed,
            },
            chunk: self.chunk,
            prompt: PromptOptions {
                k: self.k,
                last_n: self.last_n,
                title_max_chars: self.title_cap,
                constrain: !self.no_constrain,
                min_intents: self.min_intents,
                max_intents: self.max_intents,
                ..Default::default()
            },
            template: self.template.clone(),
            fuzzy_threshold: self.fuzzy_threshold,
            sample: self.sample,
            sample_seed: self.seed,
            limit: self.limit,
            encoder: self.encoder.clone().unwrap_or(defaults.encoder.clone()),
            encoder_options: EncoderOptions {
                pooling: self.pooling,
                batch_size: self.encoder_batch.max(1),
                ..Default::default()
            },
            ..defaults
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

/// Runs the stage under a progress bar of answered prompts (log lines above it), then prints
/// the summary.
pub fn run(spec: &IntentsSpec) -> Result<()> {
    let progress = IntentsProgress::default();
    let outcome = with_bar_logging(&progress.bar, || {
        dmsrec_pipeline::intents::intents(spec, &|e| progress.on_event(e))
    });
    progress.bar.finish_and_clear();
    print_outcome(&outcome?);
    Ok(())
}

/// Draws the intent stage's progress: a bar of answered prompts, or a line per stored chunk when
/// stderr is not a terminal.
pub struct IntentsProgress {
    pub bar: ProgressBar,
}

impl Default for IntentsProgress {
    fn default() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} prompts {per_sec} eta {eta}")
                .expect("valid progress template"),
        );
        bar.set_message("LLM answers");
        Self { bar }
    }
}

impl IntentsProgress {
    pub fn on_event(&self, event: IntentsEvent) {
        match event {
            IntentsEvent::Started { split, k, prompts, already_answered, model, cache } => {
                self.bar.set_length((prompts - already_answered) as u64);
                self.bar.suspend(|| {
                    eprintln!(
                        "intents: {prompts} {} prompts ({already_answered} already answered) with {model}, k = {k}, cache {}",
                        split.name(),
                        cache.display()
                    )
                });
            }
            IntentsEvent::Answered(n) => self.bar.inc(n as u64),
            IntentsEvent::Stored { answered, prompts, hits, generated, generation_s }
                if self.bar.is_hidden() =>
            {
                let rate = generated as f64 / generation_s.max(1e-9);
                let left = (self.bar.length().unwrap_or(0) as usize).saturating_sub(generated);
                eprintln!(
                    "intents: {answered}/{prompts} prompts answered ({hits} cached, {generated} generated and stored), \
                     {rate:.3} prompts/s, eta {:.0} s",
                    left as f64 / rate
                );
            }
            IntentsEvent::Stored { .. } => {}
        }
    }
}

pub fn print_outcome(o: &IntentsOutcome) {
    let stats = &o.parse;
    println!(
        "{}: {} examples, {} answers from the cache, {} generated",
        o.split.name(),
        o.examples,
        o.cache_hits,
        o.generated
    );
    println!(
        "valid answers {:.1}%, {:.2} intents/answer (exact {:.1}%, fuzzy {:.1}%, free {:.1}%), explicit {:.1}%, latent {:.1}%",
        100.0 * stats.parseable_rate(),
        stats.mean_intents_per_answer(),
        100.0 * stats.exact_rate(),
        100.0 * stats.fuzzy_rate(),
        100.0 * stats.free_rate(),
        100.0 * stats.explicit_share(),
        100.0 * o.latent_share
    );
    if let Some(r) = o.prompts_per_s {
        let speeds = match (o.prefill_tok_s, o.decode_tok_s) {
            (Some(p), Some(d)) => format!(", prefill {p:.1} tok/s, decode {d:.1} tok/s"),
            _ => String::new(),
        };
        println!("LLM {r:.3} prompts/s ({:.2} s/prompt){speeds}", 1.0 / r);
    }
    println!(
        "embeddings {} x {} ({} without intents) -> {}",
        o.embedding_rows,
        o.embedding_dim,
        o.without_intents,
        o.embeddings.display()
    );
    println!("-> {}, {}", o.jsonl.display(), o.summary.display());
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
        let dir = a.encoder.clone().unwrap_or_else(dmsrec_intent::encoder::default_model_dir);
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
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        args: IntentsArgs,
    }

    /// The command's defaults are the library's: `dmsrec intents` with only the required
    /// arguments runs exactly the stage that `IntentsSpec::new` describes.
    #[test]
    fn argument_defaults_are_the_spec_defaults() {
        let parsed = Command::parse_from(["intents", "--data", "d", "--candidates", "c.tsv", "--out", "o"]);
        let want = IntentsSpec::new("d".as_ref(), "c.tsv".as_ref(), Split::Test, "o".as_ref(), 50);
        assert_eq!(format!("{:?}", parsed.args.spec()), format!("{want:?}"));
        let replay = Command::parse_from([
            "intents",
            "--data",
            "d",
            "--candidates",
            "c.tsv",
            "--out",
            "o",
            "--split",
            "train",
            "--k",
            "20",
            "--replay",
            "items.tsv",
        ]);
        let spec = replay.args.spec();
        assert!(matches!(&spec.source, AnswerSource::Replay(p) if p.as_os_str() == "items.tsv"));
        assert_eq!((spec.split, spec.prompt.k), (Split::Train, 20));
    }
}
