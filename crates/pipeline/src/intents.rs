//! The intent stage's `embeddings_<split>.safetensors` read as fusion features.

use anyhow::{ensure, Context, Result};
use candle_core::Device;
use dmsrec_data::Dataset;
use dmsrec_intent::embed::IntentEmbeddings;
use dmsrec_train::checkpoint::FusionRecord;
use dmsrec_train::fusion::{FusionConfig, IntentFeatures, IntentRow, IntentUse, SplitIntents};
use std::path::{Path, PathBuf};

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
/// (rows for a subset of the split's examples, named by its `index` tensor), and their width.
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

/// Both splits' intent features from the intent stage's folder `dir`, and their width.
pub fn load_split_intents(dir: &Path, ds: &Dataset, usage: IntentUse) -> Result<(SplitIntents, usize)> {
    let (train, dim) = load_intent_features(dir, "train", ds.train.len(), usage)?;
    let (test, test_dim) = load_intent_features(dir, "test", ds.test.len(), usage)?;
    ensure!(dim == test_dim, "{}: train intents are {dim} wide, test intents {test_dim}", dir.display());
    Ok((SplitIntents { train, test }, dim))
}
