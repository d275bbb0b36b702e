//! The pipeline library: what the command line, the experiment runner and any other driver call.
//! Every stage reads and writes files in a run folder and reports progress through a callback;
//! none prints.
//!
//! * [`run`]: train one variant (a backbone, plain or with intents, under one protocol) into a run
//!   folder, resumably (`dmsrec train`).
//! * [`candidates`]: phase I, each example's top-K items from a trained model (`dmsrec candidates`).
//! * [`intents`]: phase II, LLM intents → E_e / E_l files (`dmsrec intents`), and those files read
//!   back as fusion features.
//! * [`experiment`]: the paper's experiments (Table 2, Table 3 ablations, alignment variants,
//!   σ/α/β sweeps) over those stages, with Markdown reports and SVG [`plots`] (`dmsrec experiment`).
//! * [`provenance`]: what every results file records (command line, git revision, peak memory).

pub mod candidates;
pub mod experiment;
pub mod intents;
pub mod plots;
pub mod provenance;
pub mod run;

pub use candidates::{CandidatesEvent, CandidatesSpec};
pub use intents::{load_intent_features, load_split_intents, FusionSetup, IntentsEvent, IntentsSpec, Split};
pub use run::{graph_sessions, train_one, RunEvent, RunSpec};
