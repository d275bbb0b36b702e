//! `dmsrec candidates`: phase I from the command line (the stage is
//! `dmsrec_pipeline::candidates`).

use crate::commands::RunPrinter;
use anyhow::Result;
use clap::{Args, ValueEnum};
use dmsrec_pipeline::candidates::{CandidatesEvent, CandidatesSpec};
use dmsrec_pipeline::Split;
use dmsrec_train::Protocol;
use std::path::PathBuf;

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

impl CandidatesArgs {
    pub fn spec(&self) -> CandidatesSpec {
        CandidatesSpec {
            checkpoint: self.checkpoint.clone(),
            data: self.data.clone(),
            k: self.k,
            splits: match self.split {
                SplitArg::Train => vec![Split::Train],
                SplitArg::Test => vec![Split::Test],
                SplitArg::Both => vec![Split::Train, Split::Test],
            },
            out: self.out.clone(),
            crossfit: self.crossfit,
            compare: self.compare.clone(),
        }
    }
}

/// Runs the stage, printing coverage per split and the cross-fitting folds' training.
pub fn run(spec: &CandidatesSpec) -> Result<()> {
    let printer = CandidatesPrinter::default();
    dmsrec_pipeline::candidates::candidates(spec, &|e| printer.on_event(e))
}

/// Prints the candidate stage's events.
#[derive(Default)]
pub struct CandidatesPrinter {
    fold: std::cell::RefCell<Option<RunPrinter>>,
}

impl CandidatesPrinter {
    pub fn on_event(&self, event: CandidatesEvent) {
        match event {
            CandidatesEvent::Fold { fold, folds, train, held_out } => {
                let header = format!("crossfit fold {}/{folds}: {train} training, {held_out} held-out examples", fold + 1);
                *self.fold.borrow_mut() = Some(RunPrinter::new(&header, Protocol::Valid));
            }
            CandidatesEvent::FoldTraining(e) => {
                if let Some(p) = self.fold.borrow().as_ref() {
                    p.on_event(e)
                }
            }
            CandidatesEvent::Written { split, k, coverage: cov, path } => println!(
                "{}: {} examples, K = {k}: target among candidates {:.1}%, last clicked item {:.1}% \
                 (first candidate {:.1}%), session items {:.1}% -> {}",
                split.name(),
                cov.examples,
                100.0 * cov.target,
                100.0 * cov.last_item,
                100.0 * cov.last_item_first,
                100.0 * cov.session_items,
                path.display()
            ),
            CandidatesEvent::Compared { path, coverage: tc, overlap } => println!(
                "  {}: target {:.1}%, last clicked item {:.1}% (first candidate {:.1}%), session items {:.1}%; \
                 mean overlap with ours {:.1}%",
                path.display(),
                100.0 * tc.target,
                100.0 * tc.last_item,
                100.0 * tc.last_item_first,
                100.0 * tc.session_items,
                100.0 * overlap
            ),
        }
    }
}
