//! End-to-end training tests on small data: learning, checkpoints, resumption.

use candle_core::Device;
use dmsrec_data::{sessions_to_examples, Example};
use dmsrec_models::{BuildCtx, DataShape, ModelConfig, ModelKind, ParamStore, SrGnnConfig};
use dmsrec_train::checkpoint::{self, CheckpointConfig};
use dmsrec_train::run_files;
use dmsrec_train::{evaluate_ranks, Protocol, Schedule, TrainConfig, Trainer};
use std::path::Path;

fn small_config(n_items: usize) -> ModelConfig {
    ModelConfig::Srgnn(SrGnnConfig { n_items, dim: 16, step: 1, nonhybrid: false })
}

fn train_config(epochs: usize, lr: f64) -> TrainConfig {
    let mut cfg =
        TrainConfig { epochs, batch_size: 8, schedule: Schedule::Constant, seed: 11, ..Default::default() };
    cfg.adam.lr = lr;
    cfg.patience = None;
    cfg
}

fn run(
    model_cfg: &ModelConfig,
    cfg: &TrainConfig,
    dir: &Path,
    protocol: Protocol,
    train: &[Example],
    test: &[Example],
) -> dmsrec_train::RunResult {
    let params = ParamStore::new(cfg.seed, &Device::Cpu);
    let sessions: Vec<Vec<u32>> =
        train.iter().map(|e| e.prefix.iter().copied().chain([e.target]).collect()).collect();
    let ctx = BuildCtx { sessions: Some(&sessions), seed: cfg.seed };
    let model = dmsrec_train::Plain(model_cfg.build(&params, &ctx).unwrap());
    let trainer = Trainer {
        model: &model,
        params: &params,
        intents: None,
        cfg: cfg.clone(),
        run_dir: dir.to_path_buf(),
        on_event: None,
    };
    trainer.run(protocol, train, test).unwrap()
}

/// Sessions walking a fixed cycle over 12 items from different starts: the next item is
/// always determined by the last one.
fn cycle_examples() -> Vec<Example> {
    let n = 12u32;
    let sessions: Vec<Vec<u32>> = (0..n).map(|start| (0..5).map(|k| (start + k) % n + 1).collect()).collect();
    sessions_to_examples(&sessions, true)
}

#[test]
fn overfits_a_tiny_dataset_to_top1() {
    let examples = cycle_examples();
    let dir = tempfile::tempdir().unwrap();
    let cfg = train_config(40, 0.01);
    let model_cfg = small_config(12);
    let result = run(&model_cfg, &cfg, dir.path(), Protocol::Paper, &examples, &examples);
    let loaded = {
        std::fs::write(
            dir.path().join(run_files::CONFIG),
            serde_json::to_vec(&CheckpointConfig {
                model: model_cfg.clone(),
                data: dir.path().into(),
                dataset: "cycle".into(),
                train: cfg.clone(),
                protocol: Protocol::Paper,
                joint: None,
            })
            .unwrap(),
        )
        .unwrap();
        checkpoint::load_checkpoint(dir.path(), &Device::Cpu).unwrap()
    };
    let ranks = evaluate_ranks(loaded.model.as_ref(), &examples, None, 64).unwrap();
    let top1 = ranks.iter().filter(|&&r| r == 1).count() as f64 / ranks.len() as f64;
    assert!(top1 >= 0.98, "P@1 {top1} after training; loss {:?}", result.epochs.last().map(|e| e.loss));
    assert!(result.epochs.last().unwrap().loss < result.epochs[0].loss / 4.0);
}

#[test]
fn checkpoint_round_trip_gives_identical_ranks_and_metrics() {
    // GCE-GNN: its checkpoint must carry the sampled global graph (a buffer).
    let examples = cycle_examples();
    let dir = tempfile::tempdir().unwrap();
    let cfg = train_config(3, 0.01);
    let model_cfg = tiny(ModelKind::Gcegnn);
    let result = run(&model_cfg, &cfg, dir.path(), Protocol::Valid, &examples, &examples);
    std::fs::write(
        dir.path().join(run_files::CONFIG),
        serde_json::to_vec(&CheckpointConfig {
            model: model_cfg,
            data: dir.path().into(),
            dataset: "cycle".into(),
            train: cfg,
            protocol: Protocol::Valid,
            joint: None,
        })
        .unwrap(),
    )
    .unwrap();
    let loaded = checkpoint::load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    let ranks = evaluate_ranks(loaded.model.as_ref(), &examples, None, 7).unwrap();
    let saved = run_files::read_ranks(&dir.path().join("test_ranks.txt")).unwrap();
    assert_eq!(ranks, saved);
    assert_eq!(dmsrec_train::Metrics::from_ranks(&ranks), result.checkpoint_test);
}

/// A small `kind` over the 12 cycle items.
fn tiny(kind: ModelKind) -> ModelConfig {
    let shape = DataShape { n_items: 12, train_max_len: 4, test_max_len: 4 };
    let overrides = serde_json::json!({ "dim": 16 });
    ModelConfig::with_overrides(kind, &shape, overrides.as_object().unwrap()).unwrap()
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    for model_cfg in [small_config(12), tiny(ModelKind::Gcegnn)] {
        resumes_to_the_same_result(&model_cfg);
    }
}

/// GCE-GNN draws dropout masks inside the model: resuming must draw the same ones.
fn resumes_to_the_same_result(model_cfg: &ModelConfig) {
    let examples = cycle_examples();
    let straight = tempfile::tempdir().unwrap();
    let full = run(model_cfg, &train_config(4, 0.01), straight.path(), Protocol::Paper, &examples, &examples);
    // Stop after two epochs (as a kill between epochs would), then run again with the full plan.
    let resumed_dir = tempfile::tempdir().unwrap();
    run(model_cfg, &train_config(2, 0.01), resumed_dir.path(), Protocol::Paper, &examples, &examples);
    let resumed =
        run(model_cfg, &train_config(4, 0.01), resumed_dir.path(), Protocol::Paper, &examples, &examples);
    assert_eq!(resumed.epochs.len(), 4);
    for (a, b) in full.epochs.iter().zip(&resumed.epochs) {
        assert_eq!(a.loss, b.loss, "epoch {}", a.epoch);
        assert_eq!(a.metrics, b.metrics, "epoch {}", a.epoch);
    }
    assert_eq!(full.test, resumed.test);
}

#[test]
fn valid_protocol_holds_out_a_tenth_and_tests_once() {
    let examples = cycle_examples();
    let (fit, valid) = dmsrec_train::trainer::validation_indices(examples.len(), 0.1, 5);
    assert_eq!(fit.len() + valid.len(), examples.len());
    assert_eq!(valid.len(), (examples.len() as f64 * 0.1).round() as usize);
    assert!(valid.iter().all(|v| !fit.contains(v)));
}
