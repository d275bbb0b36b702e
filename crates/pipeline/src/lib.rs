//! The pipeline library: what the command line, the experiment runner and any other driver call.
//!
//! * [`run`]: train one variant (a backbone, plain or with intents, under one protocol) into a run
//!   folder, resumably; report through [`run::RunEvent`]s, never print.
//! * [`intents`]: the intent stage's embedding files as fusion features.

pub mod intents;
pub mod run;

pub use intents::{load_intent_features, load_split_intents, FusionSetup};
pub use run::{graph_sessions, train_one, RunEvent, RunSpec};
