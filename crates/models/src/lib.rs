//! Session-based recommendation backbones for dmsrec, on candle.
//!
//! Every model implements [`Backbone`]: [`Backbone::encode`] turns a batch of sessions into its
//! session representation G (plus whatever its scoring needs), [`Backbone::scores`] ranks every
//! item. Intent fusion (in `dmsrec-train`) sits between the two: it adds the projected intents
//! to `Encoded::session` and leaves the rest to the model, so no model file knows about intents.
//! Models are built from a [`ModelConfig`] (the registry, stored in checkpoints) and a
//! [`BuildCtx`] that carries what a model needs from the data (GCE-GNN's global graph).

pub mod gcegnn;
pub mod global_graph;
pub mod graph;
pub mod init;
pub(crate) mod layers;
pub mod ops;
pub mod share;
pub mod srgnn;
pub mod tagnn;

use candle_core::{Result, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::any::Any;
use std::sync::Arc;

pub use gcegnn::{GceGnn, GceGnnConfig};
pub use init::{Dense, ParamStore};
pub use share::{Share, ShareConfig};
pub use srgnn::{SrGnn, SrGnnConfig};
pub use tagnn::{Tagnn, TagnnConfig};

/// Evaluation, or training with the seeded stream every dropout draws from (so a run repeats
/// exactly and resumes at an epoch boundary: the trainer seeds one stream per epoch).
pub enum Mode<'r> {
    Eval,
    Train(&'r mut ChaCha8Rng),
}

impl Mode<'_> {
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train(_))
    }

    /// Inverted dropout in training, the identity in evaluation.
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        match self {
            Mode::Eval => Ok(x.clone()),
            Mode::Train(rng) => ops::dropout(x, p, rng),
        }
    }
}

/// What a model may take from the data when it is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildCtx<'a> {
    /// The full training sessions (GCE-GNN builds its global item graph from them). None when the
    /// model is restored from a checkpoint: its buffers are then placeholders that loading the
    /// weights overwrites.
    pub sessions: Option<&'a [Vec<u32>]>,
    /// Seed of dataset-level sampling (GCE-GNN's fixed neighbour sample).
    pub seed: u64,
}

/// A batch encoded by a backbone.
pub struct Encoded {
    /// Session representation G `[batch, d]`: what fusion adds intents to and what scoring reads.
    pub session: Tensor,
    /// The attention readout before the final layer (SR-GNN's and TAGNN's `s_g`), which the
    /// authors' code aligns with the intents; None where that is G itself.
    pub attention: Option<Tensor>,
    /// Model-private state that scoring needs besides `session` (TAGNN's click states).
    pub context: Option<Arc<dyn Any + Send + Sync>>,
}

impl Encoded {
    pub fn new(session: Tensor) -> Self {
        Self { session, attention: None, context: None }
    }

    /// The tensor the authors' code aligns with the intents.
    pub fn authors_alignment(&self) -> &Tensor {
        self.attention.as_ref().unwrap_or(&self.session)
    }
}

/// A session recommender: sessions → representation → scores over every item.
pub trait Backbone: Send + Sync {
    /// Registry name, e.g. `srgnn`.
    fn kind(&self) -> ModelKind;
    /// Embedding size d (the width of `Encoded::session`).
    fn dim(&self) -> usize;
    /// Number of real items (ids `1..=n_items`).
    fn n_items(&self) -> usize;
    /// Where its parameters live.
    fn device(&self) -> &candle_core::Device;
    /// Encodes the sessions (item ids ≥ 1, each non-empty).
    fn encode(&self, sessions: &[&[u32]], mode: &mut Mode) -> Result<Encoded>;
    /// Scores `[batch, n_items]` of every item; column i is item i + 1.
    fn scores(&self, enc: &Encoded, mode: &mut Mode) -> Result<Tensor>;
}

/// `session [b, d] · item_embeddings [n, d]ᵀ`, the scoring of most backbones.
pub fn dot_scores(session: &Tensor, item_embeddings: &Tensor) -> Result<Tensor> {
    session.matmul(&item_embeddings.t()?)
}

/// The registered models; `--model` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Srgnn,
    Tagnn,
    Gcegnn,
    Share,
}

impl ModelKind {
    pub const ALL: [ModelKind; 4] = [ModelKind::Srgnn, ModelKind::Tagnn, ModelKind::Gcegnn, ModelKind::Share];

