//! Session-based recommendation backbones for dmsrec, on candle.
//!
//! Every backbone implements [`Backbone`]: it turns a batch of sessions into *readout features*
//! (what the backbone's final linear layer reads, e.g. SR-GNN's `[s_global; h_last]`), projects
//! them to the session representation `G`, and exposes the item embeddings it scores against.
//! Keeping the readout separate from the projection lets the intent stage widen the final layer
//! to `W[readout, Ē_e, Ē_l]` once, outside every backbone file.

pub mod graph;
pub mod init;
pub mod ops;
pub mod srgnn;

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

pub use init::{Dense, ParamStore};
pub use srgnn::{SrGnn, SrGnnConfig};

/// A session recommender that exposes its representation before scoring.
pub trait Backbone {
    /// Short model name, e.g. `srgnn`.
    fn name(&self) -> &'static str;
    /// Embedding size d.
    fn dim(&self) -> usize;
    /// Width of the readout features (`2d` for SR-GNN's hybrid readout).
    fn readout_dim(&self) -> usize;
    /// Readout features `[batch, readout_dim]` for the sessions (item ids ≥ 1, each non-empty).
    /// `train` switches on training-only behaviour such as dropout.
    fn readout(&self, sessions: &[&[u32]], train: bool) -> Result<Tensor>;
    /// The backbone's own final layer: readout → session representation G `[batch, d]`.
    fn project(&self, readout: &Tensor) -> Result<Tensor>;
    /// Item embeddings `[n_items, d]`; row i is item i + 1 (padding excluded).
    fn item_embeddings(&self) -> Result<Tensor>;

    /// Session representation G `[batch, d]`.
    fn session(&self, sessions: &[&[u32]], train: bool) -> Result<Tensor> {
        self.project(&self.readout(sessions, train)?)
    }

    /// Scores of every item `[batch, n_items]`: `session · v_i`; column i is item i + 1.
    fn scores(&self, session: &Tensor) -> Result<Tensor> {
        session.matmul(&self.item_embeddings()?.t()?)
    }
}

/// Which backbone, with its hyper-parameters; stored in checkpoint configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum ModelConfig {
    Srgnn(SrGnnConfig),
}

impl ModelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Srgnn(_) => "srgnn",
        }
    }
}

impl ModelConfig {
    /// Builds the backbone, creating its parameters in `ps`.
    pub fn build(&self, ps: &ParamStore) -> Result<Box<dyn Backbone>> {
        Ok(match self {
            ModelConfig::Srgnn(c) => Box::new(SrGnn::new(c.clone(), ps)?),
        })
    }

    pub fn n_items(&self) -> usize {
        match self {
            ModelConfig::Srgnn(c) => c.n_items,
        }
    }
}
