//! `dmsrec bench train`: time training steps and evaluation on a real dataset.

use anyhow::Result;
use candle_core::Device;
use clap::Args;
use dmsrec_data::{tsv, Example};
use dmsrec_models::{BuildCtx, DataShape, ModelConfig, ModelKind, ParamStore};
use dmsrec_pipeline::provenance::{command_line, git_revision, median, peak_rss_mb};
use dmsrec_train::trainer::batch_loss;
use dmsrec_train::{evaluate_ranks, Adam, AdamConfig, Plain};
use rand::seq::SliceRandom;
use rand::Rng;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BenchTrainArgs {
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "srgnn")]
    model: ModelKind,
    /// Batches to time (default: one whole epoch).
    #[arg(long)]
    batches: Option<usize>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Also write the figures as JSON (for scripts that set them beside the official code's).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `kind` with its defaults for the dataset, its global graph (if any) from the training sessions.
fn build_plain(kind: ModelKind, ds: &dmsrec_data::Dataset, params: &ParamStore, seed: u64) -> Result<Plain> {
    let cfg = ModelConfig::for_data(kind, &DataShape::of(ds));
    let ctx = BuildCtx { sessions: Some(&ds.train_sequences), seed };
    Ok(Plain(cfg.build(params, &ctx)?))
}

pub fn train(a: &BenchTrainArgs) -> Result<()> {
    let ds = tsv::read_dataset(&a.data)?;
    let params = ParamStore::new(a.seed, &Device::Cpu);
    let model = build_plain(a.model, &ds, &params, a.seed)?;
    let mut opt = Adam::new(params.vars(), AdamConfig::default());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let mut order: Vec<usize> = (0..ds.train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    let batches: Vec<&[usize]> = order.chunks(a.batch_size).collect();
    let n_epoch = batches.len();
    let n = a.batches.unwrap_or(n_epoch).min(n_epoch);
    let (mut step_s, mut forward_s, mut backward_s, mut adam_s) = (vec![], vec![], vec![], vec![]);
    let started = Instant::now();
    for idx in &batches[..n] {
        let t = Instant::now();
        let (loss, _) = batch_loss(&model, &ds.train, None, idx, 0.0, &mut rng)?;
        let t_fwd = t.elapsed().as_secs_f64();
        let grads = loss.backward()?;
        let t_bwd = t.elapsed().as_secs_f64();
        opt.step(&grads)?;
        let t_all = t.elapsed().as_secs_f64();
        forward_s.push(t_fwd);
        backward_s.push(t_bwd - t_fwd);
        adam_s.push(t_all - t_bwd);
        step_s.push(t_all);
    }
    let timed = started.elapsed().as_secs_f64();
    let examples: usize = batches[..n].iter().map(|b| b.len()).sum();
    let t = Instant::now();
    evaluate_ranks(&model, &ds.test, None, dmsrec_intent::candidates::DEFAULT_BATCH)?;
    let eval_s = t.elapsed().as_secs_f64();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    println!(
        "model {} on {} ({} items), batch {}, threads {threads}",
        a.model,
        ds.name,
        ds.n_items(),
        a.batch_size
    );
    println!("timed batches      {n} of {n_epoch}");
    println!(
        "median step        {:.2} ms (forward {:.2}, backward {:.2}, adam {:.2})",
        1e3 * median(&step_s),
        1e3 * median(&forward_s),
        1e3 * median(&backward_s),
        1e3 * median(&adam_s)
    );
    println!(
        "epoch              {:.1} s{}",
        timed * n_epoch as f64 / n as f64,
        if n < n_epoch { " (extrapolated)" } else { "" }
    );
    println!("examples/s         {:.0}", examples as f64 / timed);
    println!("evaluate test      {:.2} s ({} examples)", eval_s, ds.test.len());
    let rss = peak_rss_mb().unwrap_or(f64::NAN);
    println!("peak RSS           {rss:.0} MB");
    if let Some(path) = &a.json {
        let value = serde_json::json!({
            "model": a.model,
            "dataset": ds.name,
            "batches": n,
            "epoch_batches": n_epoch,
            "epoch_s": timed * n_epoch as f64 / n as f64,
            "median_step_ms": 1e3 * median(&step_s),
            "examples_per_s": examples as f64 / timed,
            "eval_s": eval_s,
            "peak_rss_mb": rss,
            "threads": threads,
            "command": command_line(),
            "git": git_revision(),
        });
        dmsrec_train::run_files::write_json_atomic(path, &value)?;
    }
    Ok(())
}

#[derive(Args)]
pub struct BenchStepArgs {
    #[arg(long, value_enum, default_value = "srgnn")]
    model: ModelKind,
    #[arg(long, default_value_t = 3416)]
    items: usize,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Clicks per session.
    #[arg(long, default_value_t = 20)]
    len: usize,
    /// Distinct items per session.
    #[arg(long, default_value_t = 15)]
    unique: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 50)]
    steps: usize,
}

