//! Phases I and II of LLM-DMsRec (paper sections 3.2, 4.1, 4.2), as resumable stages:
//!
//! 1. [`candidates`]: the pre-trained backbone's top-K items per example (Eq. 2–3).
//! 2. [`prompt`]: Prompt 1 (instruction) + Prompt 2 (session and candidate titles).
//! 3. [`llm`]: one [`llm::LlmBackend`] trait; [`gguf`] runs GGUF models in-process with
//!    constrained decoding ([`constrain`]), [`http`] calls OpenAI-compatible servers.
//! 4. [`parse`]: answers → intents matched to candidates; explicit vs latent (Eq. 5).
//! 5. [`encoder`] + [`embed`]: BERT-family sentence embeddings, E_e and E_l per example (Eq. 6–7).
//! 6. [`cache`]: every LLM answer in SQLite, so a killed run loses nothing.

pub mod cache;
pub mod candidates;
pub mod constrain;
pub mod embed;
pub mod encoder;
pub mod gguf;
pub mod http;
pub mod llm;
pub mod parse;
pub mod prompt;
pub mod replay;