    /// The name in configs, run folders and results files.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Srgnn => "srgnn",
            ModelKind::Tagnn => "tagnn",
            ModelKind::Gcegnn => "gcegnn",
            ModelKind::Share => "share",
        }
    }

    /// The name in the paper's tables.
    pub fn label(self) -> &'static str {
        match self {
            ModelKind::Srgnn => "SR-GNN",
            ModelKind::Tagnn => "TAGNN",
            ModelKind::Gcegnn => "GCE-GNN",
            ModelKind::Share => "SHARE",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What model configs take from a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    pub n_items: usize,
    /// Longest training prefix (the official codes pad every training batch to it).
    pub train_max_len: usize,
    /// Longest test prefix.
    pub test_max_len: usize,
}

impl DataShape {
    pub fn of(ds: &dmsrec_data::Dataset) -> Self {
        let longest = |ex: &[dmsrec_data::Example]| ex.iter().map(|e| e.prefix.len()).max().unwrap_or(1);
        Self { n_items: ds.n_items(), train_max_len: longest(&ds.train), test_max_len: longest(&ds.test) }
    }
}

/// Which backbone, with its hyper-parameters; stored in checkpoint configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum ModelConfig {
    Srgnn(SrGnnConfig),
    Tagnn(TagnnConfig),
    Gcegnn(GceGnnConfig),
    Share(ShareConfig),
}

impl ModelConfig {
    /// The official defaults of `kind` for a dataset of this shape.
    pub fn for_data(kind: ModelKind, shape: &DataShape) -> Self {
        match kind {
            ModelKind::Srgnn => ModelConfig::Srgnn(SrGnnConfig::new(shape.n_items)),
            ModelKind::Tagnn => ModelConfig::Tagnn(TagnnConfig::new(shape)),
            ModelKind::Gcegnn => ModelConfig::Gcegnn(GceGnnConfig::new(shape)),
            ModelKind::Share => ModelConfig::Share(ShareConfig::new(shape.n_items)),
        }
    }

    /// `kind`'s defaults for `shape`, with the fields of `overrides` (a JSON object, e.g. from
    /// `--model-config FILE` and flags) replacing them; an unknown field is an error.
    pub fn with_overrides(
        kind: ModelKind,
        shape: &DataShape,
        overrides: &serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<Self, String> {
        let mut value = serde_json::to_value(Self::for_data(kind, shape)).map_err(|e| e.to_string())?;
        let fields = value.as_object_mut().expect("a model config is a JSON object");
        for (k, v) in overrides {
            if k == "model" {
                continue;
            }
            if !fields.contains_key(k) {
                let known: Vec<&str> = fields.keys().filter(|k| *k != "model").map(|k| k.as_str()).collect();
                return Err(format!("{kind} has no setting {k:?} (it has: {})", known.join(", ")));
            }
            fields.insert(k.clone(), v.clone());
        }
        serde_json::from_value(value).map_err(|e| format!("{kind} settings: {e}"))
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::Srgnn(_) => ModelKind::Srgnn,
            ModelConfig::Tagnn(_) => ModelKind::Tagnn,
            ModelConfig::Gcegnn(_) => ModelKind::Gcegnn,
            ModelConfig::Share(_) => ModelKind::Share,
        }
    }

    /// Builds the backbone, creating its parameters (and buffers) in `ps`.
    pub fn build(&self, ps: &ParamStore, ctx: &BuildCtx) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            ModelConfig::Srgnn(c) => Box::new(SrGnn::new(c.clone(), ps)?),
            ModelConfig::Tagnn(c) => Box::new(Tagnn::new(c.clone(), ps)?),
            ModelConfig::Gcegnn(c) => Box::new(GceGnn::new(c.clone(), ps, ctx)?),
            ModelConfig::Share(c) => Box::new(Share::new(c.clone(), ps)?),
        })
    }

    /// Whether training draws dropout masks inside the model.
    pub fn uses_dropout(&self) -> bool {
        match self {
            ModelConfig::Srgnn(_) | ModelConfig::Tagnn(_) => false,
            ModelConfig::Gcegnn(c) => {
                [c.dropout_gcn, c.dropout_local, c.dropout_global].iter().any(|&p| p > 0.0)
            }
            ModelConfig::Share(c) => c.dropout > 0.0,
        }
    }

    pub fn n_items(&self) -> usize {
        match self {
            ModelConfig::Srgnn(c) => c.n_items,
            ModelConfig::Tagnn(c) => c.n_items,
            ModelConfig::Gcegnn(c) => c.n_items,
            ModelConfig::Share(c) => c.n_items,
        }
    }
}

/// The device named by `cpu`, `cuda` or `cuda:N`: the one place commands choose a device.
pub fn parse_device(spec: &str) -> Result<candle_core::Device> {
    match spec {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" => candle_core::Device::new_cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => candle_core::Device::new_cuda(n),
            _ => Err(candle_core::Error::Msg(format!("unknown device {other:?} (cpu, cuda or cuda:N)"))),
        },
    }
}
