//! Model-free tests of the GGUF path: tiny random-weight GGUF files (llama and qwen2 layouts,
//! tied and untied output) written with candle's GGUF writer, with a byte-level BPE tokenizer in
//! their metadata. The forward pass is compared with candle-transformers' quantized_llama /
//! quantized_qwen2, and the whole backend (tokenizer, ChatML, prefix reuse, constrained decoding)
//! runs on them.

use super::model::{Model, WeightFormat};
use super::*;
use crate::llm::Constraint;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// GPT-2's byte → printable character map.
fn bytes_to_unicode() -> Vec<char> {
    let mut direct: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut map = vec!['\0'; 256];
    for &b in &direct {
        map[b as usize] = char::from_u32(b).unwrap();
    }
    let mut n = 0;
    for b in 0..256u32 {
        if !direct.contains(&b) {
            map[b as usize] = char::from_u32(256 + n).unwrap();
            n += 1;
            direct.push(b);
        }
    }
    map
}

const D: usize = 64;
const FFN: usize = 128;
const HEADS: u32 = 4;
const KV_HEADS: u32 = 2;
const LAYERS: usize = 2;

struct Tiny {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn write_tiny(arch: &str, tied: bool, seed: u64) -> Tiny {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let b2u = bytes_to_unicode();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    let mut types: Vec<Value> = vec![Value::I32(3); 3];
    for c in &b2u {
        tokens.push(c.to_string());
        types.push(Value::I32(1));
    }
    let merges = ["H e", "Ġ W", "a t", "Ġ t", "Ġt h"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
        types.push(Value::I32(1));
    }
    let n_vocab = tokens.len().div_ceil(32) * 32; // pad rows like real models do
    while tokens.len() < n_vocab {
        tokens.push(format!("<pad_{}>", tokens.len()));
        types.push(Value::I32(4));
    }
    let mut rand_t = |shape: &[usize], scale: f32| -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (rng.gen::<f32>() * 2.0 - 1.0) * scale).collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    };
    let q = |t: &Tensor, dt: GgmlDType| QTensor::quantize(t, dt).unwrap();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    tensors.push(("token_embd.weight".into(), q(&rand_t(&[n_vocab, D], 1.0), GgmlDType::Q8_0)));
    tensors.push(("output_norm.weight".into(), q(&(rand_t(&[D], 0.1) + 1.0).unwrap(), GgmlDType::F32)));
    if !tied {
        tensors.push(("output.weight".into(), q(&rand_t(&[n_vocab, D], 0.5), GgmlDType::Q4_1)));
    }
    let hd = D / HEADS as usize;
    let kv = hd * KV_HEADS as usize;
    for l in 0..LAYERS {
        let p = format!("blk.{l}");
        let mut push = |name: &str, t: QTensor| tensors.push((format!("{p}.{name}"), t));
        push("attn_norm.weight", q(&(rand_t(&[D], 0.1) + 1.0).unwrap(), GgmlDType::F32));
        push("ffn_norm.weight", q(&(rand_t(&[D], 0.1) + 1.0).unwrap(), GgmlDType::F32));
        push("attn_q.weight", q(&rand_t(&[D, D], 0.3), GgmlDType::Q4_1));
        push("attn_k.weight", q(&rand_t(&[kv, D], 0.3), GgmlDType::Q4_1));
        push("attn_v.weight", q(&rand_t(&[kv, D], 0.3), GgmlDType::Q4_1));
        push("attn_output.weight", q(&rand_t(&[D, D], 0.3), GgmlDType::Q4_1));
        push("ffn_gate.weight", q(&rand_t(&[FFN, D], 0.3), GgmlDType::Q4_1));
        push("ffn_up.weight", q(&rand_t(&[FFN, D], 0.3), GgmlDType::Q4_1));
        push("ffn_down.weight", q(&rand_t(&[D, FFN], 0.3), GgmlDType::Q4_1));
        if arch == "qwen2" {
            push("attn_q.bias", q(&rand_t(&[D], 0.2), GgmlDType::F32));
            push("attn_k.bias", q(&rand_t(&[kv], 0.2), GgmlDType::F32));
            push("attn_v.bias", q(&rand_t(&[kv], 0.2), GgmlDType::F32));
        }
    }
    let s = |x: &str| Value::String(x.to_string());
    let a = |k: &str| format!("{arch}.{k}");
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(arch)),
        (a("block_count"), Value::U32(LAYERS as u32)),
        (a("embedding_length"), Value::U32(D as u32)),
        (a("feed_forward_length"), Value::U32(FFN as u32)),
        (a("attention.head_count"), Value::U32(HEADS)),
        (a("attention.head_count_kv"), Value::U32(KV_HEADS)),
        (a("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (a("rope.freq_base"), Value::F32(10000.0)),
        (a("rope.dimension_count"), Value::U32(hd as u32)),
        (a("context_length"), Value::U32(4096)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s(if arch == "qwen2" { "qwen2" } else { "smollm" })),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.iter().map(|t| s(t)).collect())),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges.iter().map(|m| s(m)).collect())),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            s("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("tiny-{arch}.gguf"));
    let mut f = std::fs::File::create(&path).unwrap();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    Tiny { path, _dir: dir }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn reference_logits(arch: &str, path: &Path, steps: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let dev = Device::Cpu;
    let mut out = Vec::new();
    let mut pos = 0;
    let tensor = |t: &[u32]| Tensor::new(t, &dev).unwrap().unsqueeze(0).unwrap();
    let flat = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    if arch == "qwen2" {
        let mut m =
            candle_transformers::models::quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &dev).unwrap();
        for s in steps {
            out.push(flat(m.forward(&tensor(s), pos).unwrap()));
            pos += s.len();
        }
    } else {
        let mut m =
            candle_transformers::models::quantized_llama::ModelWeights::from_gguf(ct, &mut f, &dev).unwrap();
        for s in steps {
            out.push(flat(m.forward(&tensor(s), pos).unwrap()));
            pos += s.len();
        }
    }
    out
}

