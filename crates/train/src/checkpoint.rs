//! Checkpoint folders: what `config.json` records of a run, and loading a run's model back —
//! plain or with intents — ready to evaluate, recommend or propose candidates.

use crate::fusion::{FusionConfig, IntentFusion, Plain, Recommender};
use crate::run_files::{CONFIG, WEIGHTS};
use anyhow::{Context, Result};
use dmsrec_models::{BuildCtx, ParamStore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a checkpoint folder's `config.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointConfig {
    pub model: dmsrec_models::ModelConfig,
    /// Dataset folder the model was trained on (absolute when known).
    pub data: PathBuf,
    pub dataset: String,
    pub train: crate::TrainConfig,
    pub protocol: crate::Protocol,
    /// Present when LLM intents were fused into the backbone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<FusionRecord>,
}

/// How a backbone + intents checkpoint was trained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FusionRecord {
    pub config: FusionConfig,
    /// The intent stage's output folder.
    pub intents: PathBuf,
}

impl CheckpointConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// A checkpoint's model with its weights loaded.
pub struct Loaded {
    pub config: CheckpointConfig,
    pub params: ParamStore,
    pub model: Box<dyn Recommender>,
}

/// Builds the model of a checkpoint folder (with its intent fusion, if any) and loads its
/// weights and buffers.
pub fn load_checkpoint(dir: &Path, device: &candle_core::Device) -> Result<Loaded> {
    let config = CheckpointConfig::read(dir)?;
    let params = ParamStore::new(config.train.seed, device);
    let backbone = config.model.build(&params, &BuildCtx::default())?;
    let model: Box<dyn Recommender> = match &config.joint {
        Some(record) => Box::new(IntentFusion::new(backbone, record.config.clone(), &params)?),
        None => Box::new(Plain(backbone)),
    };
    let weights = dir.join(WEIGHTS);
    params.load_safetensors(&weights).with_context(|| format!("loading {}", weights.display()))?;
    Ok(Loaded { config, params, model })
}
