//! Training one variant into a run folder: the model built from its config and the data, the
//! fusion when intents are given, `config.json`, the trainer (which resumes a killed run), and
//! `result.json`. Progress goes to a callback.

use crate::intents::FusionSetup;
use anyhow::Result;
use candle_core::Device;
use dmsrec_data::{Dataset, Example};
use dmsrec_models::{BuildCtx, ModelConfig, ParamStore};
use dmsrec_train::checkpoint::CheckpointConfig;
use dmsrec_train::fusion::{IntentFusion, Plain, Recommender};
use dmsrec_train::run_files;
use dmsrec_train::trainer::validation_indices;
use dmsrec_train::{Protocol, RunResult, TrainConfig, TrainEvent, Trainer};
use std::path::Path;

/// Everything that defines one run.
pub struct RunSpec<'a> {
    pub ds: &'a Dataset,
    /// The dataset's folder (recorded in the checkpoint).
    pub data_dir: &'a Path,
    pub model: &'a ModelConfig,
    pub train: &'a TrainConfig,
    pub protocol: Protocol,
    pub run_dir: &'a Path,
    pub fusion: Option<&'a FusionSetup>,
    pub device: &'a Device,
}

/// What a run reports while it works.
pub enum RunEvent<'e> {
    /// The model is built: its parameter count.
    Started {
        parameters: usize,
    },
    Train(TrainEvent<'e>),
    Finished(&'e RunResult),
}

/// The sessions GCE-GNN's global graph is built from: the dataset's full training sessions
/// under the paper protocol (as the official code), the fitted examples' sessions (prefix +
/// target) under the valid protocol so that no held-out target enters the graph — and those too
/// when the dataset has no session list (e.g. a cross-fitting fold).
pub fn graph_sessions(ds: &Dataset, cfg: &TrainConfig, protocol: Protocol) -> Vec<Vec<u32>> {
    let full = |e: &Example| e.prefix.iter().copied().chain([e.target]).collect::<Vec<u32>>();
    match protocol {
        Protocol::Paper if !ds.train_sequences.is_empty() => ds.train_sequences.clone(),
        Protocol::Paper => ds.train.iter().map(full).collect(),
        Protocol::Valid => {
            let (fit, _) = validation_indices(ds.train.len(), cfg.valid_fraction, cfg.seed);
            fit.into_iter().map(|i| full(&ds.train[i])).collect()
        }
    }
}

/// Trains a fresh model, plain or with intents, under one protocol in `spec.run_dir` (resuming
/// from its last finished epoch). The selected weights end up there (see
/// `dmsrec_train::checkpoint::load_checkpoint`).
pub fn train_one(spec: &RunSpec, on_event: &dyn Fn(RunEvent)) -> Result<RunResult> {
    let params = ParamStore::new(spec.train.seed, spec.device);
    let sessions = graph_sessions(spec.ds, spec.train, spec.protocol);
    let ctx = BuildCtx { sessions: Some(&sessions), seed: spec.train.seed };
    let backbone = spec.model.build(&params, &ctx)?;
    std::fs::create_dir_all(spec.run_dir)?;
    let model: Box<dyn Recommender> = match spec.fusion {
        Some(f) => Box::new(IntentFusion::new(backbone, f.cfg.clone(), &params)?),
        None => Box::new(Plain(backbone)),
    };
    let record = CheckpointConfig {
        model: spec.model.clone(),
        data: spec.data_dir.canonicalize().unwrap_or_else(|_| spec.data_dir.to_path_buf()),
        dataset: spec.ds.name.clone(),
        train: spec.train.clone(),
        protocol: spec.protocol,
        joint: spec.fusion.map(FusionSetup::record),
    };
    run_files::write_json_atomic(&spec.run_dir.join(run_files::CONFIG), &record)?;
    on_event(RunEvent::Started { parameters: params.parameter_count() });
    let trainer = Trainer {
        model: model.as_ref(),
        params: &params,
        intents: spec.fusion.map(|f| &f.intents),
        cfg: spec.train.clone(),
        run_dir: spec.run_dir.to_path_buf(),
        on_event: Some(Box::new(|e| on_event(RunEvent::Train(e)))),
    };
    let result = trainer.run(spec.protocol, &spec.ds.train, &spec.ds.test)?;
    run_files::write_json_atomic(&spec.run_dir.join("result.json"), &result)?;
    on_event(RunEvent::Finished(&result));
    Ok(result)
}