fn our_logits(path: &Path, fmt: WeightFormat, steps: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let m = Model::load(&ct, &mut f, fmt, 4096, &Device::Cpu).unwrap();
    let mut cache = m.new_cache(4).unwrap(); // small on purpose: exercises growth
    steps.iter().map(|s| m.forward(s, &mut cache).unwrap()).collect()
}

#[test]
fn gguf_tiny_forward_matches_candle_reference() {
    let prompt: Vec<u32> = (3..40).collect();
    let steps: Vec<&[u32]> = vec![&prompt[..20], &prompt[20..], &[7], &[9, 11, 13], &[5]];
    for (arch, tied) in [("llama", true), ("llama", false), ("qwen2", true), ("qwen2", false)] {
        let t = write_tiny(arch, tied, 42);
        let theirs = reference_logits(arch, &t.path, &steps);
        let ours = our_logits(&t.path, WeightFormat::Native, &steps);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let d = max_diff(a, b);
            assert!(d < 1e-3, "{arch} tied={tied} step {i}: logits differ by {d}");
        }
        // f32 weights: the same model without activation quantization, close but not equal
        let f32_logits = our_logits(&t.path, WeightFormat::F32, &steps);
        let scale = theirs[0].iter().map(|x| x.abs()).fold(0f32, f32::max);
        let d = max_diff(&f32_logits[0], &theirs[0]);
        assert!(
            d < 0.1 * scale.max(1.0),
            "{arch} tied={tied}: f32 logits far from quantized ({d} vs scale {scale})"
        );
    }
}

#[test]
fn gguf_tiny_auto_format_and_model_id() {
    let t = write_tiny("qwen2", true, 1);
    let llm = GgufLlm::load(&t.path, &GgufOptions::default()).unwrap();
    assert_eq!(llm.info().weights, WeightFormat::F32, "tiny model resolves to f32");
    assert_eq!(llm.info().architecture, "qwen2");
    assert!(llm.info().tied_embeddings);
    assert_eq!(llm.info().file_weight_type, "Q4_1");
    assert!(
        llm.model_id().starts_with("tiny-qwen2.gguf:") && llm.model_id().ends_with("@f32"),
        "{}",
        llm.model_id()
    );
    let native =
        GgufLlm::load(&t.path, &GgufOptions { weights: WeightFormat::Native, ..Default::default() }).unwrap();
    assert!(!native.model_id().contains('@'));
}

