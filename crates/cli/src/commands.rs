//! The data, train, evaluate and recommend subcommands.

use crate::{ImportArgs, ImportFormat, JointArgs, ProtocolArg, ScheduleArg, TrainArgs};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::ValueEnum;
use dmsrec_data::{stats::stats as dataset_stats, tsv, Dataset};
use dmsrec_intent::candidates::top_k_of_row;
use dmsrec_models::{parse_device, DataShape, ModelConfig, ModelKind};
use dmsrec_pipeline::provenance::{command_line, git_revision, median, peak_rss_mb};
use dmsrec_pipeline::{load_intent_features, load_split_intents, FusionSetup, RunEvent, RunSpec};
use dmsrec_train::checkpoint::{self, CheckpointConfig};
use dmsrec_train::fusion::{FusionConfig, FusionRecipe, IntentFeatures, IntentUse, Recommender};
use dmsrec_train::run_files;
use dmsrec_train::trainer::{batch_scores, protocol_dir};
use dmsrec_train::{evaluate_ranks, Metrics, Protocol, RunResult, Schedule, TrainConfig, TrainEvent};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum)]
pub enum DownloadSource {
    #[value(name = "ml-1m")]
    Ml1m,
    Beauty,
}

pub fn import(a: &ImportArgs) -> Result<()> {
    let ds = match a.format {
        ImportFormat::Tsv => tsv::read_dataset(&a.input)?,
        ImportFormat::Pickle => dmsrec_data::pickle::read_pickle_dataset(&a.input, a.items.as_deref())?,
        ImportFormat::Ml1m => {
            let (ds, report) = dmsrec_data::movielens::read_movielens_with(&a.input, &Default::default())?;
            println!("{report:?}");
            ds
        }
        ImportFormat::Amazon => dmsrec_data::amazon::read_amazon(&a.input, a.meta.as_deref())?,
        ImportFormat::Csv => {
            let opts = dmsrec_data::csv::InteractionsOptions {
                session_gap_s: (a.gap > 0).then_some(a.gap as f64),
                prefix_augmentation: a.augment,
                ..Default::default()
            };
            dmsrec_data::csv::read_interactions(&a.input, a.items.as_deref(), &opts)?
        }
    };
    tsv::write_dataset(&a.out, &ds)?;
    println!("wrote {}", a.out.display());
    print_stats(&ds);
    Ok(())
}

fn print_stats(ds: &Dataset) {
    let s = dataset_stats(ds);
    println!(
        "{:<20} {:>9} {:>9} {:>10} {:>8} {:>8}",
        "dataset", "#train", "#test", "#clicks", "#items", "avg.len"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>10} {:>8} {:>8.2}",
        ds.name, s.train, s.test, s.clicks, s.items, s.avg_length
    );
    println!("training sessions: {}", ds.train_sequences.len());
}

pub fn stats(data: &Path) -> Result<()> {
    print_stats(&tsv::read_dataset(data)?);
    Ok(())
}

pub fn synth(out: &Path, cfg: &dmsrec_data::synth::SynthConfig) -> Result<()> {
    let ds = dmsrec_data::synth::generate(cfg);
    tsv::write_dataset(out, &ds)?;
    println!("wrote {}", out.display());
    print_stats(&ds);
    Ok(())
}

