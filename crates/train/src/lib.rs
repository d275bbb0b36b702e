//! Training, evaluation and checkpoints for dmsrec backbones.
//!
//! Dependencies run one way: `fusion` (the [`Recommender`]s: a plain backbone, or one with intents)
//! ← `trainer` ← `checkpoint` (run-folder records and loading), with `align`, `metrics`, `optim`
//! and `run_files` (low-level run-folder I/O) below them.

pub mod align;
pub mod checkpoint;
pub mod fusion;
pub mod metrics;
pub mod optim;
pub mod run_files;
pub mod significance;
pub mod trainer;

pub use fusion::{IntentFusion, Plain, Recommender};
pub use metrics::Metrics;
pub use optim::{Adam, AdamConfig, Schedule};
pub use trainer::{evaluate_ranks, evaluate_rows, Protocol, RunResult, TrainConfig, TrainEvent, Trainer};