#[test]
fn gguf_tiny_tokenizer_from_metadata() {
    for arch in ["llama", "qwen2"] {
        let t = write_tiny(arch, true, 3);
        let llm = GgufLlm::load(&t.path, &GgufOptions::default()).unwrap();
        let text = "<|im_start|>user\nHello World, that is 1234 é<|im_end|>";
        let ids = llm.encode(text).unwrap();
        assert_eq!(ids[0], 1);
        assert_eq!(*ids.last().unwrap(), 2);
        // merges applied: "He" and "ĠW" are single tokens
        let he = llm.tokenizer().token_to_id("He").unwrap();
        let w = llm.tokenizer().token_to_id("ĠW").unwrap();
        assert!(ids.contains(&he) && ids.contains(&w), "{arch}: {ids:?}");
        assert_eq!(llm.tokenizer().decode(&ids, false).unwrap(), text);
        assert_eq!(llm.decode_tokens(&ids).unwrap(), "user\nHello World, that is 1234 é");
    }
}

/// The whole backend on a random model: whatever the logits, a constrained answer parses into
/// distinct candidates within the bounds; greedy decoding is deterministic; prefix reuse and
/// chunked prefill do not change the answer.
#[test]
fn gguf_tiny_constrained_generation_always_parses() {
    let choices: Vec<String> =
        ["Heat (1995)", "Alien", "Aliens", "The Matrix", "Up", "Se7en", "Amélie (2001)"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    for arch in ["llama", "qwen2"] {
        let t = write_tiny(arch, arch == "qwen2", 5);
        let mut llm =
            GgufLlm::load(&t.path, &GgufOptions { prefill_chunk: 7, ..Default::default() }).unwrap();
        let mut answers = Vec::new();
        for (k, (min, max)) in [(1, 5), (2, 3), (3, 3), (1, 1)].into_iter().enumerate() {
            let req = ChatRequest {
                system: "Pick films.".into(),
                user: format!("Session {k}: Heat, Alien. Candidates: {}", choices.join(", ")),
                constraint: Some(Constraint {
                    choices: choices.clone(),
                    min_items: min,
                    max_items: max,
                    separator: "; ".into(),
                }),
            };
            for temperature in [0.0, 1.0] {
                let settings = GenerationSettings { max_new_tokens: 40, temperature, seed: k as u64 };
                let out = llm.generate_one(&req, &settings).unwrap();
                let items: Vec<&str> = out.text.split("; ").collect();
                assert!((min..=max).contains(&items.len()), "{arch} {min}..{max}: {:?}", out.text);
                for it in &items {
                    assert!(choices.iter().any(|c| c == it), "{arch}: {it:?} not a choice in {:?}", out.text);
                }
                let mut d = items.clone();
                d.sort();
                d.dedup();
                assert_eq!(d.len(), items.len(), "{arch}: repeated title in {:?}", out.text);
                answers.push((req.clone(), settings, out));
            }
        }
        // same answers again, without prefix reuse and with another chunk size
        llm.set_reuse_prefix(false);
        llm.set_prefill_chunk(0);
        for (req, settings, out) in &answers {
            assert_eq!(&llm.generate_one(req, settings).unwrap(), out, "{arch}");
        }
        let s = llm.stats();
        assert!(s.prompts == 16 && s.prefix_reused_tokens > 0 && s.forced_tokens > 0, "{s:?}");
        // the max_new_tokens budget ends an unconstrained answer
        let free = ChatRequest { system: "x".into(), user: "y".into(), constraint: None };
        let out =
            llm.generate_one(&free, &GenerationSettings { max_new_tokens: 5, ..Default::default() }).unwrap();
        assert!(out.completion_tokens <= 5);
    }
}