/// Writes a seeded sample of `data` to `out`, with `sample.json` naming the source lines it kept.
pub fn sample(data: &Path, out: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<()> {
    let (ds, index) = dmsrec_data::sample::sample(&tsv::read_dataset(data)?, n_train, n_test, seed)?;
    tsv::write_dataset(out, &ds)?;
    dmsrec_data::atomic::write_atomic(&out.join(dmsrec_data::sample::SAMPLE_INDEX), |w| {
        serde_json::to_writer(&mut *w, &index)?;
        writeln!(w)
    })?;
    println!(
        "wrote {} ({} train, {} test examples, seed {seed})",
        out.display(),
        ds.train.len(),
        ds.test.len()
    );
    Ok(())
}

pub fn per_session(data: &Path, out: &Path, drop_last: usize) -> Result<()> {
    let (ds, report) = dmsrec_data::per_session::one_per_session(&tsv::read_dataset(data)?, drop_last)?;
    tsv::write_dataset(out, &ds)?;
    println!(
        "wrote {}: {} train examples from {} sessions ({} too short), {} test examples from {} sessions ({} too short)",
        out.display(),
        ds.train.len(),
        report.train_sessions,
        report.skipped_train,
        ds.test.len(),
        report.test_sessions,
        report.skipped_test
    );
    Ok(())
}

pub fn download(source: DownloadSource, dir: &Path, base_url: Option<String>) -> Result<()> {
    use dmsrec_data::download::{eprint_progress, DownloadOptions, Source};
    let source = match source {
        DownloadSource::Ml1m => Source::Ml1m,
        DownloadSource::Beauty => Source::Beauty,
    };
    let opts = DownloadOptions { base_url, progress: Some(eprint_progress()), ..Default::default() };
    let report = dmsrec_data::download::download(source, dir, &opts)?;
    println!("{report:?}");
    let next = match source {
        Source::Ml1m => format!("--format ml1m --input {}", dir.display()),
        Source::Beauty => match report.data_files.as_slice() {
            [reviews, meta, ..] => {
                format!("--format amazon --input {} --meta {}", reviews.display(), meta.display())
            }
            _ => format!("--format amazon --input {}", dir.display()),
        },
    };
    println!("next: dmsrec data import {next} --out DATASET");
    Ok(())
}

/// The model config of `train`: the model's defaults for the data, then `--model-config FILE`,
/// then `--dim`/`--step`.
pub fn model_config(a: &TrainArgs, ds: &Dataset) -> Result<ModelConfig> {
    let mut overrides = serde_json::Map::new();
    if let Some(path) = &a.model_config {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let serde_json::Value::Object(map) = value else {
            bail!("{}: a model config is a JSON object of settings", path.display())
        };
        overrides = map;
    }
    if let Some(dim) = a.dim {
        overrides.insert("dim".into(), json!(dim));
    }
    if let Some(step) = a.step {
        overrides.insert("step".into(), json!(step));
    }
    ModelConfig::with_overrides(a.model, &DataShape::of(ds), &overrides).map_err(anyhow::Error::msg)
}

pub fn train_config(a: &TrainArgs) -> TrainConfig {
    let schedule = match a.schedule {
        ScheduleArg::Step => Schedule::official_for(a.model),
        ScheduleArg::Constant => Schedule::Constant,
        ScheduleArg::Cosine => Schedule::Cosine { epochs: a.epochs, min_ratio: 0.01 },
    };
    let mut cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        schedule,
        seed: a.seed,
        ..Default::default()
    };
    cfg.adam.lr = a.lr;
    cfg.adam.weight_decay = a.l2.unwrap_or_else(|| dmsrec_train::optim::official_l2(a.model));
    cfg.patience = Some(a.patience);
    cfg.session_dropout = a.session_dropout;
    cfg
}

/// The fusion setup of `train --intents DIR` (None without intents or with `--intent-use none`).
pub fn fusion_setup(a: &JointArgs, kind: ModelKind, ds: &Dataset) -> Result<Option<FusionSetup>> {
    let Some(dir) = &a.intents else { return Ok(None) };
    if a.intent_use == IntentUse::None {
        return Ok(None);
    }
    let (intents, dim) = load_split_intents(dir, ds, a.intent_use)?;
    let cfg = match a.fusion {
        FusionRecipe::Paper => FusionConfig {
            intents: a.intent_use,
            align: a.align,
            alpha: a.alpha,
            beta: a.beta,
            sigma: a.sigma,
            intent_dropout: a.intent_dropout,
            intent_dim: dim,
            recipe: FusionRecipe::Paper,
        },
        FusionRecipe::Authors => FusionConfig::authors(kind, a.intent_use, dim),
    };
    let (te, tl) = intents.train.coverage();
    println!(
        "intents from {}: {:.1}% of training examples with explicit, {:.1}% with latent",
        dir.display(),
        100.0 * te,
        100.0 * tl
    );
    Ok(Some(FusionSetup { cfg, source: dir.clone(), intents }))
}

/// Prints a training run's events: a header, a progress bar of batches, a line per epoch and
/// the final test line.
pub struct RunPrinter {
    header: String,
    protocol: Protocol,
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
}

impl RunPrinter {
    pub fn new(header: &str, protocol: Protocol) -> Self {
        Self { header: header.to_string(), protocol, bar: Default::default() }
    }

