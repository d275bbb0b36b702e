//! End-to-end training tests on small data: learning, checkpoints, resumption.

use candle_core::Device;
use dmsrec_data::{sessions_to_examples, Example};
use dmsrec_models::{ModelConfig, ParamStore, SrGnnConfig};
use dmsrec_train::checkpoint::{self, CheckpointConfig};
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
    let model = model_cfg.build(&params).unwrap();
    let trainer = Trainer {
        model: &dmsrec_train::Plain(model.as_ref()),
        params: &params,
        cfg: cfg.clone(),
        run_dir: dir.to_path_buf(),
        on_epoch: None,
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
    let (_, _, model) = {
        std::fs::write(
            dir.path().join(checkpoint::CONFIG),
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
    let ranks = evaluate_ranks(model.as_ref(), &examples, 64).unwrap();
    let top1 = ranks.iter().filter(|&&r| r == 1).count() as f64 / ranks.len() as f64;
    assert!(top1 >= 0.98, "P@1 {top1} after training; loss {:?}", result.epochs.last().map(|e| e.loss));
    assert!(result.epochs.last().unwrap().loss < result.epochs[0].loss / 4.0);
}

#[test]
fn checkpoint_round_trip_gives_identical_ranks_and_metrics() {
    let examples = cycle_examples();
    let dir = tempfile::tempdir().unwrap();
    let cfg = train_config(3, 0.01);
    let model_cfg = small_config(12);
    let result = run(&model_cfg, &cfg, dir.path(), Protocol::Valid, &examples, &examples);
    std::fs::write(
        dir.path().join(checkpoint::CONFIG),
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
    let (_, _, model) = checkpoint::load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    let ranks = evaluate_ranks(model.as_ref(), &examples, 7).unwrap();
    let saved = checkpoint::read_ranks(&dir.path().join("test_ranks.txt")).unwrap();
    assert_eq!(ranks, saved);
    assert_eq!(dmsrec_train::Metrics::from_ranks(&ranks), result.checkpoint_test);
}

#[test]
fn killed_run_resumes_to_the_same_result() {
    let examples = cycle_examples();
    let model_cfg = small_config(12);
    let straight = tempfile::tempdir().unwrap();
    let full =
        run(&model_cfg, &train_config(4, 0.01), straight.path(), Protocol::Paper, &examples, &examples);
    // Stop after two epochs (as a kill between epochs would), then run again with the full plan.
    let resumed_dir = tempfile::tempdir().unwrap();
    run(&model_cfg, &train_config(2, 0.01), resumed_dir.path(), Protocol::Paper, &examples, &examples);
    let resumed =
        run(&model_cfg, &train_config(4, 0.01), resumed_dir.path(), Protocol::Paper, &examples, &examples);
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
    let (fit, valid) = dmsrec_train::trainer::split_validation(&examples, 0.1, 5);
    assert_eq!(fit.len() + valid.len(), examples.len());
    assert_eq!(valid.len(), (examples.len() as f64 * 0.1).round() as usize);
    assert!(valid.iter().all(|v| !fit.contains(v) || examples.iter().filter(|e| *e == v).count() > 1));
}
