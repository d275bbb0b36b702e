//! Phase I of LLM-DMsRec from the command line: candidates from a trained backbone.

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, ValueEnum};
use dmsrec_data::Dataset;
use dmsrec_data::{tsv, Example};
use dmsrec_intent::candidates::{
    coverage, read_candidates, top_k_candidates, write_candidates, BatchScorer, DEFAULT_BATCH,
};
use dmsrec_train::checkpoint::CheckpointConfig;
use dmsrec_train::fusion::IntentFeatures;
use dmsrec_train::Protocol;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SplitArg {
    Train,
    Test,
    Both,
}

#[derive(Args)]
pub struct CandidatesArgs {
    /// A run folder of a trained backbone (config.json + model.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder, if not the one recorded in the checkpoint.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 50)]
    k: usize,
    #[arg(long, value_enum, default_value = "both")]
    split: SplitArg,
    /// Output folder for `train_candidates.tsv` / `test_candidates.tsv` (one line per example).
    #[arg(long)]
    out: PathBuf,
    /// Leakage-free training candidates: split the training examples into this many seeded folds
    /// and take each fold's candidates from a backbone trained (same recipe as the checkpoint) on
    /// the other folds. Test candidates still come from the checkpoint.
    #[arg(long)]
    crossfit: Option<usize>,
    /// Another candidate file for the test split (e.g. the authors' `test_candidates.tsv`) to compare with.
    #[arg(long)]
    compare: Option<PathBuf>,
}

pub fn candidates(a: &CandidatesArgs) -> Result<()> {
    let loaded = dmsrec_train::checkpoint::load_checkpoint(&a.checkpoint, &Device::Cpu)?;
    let cfg = &loaded.config;
    let dir = a.data.clone().unwrap_or_else(|| cfg.data.clone());
    let ds = tsv::read_dataset(&dir).with_context(|| format!("reading {}", dir.display()))?;
    // A backbone + intents checkpoint ranks each example with its own intents.
    let intents = match &cfg.joint {
        Some(record) => {
            let (split, _) =
                dmsrec_pipeline::load_split_intents(&record.intents, &ds, record.config.intents)?;
            Some(split)
        }
        None => None,
    };
    let splits: Vec<(&str, &[Example])> = match a.split {
        SplitArg::Train => vec![("train", &ds.train)],
        SplitArg::Test => vec![("test", &ds.test)],
        SplitArg::Both => vec![("train", &ds.train), ("test", &ds.test)],
    };
    for (name, examples) in splits {
        let split_intents = intents.as_ref().map(|i| if name == "train" { &i.train } else { &i.test });
        let cands = match (name, a.crossfit) {
            ("train", Some(folds)) => crossfit_candidates(cfg, &dir, &ds, folds, a.k, &a.out)?,
            _ => top_k_candidates(
                &mut scorer(loaded.model.as_ref(), split_intents),
                examples,
                a.k,
                DEFAULT_BATCH,
            )?,
        };
        let path = a.out.join(format!("{name}_candidates.tsv"));
        write_candidates(&path, &cands)?;
        let cov = coverage(examples, &cands)?;
        println!(
            "{name}: {} examples, K = {}: target among candidates {:.1}%, last clicked item {:.1}% \
             (first candidate {:.1}%), session items {:.1}% -> {}",
            cov.examples,
            a.k,
            100.0 * cov.target,
            100.0 * cov.last_item,
            100.0 * cov.last_item_first,
            100.0 * cov.session_items,
            path.display()
        );
        if let (Some(other), "test") = (&a.compare, name) {
            let theirs = read_candidates(other)?;
            let tc = coverage(examples, &theirs)?;
            let overlap: f64 = cands
                .iter()
                .zip(&theirs)
                .map(|(a, b)| a.iter().filter(|i| b.contains(i)).count() as f64 / a.len().max(1) as f64)
                .sum::<f64>()
                / cands.len().max(1) as f64;
            println!(
                "  {}: target {:.1}%, last clicked item {:.1}% (first candidate {:.1}%), session items {:.1}%; \
                 mean overlap with ours {:.1}%",
                other.display(),
                100.0 * tc.target,
                100.0 * tc.last_item,
                100.0 * tc.last_item_first,
                100.0 * tc.session_items,
                100.0 * overlap
            );
        }
    }
    Ok(())
}

/// Evaluation scores of a checkpoint's model for batches of one split's examples.
fn scorer<'a>(
    model: &'a dyn dmsrec_train::Recommender,
    intents: Option<&'a IntentFeatures>,
) -> Box<BatchScorer<'a>> {
    Box::new(move |sessions, rows| {
        let rows: Vec<usize> = rows.collect();
        dmsrec_train::trainer::batch_scores(model, sessions, intents, &rows)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    })
}

/// Training candidates where no example's candidates come from a model that saw it: fold `f`'s
/// examples are ranked by a backbone trained on the other folds (runs in `out/crossfit/fold<f>`,
/// resumable).
fn crossfit_candidates(
    ck: &CheckpointConfig,
    data_dir: &Path,
    ds: &Dataset,
    folds: usize,
    k: usize,
    out: &Path,
) -> Result<Vec<Vec<u32>>> {
    anyhow::ensure!(folds >= 2, "--crossfit needs at least 2 folds, got {folds}");
    let n = ds.train.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(ck.train.seed ^ 0x00c0_ffee_f01d));
    let mut fold_of = vec![0usize; n];
    for (pos, &i) in order.iter().enumerate() {
        fold_of[i] = pos % folds;
    }
    let mut cands = vec![Vec::new(); n];
    for f in 0..folds {
        let held: Vec<usize> = (0..n).filter(|&i| fold_of[i] == f).collect();
        let fold_ds = Dataset {
            name: format!("{}-crossfit{f}", ds.name),
            catalog: ds.catalog.clone(),
            train: (0..n).filter(|&i| fold_of[i] != f).map(|i| ds.train[i].clone()).collect(),
            test: held.iter().map(|&i| ds.train[i].clone()).collect(),
            train_sequences: Vec::new(),
        };
        println!(
            "crossfit fold {}/{folds}: {} training, {} held-out examples",
            f + 1,
            fold_ds.train.len(),
            held.len()
        );
        let run_dir = out.join("crossfit").join(format!("fold{f}"));
        crate::commands::train_one(
            &fold_ds,
            data_dir,
            &ck.model,
            &ck.train,
            Protocol::Valid,
            &run_dir,
            None,
            &Device::Cpu,
        )?;
        let fold = dmsrec_train::checkpoint::load_checkpoint(&run_dir, &Device::Cpu)?;
        let fold_cands =
            top_k_candidates(&mut scorer(fold.model.as_ref(), None), &fold_ds.test, k, DEFAULT_BATCH)?;
        for (i, c) in held.into_iter().zip(fold_cands) {
            cands[i] = c;
        }
    }
    Ok(cands)
}
