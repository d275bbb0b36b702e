//! The data, train, evaluate and recommend subcommands.

use crate::report::{command_line, git_revision, median, peak_rss_mb};
use crate::{ImportArgs, ImportFormat, JointArgs, ProtocolArg, ScheduleArg, TrainArgs};
use anyhow::{bail, ensure, Context, Result};
use candle_core::Device;
use clap::ValueEnum;
use dmsrec_data::{stats::stats as dataset_stats, tsv, Dataset};
use dmsrec_intent::candidates::top_k_of_row;
use dmsrec_intent::embed::IntentEmbeddings;
use dmsrec_models::{Backbone, ModelConfig, ParamStore, SrGnnConfig};
use dmsrec_train::checkpoint::{self, CheckpointConfig};
use dmsrec_train::joint::{IntentFeatures, IntentFusion, IntentRow, IntentUse, JointConfig};
use dmsrec_train::trainer::protocol_dir;
use dmsrec_train::{evaluate_ranks, Metrics, Protocol, RunResult, Schedule, TrainConfig, Trainer};
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
    dmsrec_data::atomic::write_atomic(&out.join(SAMPLE_INDEX), |w| {
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

/// The file in a sampled dataset folder that lists which source examples it holds.
pub const SAMPLE_INDEX: &str = "sample.json";

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

pub fn model_config(name: &str, n_items: usize, dim: usize, step: usize) -> Result<ModelConfig> {
    match name {
        "srgnn" => Ok(ModelConfig::Srgnn(SrGnnConfig { n_items, dim, step, nonhybrid: false })),
        other => bail!("unknown model {other:?} (available: srgnn)"),
    }
}

pub fn train_config(a: &TrainArgs) -> TrainConfig {
    let schedule = match a.schedule {
        ScheduleArg::Step => Schedule::paper(),
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
    cfg.adam.weight_decay = a.l2;
    cfg.patience = Some(a.patience);
    cfg.session_dropout = a.session_dropout;
    cfg
}

/// LLM intents to fuse into a backbone: the fusion config and each split's features.
pub struct JointSetup {
    pub cfg: JointConfig,
    /// The intent stage's output folder the features came from.
    pub source: PathBuf,
    pub train: IntentFeatures,
    pub test: IntentFeatures,
}

impl JointSetup {
    /// What checkpoints and results files record of it.
    pub fn record(&self) -> checkpoint::JointRecord {
        checkpoint::JointRecord { config: self.cfg.clone(), intents: self.source.clone() }
    }
}

/// One split's intent features from the intent stage's `embeddings_<split>.safetensors` in `dir`
/// (rows for a subset of the split's examples, named by its `index` tensor).
pub fn load_intent_features(
    dir: &Path,
    split: &str,
    n_examples: usize,
    usage: IntentUse,
) -> Result<(IntentFeatures, usize)> {
    let path = dir.join(format!("embeddings_{split}.safetensors"));
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    let index: Vec<u32> = tensors
        .remove("index")
        .with_context(|| format!("{}: no tensor \"index\"", path.display()))?
        .to_vec1()?;
    let emb = IntentEmbeddings::from_tensors(tensors, &path)?;
    ensure!(
        index.len() == emb.len(),
        "{}: {} index entries for {} rows",
        path.display(),
        index.len(),
        emb.len()
    );
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
    let features = IntentFeatures::new(n_examples, emb.dim, usage, rows, &Device::Cpu)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok((features, emb.dim))
}

/// The joint setup of `train --intents DIR` (None without intents or with `--intent-use none`).
pub fn joint_setup(a: &JointArgs, ds: &Dataset) -> Result<Option<JointSetup>> {
    let Some(dir) = &a.intents else { return Ok(None) };
    if a.intent_use == IntentUse::None {
        return Ok(None);
    }
    let (train, dim) = load_intent_features(dir, "train", ds.train.len(), a.intent_use)?;
    let (test, test_dim) = load_intent_features(dir, "test", ds.test.len(), a.intent_use)?;
    ensure!(dim == test_dim, "{}: train intents are {dim} wide, test intents {test_dim}", dir.display());
    let cfg = JointConfig {
        intents: a.intent_use,
        align: a.align,
        alpha: a.alpha,
        beta: a.beta,
        sigma: a.sigma,
        intent_dropout: a.intent_dropout,
        intent_dim: dim,
    };
    let (te, tl) = train.coverage();
    println!(
        "intents from {}: {:.1}% of training examples with explicit, {:.1}% with latent",
        dir.display(),
        100.0 * te,
        100.0 * tl
    );
    Ok(Some(JointSetup { cfg, source: dir.clone(), train, test }))
}

/// Trains a fresh model, plain or with intents, under one protocol in `run_dir`, printing one
/// line per epoch. The selected weights end up in `run_dir` (see `checkpoint::load_checkpoint`).
pub fn train_one(
    ds: &Dataset,
    data_dir: &Path,
    model_cfg: &ModelConfig,
    cfg: &TrainConfig,
    protocol: Protocol,
    run_dir: &Path,
    joint: Option<&JointSetup>,
) -> Result<RunResult> {
    let params = ParamStore::new(cfg.seed, &Device::Cpu);
    let model = model_cfg.build(&params)?;
    std::fs::create_dir_all(run_dir)?;
    let fusion = match joint {
        Some(j) => {
            Some(IntentFusion::new(model.as_ref(), j.cfg.clone(), &params, j.train.clone(), j.test.clone())?)
        }
        None => None,
    };
    let ck = CheckpointConfig {
        model: model_cfg.clone(),
        data: data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf()),
        dataset: ds.name.clone(),
        train: cfg.clone(),
        protocol,
        joint: joint.map(JointSetup::record),
    };
    checkpoint::write_json_atomic(&run_dir.join(checkpoint::CONFIG), &ck)?;
    let what = match protocol {
        Protocol::Paper => "test",
        Protocol::Valid => "valid",
    };
    let with = match joint {
        Some(j) => format!(
            " + intents ({:?}, align {}, σ {}, α {}, β {})",
            j.cfg.intents, j.cfg.align, j.cfg.sigma, j.cfg.alpha, j.cfg.beta
        ),
        None => String::new(),
    };
    println!(
        "{}{with} on {} ({} train / {} test examples, {} items, {} parameters), protocol {:?}, seed {}",
        model.name(),
        ds.name,
        ds.train.len(),
        ds.test.len(),
        ds.n_items(),
        params.parameter_count(),
        protocol,
        cfg.seed
    );
    let plain = dmsrec_train::Plain(model.as_ref());
    let recommender: &dyn dmsrec_train::Recommender = match &fusion {
        Some(f) => f,
        None => &plain,
    };
    let trainer = Trainer {
        model: recommender,
        params: &params,
        cfg: cfg.clone(),
        run_dir: run_dir.to_path_buf(),
        on_epoch: Some(Box::new(move |e| {
            println!(
                "epoch {:>2}  lr {:.0e}  loss {:.4}  train {:.1}s  eval {:.1}s  {what}: {}",
                e.epoch,
                e.lr,
                e.loss,
                e.train_s,
                e.eval_s,
                e.metrics.paper_line()
            )
        })),
    };
    let result = trainer.run(protocol, &ds.train, &ds.test)?;
    checkpoint::write_json_atomic(&run_dir.join("result.json"), &result)?;
    println!(
        "{:?} protocol, test ({}): {}",
        protocol,
        match protocol {
            Protocol::Paper => "best of each metric over epochs".to_string(),
            Protocol::Valid => format!("epoch {} chosen by valid MRR@20", result.chosen_epoch),
        },
        result.test.paper_line()
    );
    Ok(result)
}

pub fn train(a: &TrainArgs) -> Result<Vec<RunResult>> {
    let ds = tsv::read_dataset(&a.data)?;
    let model_cfg = model_config(&a.model, ds.n_items(), a.dim, a.step)?;
    let cfg = train_config(a);
    let protocols: Vec<Protocol> = match a.protocol {
        ProtocolArg::Paper => vec![Protocol::Paper],
        ProtocolArg::Valid => vec![Protocol::Valid],
        ProtocolArg::Both => vec![Protocol::Paper, Protocol::Valid],
    };
    let joint = joint_setup(&a.joint, &ds)?;
    let mut results = Vec::new();
    for p in protocols {
        results.push(train_one(&ds, &a.data, &model_cfg, &cfg, p, &protocol_dir(&a.out, p), joint.as_ref())?);
    }
    if let Some(path) = &a.results {
        write_results(path, a, &ds, &results, joint.as_ref())?;
    }
    Ok(results)
}

fn write_results(
    path: &Path,
    a: &TrainArgs,
    ds: &Dataset,
    results: &[RunResult],
    joint: Option<&JointSetup>,
) -> Result<()> {
    let mut metrics = serde_json::Map::new();
    let mut epoch_s = Vec::new();
    for r in results {
        metrics.insert(r.protocol.name().into(), serde_json::to_value(r.test.paper_subset())?);
        epoch_s.extend(r.epochs.iter().map(|e| e.train_s));
    }
    let value = json!({
        "model": a.model,
        "dataset": ds.name,
        "variant": if joint.is_some() { "intents" } else { "plain" },
        "joint": joint.map(JointSetup::record),
        "metrics": metrics,
        "chosen_epoch": results.iter().map(|r| (r.protocol.name(), r.chosen_epoch)).collect::<std::collections::BTreeMap<_, _>>(),
        "schedule": train_config(a).schedule,
        "lr": a.lr,
        "l2": a.l2,
        "session_dropout": a.session_dropout,
        "command": command_line(),
        "git": git_revision(),
        "seed": a.seed,
        "epochs": a.epochs,
        "wall_s": results.iter().map(|r| r.wall_s).sum::<f64>(),
        "epoch_s_median": median(&epoch_s),
        "peak_rss_mb": peak_rss_mb(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    });
    checkpoint::write_json_atomic(path, &value)?;
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

pub fn evaluate(ckpt: &Path, data: Option<&Path>) -> Result<()> {
    let (cfg, _params, model) = checkpoint::load_checkpoint(ckpt, &Device::Cpu)?;
    let (dir, ds) = dataset_of(&cfg, data)?;
    let ranks = evaluate_ranks(model.as_ref(), &ds.test, cfg.train.eval_batch_size)?;
    let m = Metrics::from_ranks(&ranks);
    println!("{} on {} ({} test examples)", model.name(), dir.display(), ds.test.len());
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

/// The k best items for a session: `(item id, score)`, best first (ties to the smaller id).
pub fn top_k(model: &dyn Backbone, session: &[u32], k: usize) -> Result<Vec<(u32, f32)>> {
    let scores = model.scores(&model.session(&[session], false)?)?;
    let row: Vec<f32> = scores.squeeze(0)?.to_vec1()?;
    Ok(top_k_of_row(&row, k).into_iter().map(|id| (id, row[id as usize - 1])).collect())
}

pub fn recommend(ckpt: &Path, session: &str, k: usize, data: Option<&Path>) -> Result<()> {
    let (cfg, _params, model) = checkpoint::load_checkpoint(ckpt, &Device::Cpu)?;
    let (_, ds) = dataset_of(&cfg, data)?;
    let ids = parse_session(session, ds.n_items())?;
    println!("session:");
    for id in &ids {
        println!("  {id:>6}  {}", ds.catalog.title(*id));
    }
    println!("top {k}:");
    for (rank, (id, score)) in top_k(model.as_ref(), &ids, k)?.into_iter().enumerate() {
        println!("  {:>2}. {id:>6}  {score:>8.4}  {}", rank + 1, ds.catalog.title(id));
    }
    Ok(())
}
