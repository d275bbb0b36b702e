//! Phase I of LLM-DMsRec as a stage (`dmsrec candidates`): each example's top-K items from a
//! trained backbone, optionally cross-fitted for the training split so that no example's
//! candidates come from a model that saw it.

use crate::intents::Split;
use crate::run::{train_one, RunEvent, RunSpec};
use anyhow::{Context, Result};
use candle_core::Device;
use dmsrec_data::{tsv, Dataset};
use dmsrec_intent::candidates::{
    coverage, read_candidates, top_k_candidates, write_candidates, BatchScorer, CandidateCoverage,
    DEFAULT_BATCH,
};
use dmsrec_train::checkpoint::{load_checkpoint, CheckpointConfig};
use dmsrec_train::fusion::IntentFeatures;
use dmsrec_train::Protocol;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Everything that defines one run of the candidate stage.
#[derive(Debug, Clone)]
pub struct CandidatesSpec {
    /// A run folder of a trained model (config.json + model.safetensors), plain or with intents.
    pub checkpoint: PathBuf,
    /// Dataset folder, if not the one recorded in the checkpoint.
    pub data: Option<PathBuf>,
    pub k: usize,
    pub splits: Vec<Split>,
    /// Output folder for `train_candidates.tsv` / `test_candidates.tsv`.
    pub out: PathBuf,
    /// Cross-fit the training candidates over this many seeded folds: fold f is ranked by a
    /// backbone trained (the checkpoint's recipe) on the other folds, in `out/crossfit/fold<f>`.
    pub crossfit: Option<usize>,
    /// Another candidate file for the test split (e.g. the authors') to compare with.
    pub compare: Option<PathBuf>,
}

/// What the stage reports while it works.
pub enum CandidatesEvent<'e> {
    /// A cross-fitting fold's backbone starts training.
    Fold {
        fold: usize,
        folds: usize,
        train: usize,
        held_out: usize,
    },
    FoldTraining(RunEvent<'e>),
    /// A split's candidates are written.
    Written {
        split: Split,
        k: usize,
        coverage: &'e CandidateCoverage,
        path: &'e Path,
    },
    /// The `compare` file's coverage of the test split, and its mean overlap with ours.
    Compared {
        path: &'e Path,
        coverage: &'e CandidateCoverage,
        overlap: f64,
    },
}

/// Runs the candidate stage.
pub fn candidates(spec: &CandidatesSpec, on_event: &dyn Fn(CandidatesEvent)) -> Result<()> {
    let loaded = load_checkpoint(&spec.checkpoint, &Device::Cpu)?;
    let cfg = &loaded.config;
    let dir = spec.data.clone().unwrap_or_else(|| cfg.data.clone());
    let ds = tsv::read_dataset(&dir).with_context(|| format!("reading {}", dir.display()))?;
    // A backbone + intents checkpoint ranks each example with its own intents.
    let intents = match &cfg.joint {
        Some(record) => {
            Some(crate::intents::load_split_intents(&record.intents, &ds, record.config.intents)?.0)
        }
        None => None,
    };
    for &split in &spec.splits {
        let examples = split.examples(&ds);
        let split_intents = intents.as_ref().map(|i| match split {
            Split::Train => &i.train,
            Split::Test => &i.test,
        });
        let cands = match (split, spec.crossfit) {
            (Split::Train, Some(folds)) => {
                crossfit_candidates(cfg, &dir, &ds, folds, spec.k, &spec.out, on_event)?
            }
            _ => top_k_candidates(
                &mut scorer(loaded.model.as_ref(), split_intents),
                examples,
                spec.k,
                DEFAULT_BATCH,
            )?,
        };
        let path = spec.out.join(format!("{}_candidates.tsv", split.name()));
        write_candidates(&path, &cands)?;
        let cov = coverage(examples, &cands)?;
        on_event(CandidatesEvent::Written { split, k: spec.k, coverage: &cov, path: &path });
        if let (Some(other), Split::Test) = (&spec.compare, split) {
            let theirs = read_candidates(other)?;
            let their_coverage = coverage(examples, &theirs)?;
            let overlap: f64 = cands
                .iter()
                .zip(&theirs)
                .map(|(a, b)| a.iter().filter(|i| b.contains(i)).count() as f64 / a.len().max(1) as f64)
                .sum::<f64>()
                / cands.len().max(1) as f64;
            on_event(CandidatesEvent::Compared { path: other, coverage: &their_coverage, overlap });
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

/// Training candidates where fold `f`'s examples are ranked by a backbone trained on the other
/// folds (resumable runs in `out/crossfit/fold<f>`).
fn crossfit_candidates(
    ck: &CheckpointConfig,
    data_dir: &Path,
    ds: &Dataset,
    folds: usize,
    k: usize,
    out: &Path,
    on_event: &dyn Fn(CandidatesEvent),
) -> Result<Vec<Vec<u32>>> {
    anyhow::ensure!(folds >= 2, "cross-fitting needs at least 2 folds, got {folds}");
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
        on_event(CandidatesEvent::Fold { fold: f, folds, train: fold_ds.train.len(), held_out: held.len() });
        let run_dir = out.join("crossfit").join(format!("fold{f}"));
        let spec = RunSpec {
            ds: &fold_ds,
            data_dir,
            model: &ck.model,
            train: &ck.train,
            protocol: Protocol::Valid,
            run_dir: &run_dir,
            fusion: None,
            device: &Device::Cpu,
        };
        train_one(&spec, &|e| on_event(CandidatesEvent::FoldTraining(e)))?;
        let fold = load_checkpoint(&run_dir, &Device::Cpu)?;
        let fold_cands =
            top_k_candidates(&mut scorer(fold.model.as_ref(), None), &fold_ds.test, k, DEFAULT_BATCH)?;
        for (i, c) in held.into_iter().zip(fold_cands) {
            cands[i] = c;
        }
    }
    Ok(cands)
}