    pub fn on_event(&self, event: RunEvent) {
        let what = match self.protocol {
            Protocol::Paper => "test",
            Protocol::Valid => "valid",
        };
        match event {
            RunEvent::Started { parameters } => println!("{} ({parameters} parameters)", self.header),
            RunEvent::Train(TrainEvent::Batch { epoch, done, total }) => {
                let mut bar = self.bar.borrow_mut();
                let b = bar
                    .get_or_insert_with(|| crate::progress::batches(total as u64, &format!("epoch {epoch}")));
                b.set_position(done as u64);
                if done == total {
                    b.finish_and_clear();
                    *bar = None;
                }
            }
            RunEvent::Train(TrainEvent::Epoch(e)) => println!(
                "epoch {:>2}  lr {:.0e}  loss {:.4}  train {:.1}s  eval {:.1}s  {what}: {}",
                e.epoch,
                e.lr,
                e.loss,
                e.train_s,
                e.eval_s,
                e.metrics.paper_line()
            ),
            RunEvent::Finished(result) => println!(
                "{:?} protocol, test ({}): {}",
                self.protocol,
                match self.protocol {
                    Protocol::Paper => "best of each metric over epochs".to_string(),
                    Protocol::Valid => format!("epoch {} chosen by valid MRR@20", result.chosen_epoch),
                },
                result.test.paper_line()
            ),
        }
    }
}

/// Trains one variant with `dmsrec_pipeline::train_one`, printing its progress.
pub fn train_one(spec: &RunSpec) -> Result<RunResult> {
    let with = match spec.fusion {
        Some(f) => format!(
            " + intents ({}, {:?} fusion, align {}, σ {}, α {}, β {})",
            f.cfg.intents, f.cfg.recipe, f.cfg.align, f.cfg.sigma, f.cfg.alpha, f.cfg.beta
        ),
        None => String::new(),
    };
    let ds = spec.ds;
    let header = format!(
        "{}{with} on {} ({} train / {} test examples, {} items), protocol {:?}, seed {}",
        spec.model.kind(),
        ds.name,
        ds.train.len(),
        ds.test.len(),
        ds.n_items(),
        spec.protocol,
        spec.train.seed
    );
    let printer = RunPrinter::new(&header, spec.protocol);
    dmsrec_pipeline::train_one(spec, &|e| printer.on_event(e))
}

pub fn train(a: &TrainArgs) -> Result<Vec<RunResult>> {
    let ds = tsv::read_dataset(&a.data)?;
    let model_cfg = model_config(a, &ds)?;
    let cfg = train_config(a);
    let device = parse_device(&a.device)?;
    let protocols: Vec<Protocol> = match a.protocol {
        ProtocolArg::Paper => vec![Protocol::Paper],
        ProtocolArg::Valid => vec![Protocol::Valid],
        ProtocolArg::Both => vec![Protocol::Paper, Protocol::Valid],
    };
    let joint = fusion_setup(&a.joint, a.model, &ds)?;
    let mut results = Vec::new();
    for p in protocols {
        let dir = protocol_dir(&a.out, p);
        let spec = RunSpec {
            ds: &ds,
            data_dir: &a.data,
            model: &model_cfg,
            train: &cfg,
            protocol: p,
            run_dir: &dir,
            fusion: joint.as_ref(),
            device: &device,
        };
        results.push(train_one(&spec)?);
    }
    if let Some(path) = &a.results {
        write_results(path, a, &model_cfg, &ds, &results, joint.as_ref())?;
    }
    Ok(results)
}

