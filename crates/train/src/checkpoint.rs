//! Run-folder files: checkpoints (safetensors + JSON config), training state, per-example ranks.
//! Every write goes to a temporary file that is renamed into place.

use crate::optim::Adam;
use anyhow::{Context, Result};
use dmsrec_data::atomic::{write_atomic, write_bytes_atomic};
use dmsrec_models::ParamStore;
use serde::Serialize;
use std::path::Path;

/// Weights of the kept (selected) epoch inside a run folder.
pub const WEIGHTS: &str = "model.safetensors";
/// Model, data and training configuration of a run folder.
pub const CONFIG: &str = "config.json";

/// What a checkpoint folder's `config.json` records.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CheckpointConfig {
    pub model: dmsrec_models::ModelConfig,
    /// Dataset folder the model was trained on (absolute when known).
    pub data: std::path::PathBuf,
    pub dataset: String,
    pub train: crate::TrainConfig,
    pub protocol: crate::Protocol,
    /// Present when LLM intents were fused into the backbone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joint: Option<JointRecord>,
}

/// How a joint (backbone + intents) checkpoint was trained.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct JointRecord {
    pub config: crate::joint::JointConfig,
    /// The intent stage's output folder.
    pub intents: std::path::PathBuf,
}

impl CheckpointConfig {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG);
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Builds the model of a checkpoint folder and loads its weights.
pub fn load_checkpoint(
    dir: &Path,
    device: &candle_core::Device,
) -> Result<(CheckpointConfig, ParamStore, Box<dyn dmsrec_models::Backbone>)> {
    let cfg = CheckpointConfig::read(dir)?;
    if cfg.joint.is_some() {
        anyhow::bail!(
            "{}: a backbone + intents checkpoint needs each session's intents; its test ranks are in test_ranks.txt",
            dir.display()
        );
    }
    let params = ParamStore::new(cfg.train.seed, device);
    let model = cfg.model.build(&params)?;
    let weights = dir.join(WEIGHTS);
    params.load_safetensors(&weights).with_context(|| format!("loading {}", weights.display()))?;
    Ok((cfg, params, model))
}

fn temp_sibling(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Saves all parameters as safetensors, atomically.
pub fn save_params_atomic(path: &Path, params: &ParamStore) -> Result<()> {
    let tmp = temp_sibling(path);
    params.save_safetensors(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Parameters plus Adam moments, so training resumes exactly.
pub fn save_training_state(path: &Path, params: &ParamStore, opt: &Adam) -> Result<()> {
    let mut tensors = params.snapshot()?;
    for (name, t) in opt.state_tensors()? {
        tensors.insert(name, t);
    }
    let tmp = temp_sibling(path);
    candle_core::safetensors::save(&tensors, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

pub fn load_training_state(path: &Path, params: &ParamStore, opt: &mut Adam) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, params.device())
        .with_context(|| format!("reading training state {}", path.display()))?;
    params.restore(&tensors).with_context(|| format!("restoring parameters from {}", path.display()))?;
    opt.load_state_tensors(&tensors)
        .with_context(|| format!("restoring optimizer from {}", path.display()))?;
    Ok(())
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value)?;
    write_bytes_atomic(path, &text)?;
    Ok(())
}

/// One rank per line, in example order (for significance tests).
pub fn write_ranks_atomic(path: &Path, ranks: &[u32]) -> Result<()> {
    write_atomic(path, |w| {
        for r in ranks {
            writeln!(w, "{r}")?;
        }
        Ok(())
    })?;
    Ok(())
}

pub fn read_ranks(path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            l.trim().parse().with_context(|| format!("{}:{}: bad rank {l:?}", path.display(), i + 1))
        })
        .collect()
}
