//! Training, evaluation and checkpoints for dmsrec backbones.

pub mod checkpoint;
pub mod metrics;
pub mod optim;
pub mod trainer;

pub use metrics::Metrics;
pub use optim::{Adam, AdamConfig, Schedule};
pub use trainer::{evaluate_ranks, Protocol, RunResult, TrainConfig, Trainer};