fn write_results(
    path: &Path,
    a: &TrainArgs,
    model_cfg: &ModelConfig,
    ds: &Dataset,
    results: &[RunResult],
    joint: Option<&FusionSetup>,
) -> Result<()> {
    let mut metrics = serde_json::Map::new();
    let mut epoch_s = Vec::new();
    for r in results {
        metrics.insert(r.protocol.name().into(), serde_json::to_value(r.test.paper_subset())?);
        epoch_s.extend(r.epochs.iter().map(|e| e.train_s));
    }
    let train_cfg = train_config(a);
    let value = json!({
        "model": a.model,
        "model_config": model_cfg,
        "dataset": ds.name,
        "variant": if joint.is_some() { "intents" } else { "plain" },
        "joint": joint.map(FusionSetup::record),
        "metrics": metrics,
        "chosen_epoch": results.iter().map(|r| (r.protocol.name(), r.chosen_epoch)).collect::<std::collections::BTreeMap<_, _>>(),
        "schedule": train_cfg.schedule,
        "lr": a.lr,
        "l2": train_cfg.adam.weight_decay,
        "session_dropout": a.session_dropout,
        "command": command_line(),
        "git": git_revision(),
        "seed": a.seed,
        "epochs": a.epochs,
        // Training and evaluation time over all epochs, also across resumed invocations.
        "wall_s": results.iter().flat_map(|r| &r.epochs).map(|e| e.train_s + e.eval_s).sum::<f64>(),
        "epoch_s_median": median(&epoch_s),
        "peak_rss_mb": peak_rss_mb(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    });
    run_files::write_json_atomic(path, &value)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn dataset_of(cfg: &CheckpointConfig, data: Option<&Path>) -> Result<(PathBuf, Dataset)> {
    let dir = data.map(Path::to_path_buf).unwrap_or_else(|| cfg.data.clone());
    let ds = tsv::read_dataset(&dir)
        .with_context(|| format!("reading the checkpoint's dataset {}", dir.display()))?;
    if ds.n_items() != cfg.model.n_items() {
        bail!(
            "{} has {} items but the checkpoint was trained with {}",
            dir.display(),
            ds.n_items(),
            cfg.model.n_items()
        );
    }
    Ok((dir, ds))
}

/// The test intents a backbone + intents checkpoint was trained with (None for a plain one).
pub fn checkpoint_test_intents(cfg: &CheckpointConfig, ds: &Dataset) -> Result<Option<IntentFeatures>> {
    let Some(record) = &cfg.joint else { return Ok(None) };
    let (features, _) = load_intent_features(&record.intents, "test", &ds.test, record.config.intents)
        .with_context(|| format!("the checkpoint's intents {}", record.intents.display()))?;
    Ok(Some(features))
}

pub fn evaluate(ckpt: &Path, data: Option<&Path>) -> Result<()> {
    let loaded = checkpoint::load_checkpoint(ckpt, &Device::Cpu)?;
    let (dir, ds) = dataset_of(&loaded.config, data)?;
    let intents = checkpoint_test_intents(&loaded.config, &ds)?;
    let ranks = evaluate_ranks(
        loaded.model.as_ref(),
        &ds.test,
        intents.as_ref(),
        loaded.config.train.eval_batch_size,
    )?;
    let m = Metrics::from_ranks(&ranks);
    let with = if intents.is_some() { " + intents" } else { "" };
    println!("{}{with} on {} ({} test examples)", loaded.config.model.kind(), dir.display(), ds.test.len());
    println!("{}", m.paper_line());
    println!(
        "NDCG@5 {:.4}  NDCG@10 {:.4}  NDCG@20 {:.4}",
        m.get("NDCG@5"),
        m.get("NDCG@10"),
        m.get("NDCG@20")
    );
    Ok(())
}

/// Parses `"12 55 301"` into item ids, checking they are real items.
pub fn parse_session(text: &str, n_items: usize) -> Result<Vec<u32>> {
    let ids: Vec<u32> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<u32>().with_context(|| format!("--session: {t:?} is not an item id")))
        .collect::<Result<_>>()?;
    if ids.is_empty() {
        bail!("--session is empty");
    }
    if let Some(bad) = ids.iter().find(|&&i| i == 0 || i as usize > n_items) {
        bail!("--session: item {bad} is outside 1..={n_items}");
    }
    Ok(ids)
}

/// The k best items for a session: `(item id, score)`, best first (ties to the smaller id). A
/// model with intents gets none (as a training example without intents).
pub fn top_k(model: &dyn Recommender, session: &[u32], k: usize) -> Result<Vec<(u32, f32)>> {
    let scores = batch_scores(model, &[session], None, &[0])?;
    let row: Vec<f32> = scores.squeeze(0)?.to_vec1()?;
    Ok(top_k_of_row(&row, k).into_iter().map(|id| (id, row[id as usize - 1])).collect())
}

pub fn recommend(ckpt: &Path, session: &str, k: usize, data: Option<&Path>) -> Result<()> {
    let loaded = checkpoint::load_checkpoint(ckpt, &Device::Cpu)?;
    let (_, ds) = dataset_of(&loaded.config, data)?;
    let ids = parse_session(session, ds.n_items())?;
    if loaded.config.joint.is_some() {
        println!("(a backbone + intents model: this session is scored without intents)");
    }
    println!("session:");
    for id in &ids {
        println!("  {id:>6}  {}", ds.catalog.title(*id));
    }
    println!("top {k}:");
    for (rank, (id, score)) in top_k(loaded.model.as_ref(), &ids, k)?.into_iter().enumerate() {
        println!("  {:>2}. {id:>6}  {score:>8.4}  {}", rank + 1, ds.catalog.title(id));
    }
    Ok(())
}
