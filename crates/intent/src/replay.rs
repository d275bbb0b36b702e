//! Finished intents as item ids, and a backend that replays them.
//!
//! An intent stage writes `intent_items_<split>.tsv`: one line per answered example,
//! `example index<TAB>item ids of its intents, space-separated` (no titles, so the file carries
//! no dataset content and can be committed). [`ReplayBackend`] turns such a file back into the
//! answers the LLM gave (`title; title`, titles from the user's own catalog), so the parse and
//! embedding steps run exactly as after generation, without the LLM. Free-text intents that
//! matched no candidate have no item id and are not recorded.

use crate::llm::{ChatRequest, Completion, GenerationSettings, LlmBackend};
use crate::prompt::prompt_hash;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Intent item ids per example index, in answer order.
pub type IntentItems = BTreeMap<usize, Vec<u32>>;

/// Writes an intent-items file (atomically).
pub fn write_intent_items(path: &Path, items: &IntentItems) -> Result<()> {
    let mut text = String::new();
    for (index, ids) in items {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        text.push_str(&format!("{index}\t{}\n", ids.join(" ")));
    }
    dmsrec_data::atomic::write_bytes_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Reads an intent-items file; errors name the file and line.
pub fn read_intent_items(path: &Path) -> Result<IntentItems> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = IntentItems::new();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), n + 1);
        if line.trim().is_empty() {
            continue;
        }
        let (index, ids) =
            line.split_once('\t').with_context(|| format!("{}: expected `index<TAB>ids`", at()))?;
        let index: usize =
            index.trim().parse().with_context(|| format!("{}: bad example index {index:?}", at()))?;
        let ids = ids
            .split_whitespace()
            .map(|t| {
                t.parse::<u32>()
                    .ok()
                    .filter(|&id| id > 0)
                    .with_context(|| format!("{}: bad item id {t:?}", at()))
            })
            .collect::<Result<Vec<u32>>>()?;
        if out.insert(index, ids).is_some() {
            bail!("{}: example {index} listed twice", at());
        }
    }
    Ok(out)
}

/// An [`LlmBackend`] that answers each known prompt with a recorded answer.
pub struct ReplayBackend {
    id: String,
    answers: HashMap<String, String>,
}

impl ReplayBackend {
    /// `answers` pairs each prompt with the answer to give; `id` names the source in caches and results.
    pub fn new(id: impl Into<String>, answers: impl IntoIterator<Item = (ChatRequest, String)>) -> Self {
        let answers = answers.into_iter().map(|(req, text)| (prompt_hash(&req), text)).collect();
        Self { id: id.into(), answers }
    }
}

impl LlmBackend for ReplayBackend {
    fn model_id(&self) -> String {
        self.id.clone()
    }

    fn generate(
        &mut self,
        requests: &[ChatRequest],
        _settings: &GenerationSettings,
    ) -> Result<Vec<Completion>> {
        requests
            .iter()
            .map(|r| {
                let text = self
                    .answers
                    .get(&prompt_hash(r))
                    .with_context(|| format!("{}: no recorded answer for this prompt", self.id))?;
                Ok(Completion { text: text.clone(), prompt_tokens: 0, completion_tokens: 0 })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.tsv");
        let items: IntentItems = [(0, vec![5, 7]), (3, vec![]), (9, vec![2])].into_iter().collect();
        write_intent_items(&path, &items).unwrap();
        assert_eq!(read_intent_items(&path).unwrap(), items);
        std::fs::write(&path, "0\t5 7\n1\t5 x\n").unwrap();
        let err = format!("{:#}", read_intent_items(&path).unwrap_err());
        assert!(err.contains("items.tsv:2") && err.contains("\"x\""), "{err}");
        std::fs::write(&path, "4\t1\n4\t2\n").unwrap();
        assert!(format!("{:#}", read_intent_items(&path).unwrap_err()).contains("listed twice"));
    }

    #[test]
    fn replays_known_prompts_and_refuses_others() {
        let req = |user: &str| ChatRequest { system: "s".into(), user: user.into(), constraint: None };
        let mut b = ReplayBackend::new("replay:x", [(req("a"), "Up; Heat".to_string())]);
        let settings = GenerationSettings { max_new_tokens: 8, temperature: 0.0, seed: 1 };
        assert_eq!(b.generate(&[req("a")], &settings).unwrap()[0].text, "Up; Heat");
        assert!(b.generate(&[req("b")], &settings).is_err());
    }
}
