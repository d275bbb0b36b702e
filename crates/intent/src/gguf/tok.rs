//! A `tokenizers::Tokenizer` rebuilt from a GGUF file's `tokenizer.ggml.*` metadata (byte-level
//! BPE, `tokenizer.ggml.model = gpt2`), equivalent to the model's Hugging Face tokenizer.json.
//!
//! The pre-tokenizer follows `tokenizer.ggml.pre` (llama.cpp's names):
//! * `smollm` (SmolLM/SmolLM2, also starcoder-style): digits split one by one, then the GPT-2
//!   regex inside ByteLevel — `Sequence[Digits(individual), ByteLevel(use_regex)]`;
//! * `qwen2`: NFC normalization and the Qwen2 regex split, then ByteLevel without its regex;
//! * `llama-bpe` / `llama3`: the Llama-3 regex (digits in groups of up to 3);
//! * anything else (`gpt2`, `default`): plain GPT-2 ByteLevel, with a warning.

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde_json::{json, Map, Value};
use tokenizers::Tokenizer;

const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let v = ct.metadata.get(key).with_context(|| format!("GGUF metadata has no {key}"))?;
    v.to_vec()?.iter().map(|x| Ok(x.to_string()?.clone())).collect()
}

fn ints(ct: &gguf_file::Content, key: &str) -> Result<Option<Vec<i32>>> {
    let Some(v) = ct.metadata.get(key) else { return Ok(None) };
    let out = v
        .to_vec()?
        .iter()
        .map(|x| x.to_i32().or_else(|_| x.to_u32().map(|u| u as i32)).map_err(anyhow::Error::from))
        .collect::<Result<Vec<i32>>>()?;
    Ok(Some(out))
}

/// The tokenizer.json document for the GGUF's tokenizer.
pub fn tokenizer_json(ct: &gguf_file::Content) -> Result<Value> {
    let model =
        ct.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if model != "gpt2" {
        bail!("GGUF tokenizer model {model:?} is not supported (only byte-level BPE, \"gpt2\"); pass a tokenizer.json");
    }
    let pre =
        ct.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let tokens = strings(ct, "tokenizer.ggml.tokens")?;
    let merges = strings(ct, "tokenizer.ggml.merges")?;
    let types = ints(ct, "tokenizer.ggml.token_type")?.unwrap_or_default();

    let mut vocab = Map::with_capacity(tokens.len());
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        if vocab.contains_key(tok) {
            tracing::warn!("GGUF vocabulary repeats token {tok:?} (id {id}); the later id is unreachable");
            continue;
        }
        vocab.insert(tok.clone(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED {
            added.push(json!({
                "id": id,
                "content": tok,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": ty == TYPE_CONTROL,
            }));
        }
    }
    let byte_level = |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    let (normalizer, pre_tokenizer) = match pre.as_str() {
        "smollm" | "starcoder" | "refact" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_REGEX), byte_level(false)]}),
        ),
        "llama-bpe" | "llama3" | "llama-v3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_REGEX), byte_level(false)]}),
        ),
        other => {
            if other != "gpt2" {
                tracing::warn!("GGUF pre-tokenizer {other:?} unknown; using the GPT-2 regex");
            }
            (Value::Null, byte_level(true))
        }
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        },
    }))
}

pub fn tokenizer_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let doc = tokenizer_json(ct)?;
    let bytes = serde_json::to_vec(&doc)?;
    Tokenizer::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("building the tokenizer from GGUF metadata: {e}"))
}
