//! Training, evaluation and checkpoints for dmsrec backbones.

pub mod align;
pub mod checkpoint;
pub mod joint;
pub mod metrics;
pub mod optim;
pub mod significance;
pub mod trainer;

pub use metrics::Metrics;
pub use optim::{Adam, AdamConfig, Schedule};
pub use trainer::{
    evaluate_ranks, evaluate_rows, Plain, Protocol, Recommender, RunResult, Split, TrainConfig, Trainer,
};
