//! Low-level run-folder files: weights, training state (parameters + Adam moments), JSON,
//! per-example ranks. Every write is atomic (`dmsrec_data::atomic`).

use crate::optim::Adam;
use anyhow::{Context, Result};
use candle_core::Tensor;
use dmsrec_data::atomic::{write_atomic, write_bytes_atomic, write_via_path};
use dmsrec_models::ParamStore;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Weights (and buffers) of the kept (selected) epoch inside a run folder.
pub const WEIGHTS: &str = "model.safetensors";
/// Model, data and training configuration of a run folder.
pub const CONFIG: &str = "config.json";

/// Writes named tensors as safetensors, atomically.
pub fn write_safetensors_atomic(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    write_via_path(path, |tmp| candle_core::safetensors::save(tensors, tmp).map_err(std::io::Error::other))?;
    Ok(())
}

/// Saves all parameters and buffers as safetensors, atomically.
pub fn save_params_atomic(path: &Path, params: &ParamStore) -> Result<()> {
    write_safetensors_atomic(path, &params.snapshot()?)
}

/// Parameters plus Adam moments, so training resumes exactly.
pub fn save_training_state(path: &Path, params: &ParamStore, opt: &Adam) -> Result<()> {
    let mut tensors = params.snapshot()?;
    for (name, t) in opt.state_tensors()? {
        tensors.insert(name, t);
    }
    write_safetensors_atomic(path, &tensors)
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
