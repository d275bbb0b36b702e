//! The training loop and the two model-selection protocols.
//!
//! * `paper`: train on all training examples, evaluate on test after every epoch, report the best
//!   value of each metric over epochs (what the authors' `main_*.py` print and the paper reports).
//! * `valid`: hold out a seeded 10% of the training examples, select the epoch with the best
//!   validation MRR@20 (early stopping on it), and evaluate that one checkpoint on test once.
//!
//! Every epoch leaves `state.safetensors` (parameters + Adam moments) and `history.json` in the
//! run folder, so a killed run resumes from its last finished epoch.

use crate::fusion::{IntentFeatures, Recommender, SplitIntents};
use crate::metrics::{rank_of, Metrics};
use crate::optim::{Adam, AdamConfig, Schedule};
use crate::run_files;
use anyhow::{Context, Result};
use candle_core::Tensor;
use dmsrec_data::Example;
use dmsrec_models::{Mode, ParamStore};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the reported epoch is chosen (CLI and serde names: `paper`, `valid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Paper,
    Valid,
}

impl Protocol {
    /// `paper` or `valid`: the run-folder name and the key in results files.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Paper => "paper",
            Protocol::Valid => "valid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub adam: AdamConfig,
    pub schedule: Schedule,
    pub seed: u64,
    /// Share of training examples held out by the `valid` protocol.
    pub valid_fraction: f64,
    /// Stop after this many epochs without a better selection metric (valid protocol).
    pub patience: Option<usize>,
    /// Dropout on the session representation during training (0 = none, the paper's recipe).
    #[serde(default)]
    pub session_dropout: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 100,
            eval_batch_size: 500,
            adam: AdamConfig::default(),
            schedule: Schedule::paper(),
            seed: 2024,
            valid_fraction: 0.1,
            patience: Some(3),
            session_dropout: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f64,
    pub loss: f64,
    /// Mean auxiliary (alignment) loss per batch, already weighted by σ; included in `loss`.
    #[serde(default)]
    pub aux_loss: f64,
    pub train_s: f64,
    pub eval_s: f64,
    /// Metrics on the evaluation set of the protocol (test for `paper`, valid for `valid`).
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub protocol: Protocol,
    pub epochs: Vec<EpochLog>,
    /// The epoch whose parameters were kept (best MRR@20 on the protocol's evaluation set).
    pub chosen_epoch: usize,
    /// Reported test metrics: best over epochs (`paper`) or of the chosen epoch (`valid`).
    pub test: Metrics,
    /// Test metrics of the kept checkpoint alone.
    pub checkpoint_test: Metrics,
    pub wall_s: f64,
}

/// Indices of (train, valid) examples after a seeded shuffle, each list ascending.
pub fn validation_indices(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_7a11d));
    let n_valid = ((n as f64) * fraction).round() as usize;
    let (valid, train) = idx.split_at(n_valid);
    let sorted = |ids: &[usize]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    (sorted(train), sorted(valid))
}

/// Rank of every example's target under the model (full ranking over all items); `intents`
/// are the examples' intent features when the model reads them.
pub fn evaluate_ranks(
    model: &dyn Recommender,
    examples: &[Example],
    intents: Option<&IntentFeatures>,
    batch_size: usize,
) -> Result<Vec<u32>> {
    let rows: Vec<usize> = (0..examples.len()).collect();
    evaluate_rows(model, examples, intents, &rows, batch_size)
}

/// Rank of the target of the examples `rows` of `examples` (and of `intents`, row for row).
pub fn evaluate_rows(
    model: &dyn Recommender,
    examples: &[Example],
    intents: Option<&IntentFeatures>,
    rows: &[usize],
    batch_size: usize,
) -> Result<Vec<u32>> {
    let mut ranks = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch_size.max(1)) {
        let sessions: Vec<&[u32]> = chunk.iter().map(|&i| examples[i].prefix.as_slice()).collect();
        let scores: Vec<Vec<f32>> = batch_scores(model, &sessions, intents, chunk)?.to_vec2()?;
        for (row, &i) in scores.iter().zip(chunk) {
            ranks.push(rank_of(row, examples[i].target as usize - 1));
        }
    }
    Ok(ranks)
}

/// Evaluation scores `[batch, n_items]` of the sessions, whose intents are the rows `rows`.
pub fn batch_scores(
    model: &dyn Recommender,
    sessions: &[&[u32]],
    intents: Option<&IntentFeatures>,
    rows: &[usize],
) -> Result<Tensor> {
    let device = model.backbone_device();
    let batch = intents.map(|f| f.batch(rows, &device)).transpose()?;
    let (enc, _) = model.encode(sessions, batch.as_ref(), &mut Mode::Eval)?;
    Ok(model.backbone().scores(&enc, &mut Mode::Eval)?)
}

/// The training loss of the examples `rows` of `train`: softmax cross-entropy over the item
/// scores of the (dropped-out) session representation, plus the model's auxiliary loss. Returns
/// the total loss and the auxiliary part's value (0 without one).
pub fn batch_loss(
    model: &dyn Recommender,
    train: &[Example],
    intents: Option<&IntentFeatures>,
    rows: &[usize],
    session_dropout: f64,
    rng: &mut ChaCha8Rng,
) -> Result<(Tensor, f64)> {
    let batch: Vec<&Example> = rows.iter().map(|&i| &train[i]).collect();
    let sessions: Vec<&[u32]> = batch.iter().map(|e| e.prefix.as_slice()).collect();
    let intent_batch = intents.map(|f| f.batch(rows, &model.backbone_device())).transpose()?;
    let mut mode = Mode::Train(rng);
    let (mut enc, aux) = model.encode(&sessions, intent_batch.as_ref(), &mut mode)?;
    enc.session = mode.dropout(&enc.session, session_dropout)?;
    let loss = recommendation_loss(&model.backbone().scores(&enc, &mut mode)?, &batch)?;
    match aux {
        Some(aux) => Ok(((loss + &aux)?, aux.to_scalar::<f32>()? as f64)),
        None => Ok((loss, 0.0)),
    }
}

/// Softmax cross-entropy of the targets over all item scores.
pub fn recommendation_loss(scores: &Tensor, batch: &[&Example]) -> Result<Tensor> {
    let targets: Vec<u32> = batch.iter().map(|e| e.target - 1).collect();
    let targets = Tensor::from_vec(targets, batch.len(), scores.device())?;
    Ok(dmsrec_models::ops::softmax_cross_entropy(scores, &targets)?)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct History {
    epochs: Vec<EpochLog>,
}

/// What a running training reports.
pub enum TrainEvent<'e> {
    /// `done` of `total` batches of `epoch` are finished.
    Batch { epoch: usize, done: usize, total: usize },
    /// An epoch finished (trained and evaluated).
    Epoch(&'e EpochLog),
}

/// Receives the training's events (the CLI draws its progress bar from them).
pub type TrainCallback<'a> = Box<dyn Fn(TrainEvent) + 'a>;

/// Trains one backbone under one protocol, with its state in `run_dir`.
pub struct Trainer<'a> {
    pub model: &'a dyn Recommender,
    pub params: &'a ParamStore,
    /// The examples' intents, for a model that fuses them.
    pub intents: Option<&'a SplitIntents>,
    pub cfg: TrainConfig,
    pub run_dir: PathBuf,
    /// Called after every batch and epoch.
    pub on_event: Option<TrainCallback<'a>>,
}

impl<'a> Trainer<'a> {
    fn emit(&self, event: TrainEvent) {
        if let Some(cb) = &self.on_event {
            cb(event);
        }
    }

    /// One pass over `fit` (indices of training examples); returns the mean (total, auxiliary) loss.
    fn train_epoch(
        &self,
        opt: &mut Adam,
        train: &[Example],
        fit: &[usize],
        epoch: usize,
    ) -> Result<(f64, f64)> {
        let mut order = fit.to_vec();
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed.wrapping_add(epoch as u64));
        order.shuffle(&mut rng);
        let n_batches = order.len().div_ceil(self.cfg.batch_size);
        let (mut total, mut total_aux, mut done) = (0.0, 0.0, 0);
        for rows in order.chunks(self.cfg.batch_size) {
            let intents = self.intents.map(|i| &i.train);
            let (loss, aux) =
                batch_loss(self.model, train, intents, rows, self.cfg.session_dropout, &mut rng)?;
            total_aux += aux;
            total += loss.to_scalar::<f32>()? as f64;
            opt.step(&loss.backward()?)?;
            done += 1;
            self.emit(TrainEvent::Batch { epoch, done, total: n_batches });
        }
        let n = n_batches.max(1) as f64;
        Ok((total / n, total_aux / n))
    }

    /// Runs the protocol on `train`/`test`; resumes from `run_dir` when it holds a finished epoch.
    pub fn run(&self, protocol: Protocol, train: &[Example], test: &[Example]) -> Result<RunResult> {
        let start = Instant::now();
        std::fs::create_dir_all(&self.run_dir)
            .with_context(|| format!("creating {}", self.run_dir.display()))?;
        let (train_intents, test_intents) = (self.intents.map(|i| &i.train), self.intents.map(|i| &i.test));
        // The paper protocol evaluates every epoch on test; valid on the held-out training rows.
        let (fit, eval_examples, eval_intents, eval_rows) = match protocol {
            Protocol::Paper => ((0..train.len()).collect(), test, test_intents, (0..test.len()).collect()),
            Protocol::Valid => {
                let (fit, valid) = validation_indices(train.len(), self.cfg.valid_fraction, self.cfg.seed);
                (fit, train, train_intents, valid)
            }
        };
        let test_rows: Vec<usize> = (0..test.len()).collect();
        let mut opt = Adam::new(self.params.vars(), self.cfg.adam);
        let mut history = History::default();
        let state_path = self.run_dir.join("state.safetensors");
        let history_path = self.run_dir.join("history.json");
        let best_path = self.run_dir.join(run_files::WEIGHTS);
        if state_path.exists() && history_path.exists() {
            history = serde_json::from_slice(&std::fs::read(&history_path)?)
                .with_context(|| format!("reading {}", history_path.display()))?;
            run_files::load_training_state(&state_path, self.params, &mut opt)?;
            tracing::info!("resuming {} after epoch {}", self.run_dir.display(), history.epochs.len());
        }
        let mut best_value =
            history.epochs.iter().map(|e| e.metrics.get("MRR@20")).fold(f64::NEG_INFINITY, f64::max);
        let mut since_best =
            history.epochs.iter().rev().take_while(|e| e.metrics.get("MRR@20") < best_value).count();
        for epoch in history.epochs.len()..self.cfg.epochs {
            if protocol == Protocol::Valid && self.cfg.patience.is_some_and(|p| since_best >= p) {
                tracing::info!("early stop: {since_best} epochs without a better valid MRR@20");
                break;
            }
            let lr = self.cfg.schedule.lr_at(self.cfg.adam.lr, epoch);
            opt.set_lr(lr);
            let t0 = Instant::now();
            let (loss, aux_loss) = self.train_epoch(&mut opt, train, &fit, epoch)?;
            let train_s = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let ranks =
                evaluate_rows(self.model, eval_examples, eval_intents, &eval_rows, self.cfg.eval_batch_size)?;
            let metrics = Metrics::from_ranks(&ranks);
            let eval_s = t1.elapsed().as_secs_f64();
            let log = EpochLog { epoch, lr, loss, aux_loss, train_s, eval_s, metrics };
            self.emit(TrainEvent::Epoch(&log));
            let value = log.metrics.get("MRR@20");
            if value > best_value {
                best_value = value;
                since_best = 0;
                run_files::save_params_atomic(&best_path, self.params)?;
            } else {
                since_best += 1;
            }
            history.epochs.push(log);
            run_files::save_training_state(&state_path, self.params, &opt)?;
            run_files::write_json_atomic(&history_path, &history)?;
        }
        let chosen_epoch = history
            .epochs
            .iter()
            .max_by(|a, b| a.metrics.get("MRR@20").total_cmp(&b.metrics.get("MRR@20")))
            .map(|e| e.epoch)
            .context("no epoch was trained")?;
        // Keep the selected parameters in the model.
        self.params.restore(&candle_core::safetensors::load(&best_path, self.params.device())?)?;
        let ranks = evaluate_rows(self.model, test, test_intents, &test_rows, self.cfg.eval_batch_size)?;
        let checkpoint_test = Metrics::from_ranks(&ranks);
        run_files::write_ranks_atomic(&self.run_dir.join("test_ranks.txt"), &ranks)?;
        let test = match protocol {
            Protocol::Paper => Metrics::best_of(history.epochs.iter().map(|e| &e.metrics)),
            Protocol::Valid => checkpoint_test.clone(),
        };
        Ok(RunResult {
            protocol,
            epochs: history.epochs,
            chosen_epoch,
            test,
            checkpoint_test,
            wall_s: start.elapsed().as_secs_f64(),
        })
    }
}

/// The run folder of one protocol inside an output folder.
pub fn protocol_dir(out: &Path, protocol: Protocol) -> PathBuf {
    out.join(protocol.name())
}