/// One fixed batch of synthetic sessions, trained on repeatedly: the shapes of the reference
/// PyTorch step benchmark (batch 100, 3,416 items, 20 clicks over 15 distinct items).
pub fn step(a: &BenchStepArgs) -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let unique = a.unique.clamp(1, a.len.max(1));
    let batch: Vec<Example> = (0..a.batch_size)
        .map(|_| {
            let distinct: Vec<u32> = rand::seq::index::sample(&mut rng, a.items, unique)
                .into_iter()
                .map(|i| i as u32 + 1)
                .collect();
            let mut prefix = distinct.clone();
            while prefix.len() < a.len {
                prefix.push(*distinct.choose(&mut rng).expect("at least one item"));
            }
            prefix.shuffle(&mut rng);
            Example { prefix, target: rng.gen_range(1..=a.items as u32) }
        })
        .collect();
    let params = ParamStore::new(0, &Device::Cpu);
    let ds = dmsrec_data::Dataset {
        name: "synthetic".into(),
        catalog: dmsrec_data::Catalog::untitled(a.items),
        train_sequences: batch.iter().map(|e| e.prefix.clone()).collect(),
        train: batch,
        test: Vec::new(),
    };
    let model = build_plain(a.model, &ds, &params, 0)?;
    let mut opt = Adam::new(params.vars(), AdamConfig::default());
    let rows: Vec<usize> = (0..ds.train.len()).collect();
    let mut drop_rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut step_s = Vec::new();
    for i in 0..a.warmup + a.steps {
        let t = Instant::now();
        let (loss, _) = batch_loss(&model, &ds.train, None, &rows, 0.0, &mut drop_rng)?;
        opt.step(&loss.backward()?)?;
        if i >= a.warmup {
            step_s.push(t.elapsed().as_secs_f64());
        }
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    println!(
        "model {}: batch {}, {} items, {} clicks / {} distinct per session, threads {threads}",
        a.model, a.batch_size, a.items, a.len, unique
    );
    println!(
        "median step        {:.2} ms over {} steps (graph building included)",
        1e3 * median(&step_s),
        a.steps
    );
    Ok(())
}

#[derive(Args)]
pub struct BenchJointArgs {
    #[arg(long)]
    data: PathBuf,
    /// Batches timed for each model (default: one whole epoch).
    #[arg(long)]
    batches: Option<usize>,
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Width of the intent embeddings (384: MiniLM; 768: bert-base).
    #[arg(long, default_value_t = 384)]
    intent_dim: usize,
    #[arg(long, default_value_t = 2024)]
    seed: u64,
}

/// Training steps of the plain backbone and of backbone + intents (KL alignment, both kinds),
/// alternating batch by batch so both see the same machine load. Every example gets seeded
/// random intent vectors: the cost of a step does not depend on their values.
pub fn joint(a: &BenchJointArgs) -> Result<()> {
    use dmsrec_train::fusion::{
        FusionConfig, IntentFeatures, IntentFusion, IntentRow, IntentUse, SplitIntents,
    };
    use dmsrec_train::Recommender;
    let ds = tsv::read_dataset(&a.data)?;
    let n = ds.train.len();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let vectors: Vec<f32> = (0..2 * n * a.intent_dim).map(|_| rng.gen_range(-0.1..0.1)).collect();
    let features = || {
        let rows = (0..n).map(|i| {
            let at = |k: usize| &vectors[(2 * i + k) * a.intent_dim..(2 * i + k + 1) * a.intent_dim];
            (i, IntentRow { explicit: at(0), latent: at(1), has_explicit: true, has_latent: true })
        });
        IntentFeatures::new(n, a.intent_dim, IntentUse::Both, rows, &Device::Cpu)
    };
    let plain_params = ParamStore::new(a.seed, &Device::Cpu);
    let plain = build_plain(ModelKind::Srgnn, &ds, &plain_params, a.seed)?;
    let joint_params = ParamStore::new(a.seed, &Device::Cpu);
    let joint_model = build_plain(ModelKind::Srgnn, &ds, &joint_params, a.seed)?.0;
    let joint_cfg = FusionConfig { intent_dim: a.intent_dim, ..Default::default() };
    let fusion = IntentFusion::new(joint_model, joint_cfg, &joint_params)?;
    let intents = SplitIntents { train: features()?, test: features()? };
    let mut plain_opt = Adam::new(plain_params.vars(), AdamConfig::default());
    let mut joint_opt = Adam::new(joint_params.vars(), AdamConfig::default());
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let batches: Vec<&[usize]> = order.chunks(a.batch_size).collect();
    let count = a.batches.unwrap_or(batches.len()).min(batches.len());
    // The trainer's own batch loss (no session dropout), then one Adam step.
    let step = |model: &dyn Recommender,
                intents: Option<&IntentFeatures>,
                opt: &mut Adam,
                rows: &[usize],
                rng: &mut rand_chacha::ChaCha8Rng| {
        let t = Instant::now();
        let (loss, _) = batch_loss(model, &ds.train, intents, rows, 0.0, rng)?;
        opt.step(&loss.backward()?)?;
        anyhow::Ok(t.elapsed().as_secs_f64())
    };
    let (mut plain_s, mut joint_s) = (Vec::new(), Vec::new());
    for rows in &batches[..count] {
        plain_s.push(step(&plain, None, &mut plain_opt, rows, &mut rng)?);
        joint_s.push(step(&fusion, Some(&intents.train), &mut joint_opt, rows, &mut rng)?);
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    let epoch = |s: &[f64]| s.iter().sum::<f64>() * batches.len() as f64 / count as f64;
    println!(
        "srgnn on {} ({} items), batch {}, intent dim {}, threads {threads}",
        ds.name,
        ds.n_items(),
        a.batch_size,
        a.intent_dim
    );
    println!("timed batches        {count} of {} per model, alternating", batches.len());
    println!("median step plain    {:.2} ms", 1e3 * median(&plain_s));
    println!("median step joint    {:.2} ms", 1e3 * median(&joint_s));
    println!("epoch plain / joint  {:.1} s / {:.1} s", epoch(&plain_s), epoch(&joint_s));
    println!(
        "ratio joint/plain    {:.3} (median step), {:.3} (epoch)",
        median(&joint_s) / median(&plain_s),
        epoch(&joint_s) / epoch(&plain_s)
    );
    Ok(())
}
