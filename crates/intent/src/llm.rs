//! The interface every LLM backend implements.

use serde::{Deserialize, Serialize};

/// The answer must be `choice; choice; …` with every choice one of `choices` (a prompt's
/// candidate titles), between `min_items` and `max_items` of them, then end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub choices: Vec<String>,
    pub min_items: usize,
    pub max_items: usize,
    /// Written between choices; the paper's format is `"; "`.
    pub separator: String,
}

/// One chat: the system message (the paper's Prompt 1) and the user message (Prompt 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    pub system: String,
    pub user: String,
    /// Constrained (guided) decoding where the backend supports it.
    pub constraint: Option<Constraint>,
}

/// Decoding settings; part of the cache key of every answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub max_new_tokens: usize,
    /// 0 = greedy (deterministic, the default).
    pub temperature: f64,
    pub seed: u64,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self { max_new_tokens: 128, temperature: 0.0, seed: 2024 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

pub trait LlmBackend {
    /// Identifies the model (file name + size, or server model name) in cache keys and results.
    fn model_id(&self) -> String;
    /// Answers a batch of chats, in order. Backends may decode them together.
    fn generate(
        &mut self,
        requests: &[ChatRequest],
        settings: &GenerationSettings,
    ) -> anyhow::Result<Vec<Completion>>;
}
