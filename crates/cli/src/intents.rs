//! Phase I of LLM-DMsRec from the command line: candidates from a trained backbone.

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Args, ValueEnum};
use dmsrec_data::{tsv, Example};
use dmsrec_intent::candidates::{coverage, read_candidates, top_k_candidates, write_candidates};
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
    /// Another candidate file for the test split (e.g. the authors' `test_candidates.tsv`) to compare with.
    #[arg(long)]
    compare: Option<PathBuf>,
}

pub fn candidates(a: &CandidatesArgs) -> Result<()> {
    let (cfg, _params, model) = dmsrec_train::checkpoint::load_checkpoint(&a.checkpoint, &Device::Cpu)?;
    let dir = a.data.clone().unwrap_or_else(|| cfg.data.clone());
    let ds = tsv::read_dataset(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let splits: Vec<(&str, &[Example])> = match a.split {
        SplitArg::Train => vec![("train", &ds.train)],
        SplitArg::Test => vec![("test", &ds.test)],
        SplitArg::Both => vec![("train", &ds.train), ("test", &ds.test)],
    };
    for (name, examples) in splits {
        let cands = top_k_candidates(model.as_ref(), examples, a.k, 500)?;
        let path = a.out.join(format!("{name}_candidates.tsv"));
        write_candidates(&path, &cands)?;
        let cov = coverage(examples, &cands)?;
        println!(
            "{name}: {} examples, K = {}: target among candidates {:.1}%, last clicked item {:.1}% -> {}",
            cov.examples,
            a.k,
            100.0 * cov.target,
            100.0 * cov.last_item,
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
                "  {}: target {:.1}%, last clicked item {:.1}%; mean overlap with ours {:.1}%",
                other.display(),
                100.0 * tc.target,
                100.0 * tc.last_item,
                100.0 * overlap
            );
        }
    }
    Ok(())
}
