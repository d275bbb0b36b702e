//! `dmsrec intents` (Phase II as a resumable stage) end to end, with the real SmolLM2 GGUF model
//! and all-MiniLM-L6-v2 from `models/` (scripts/fetch-models.sh). Without them the model tests
//! fail, unless `DMSREC_SKIP_MODEL_TESTS=1`, which skips them (loudly).

mod common;

use common::{dmsrec, ok, p};
use dmsrec_intent::cache::AnswerCache;
use dmsrec_intent::embed::IntentEmbeddings;
use dmsrec_intent::prompt::PromptBuilder;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn fails(args: &[&str]) -> String {
    let out = dmsrec(args);
    assert!(!out.status.success(), "dmsrec {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Models {
    gguf: PathBuf,
    encoder: PathBuf,
}

/// The offline models, or `None` (skip) when they are missing and DMSREC_SKIP_MODEL_TESTS=1.
fn models(test: &str) -> Option<Models> {
    let root = match std::env::var_os("DMSREC_MODELS") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
    };
    let m = Models {
        gguf: root.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
        encoder: root.join("all-minilm-l6-v2"),
    };
    if m.gguf.is_file() && m.encoder.join("model.safetensors").is_file() {
        return Some(m);
    }
    if std::env::var("DMSREC_SKIP_MODEL_TESTS").is_ok_and(|v| v == "1") {
        eprintln!(
            "\n*** SKIPPED {test}: models missing under {} (DMSREC_SKIP_MODEL_TESTS=1) ***\n",
            root.display()
        );
        return None;
    }
    panic!(
        "{test}: the offline models are missing ({} and {}). Run scripts/fetch-models.sh, \
         or set DMSREC_SKIP_MODEL_TESTS=1 to skip the model tests.",
        m.gguf.display(),
        m.encoder.display()
    );
}

/// Tiny synthetic shop, a 1-epoch backbone and its top-10 test candidates.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    candidates: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("shop");
    let runs = root.join("runs");
    let cands = root.join("cands");
    ok(&[
        "data",
        "synth",
        "--out",
        p(&data),
        "--items",
        "80",
        "--train-sessions",
        "200",
        "--test-sessions",
        "30",
    ]);
    ok(&["train", "--data", p(&data), "--out", p(&runs), "--epochs", "1", "--dim", "16"]);
    ok(&[
        "candidates",
        "--checkpoint",
        p(&runs.join("valid")),
        "--k",
        "10",
        "--split",
        "test",
        "--out",
        p(&cands),
    ]);
    let candidates = cands.join("test_candidates.tsv");
    assert!(candidates.is_file());
    Fixture { _tmp: tmp, root, data, candidates }
}

fn intents_args<'a>(f: &'a Fixture, m: &'a Models, out: &'a Path, limit: &'a str) -> Vec<&'a str> {
    vec![
        "intents",
        "--data",
        p(&f.data),
        "--candidates",
        p(&f.candidates),
        "--split",
        "test",
        "--limit",
        limit,
        "--k",
        "10",
        "--out",
        p(out),
        "--model",
        p(&m.gguf),
        "--encoder",
        p(&m.encoder),
    ]
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn intents_stage_outputs_constrained_intents_and_reuses_the_cache() {
    let Some(m) = models("intents_stage_outputs_constrained_intents_and_reuses_the_cache") else { return };
    let f = fixture();
    let out = f.root.join("intents");
    let args = intents_args(&f, &m, &out, "3");
    let stdout = ok(&args);
    assert!(stdout.contains("3 examples"), "{stdout}");

    for file in ["answers.sqlite", "intents_test.jsonl", "embeddings_test.safetensors", "summary_test.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let ds = dmsrec_data::tsv::read_dataset(&f.data).unwrap();
    let cands = dmsrec_intent::candidates::read_candidates(&f.candidates).unwrap();
    let builder = PromptBuilder::paper();

    let lines = jsonl(&out.join("intents_test.jsonl"));
    assert_eq!(lines.len(), 3);
    for (row, line) in lines.iter().enumerate() {
        let i = line["index"].as_u64().unwrap() as usize;
        assert_eq!(i, row, "the first 3 examples, in order");
        let ex = &ds.test[i];
        assert_eq!(line["target"].as_u64().unwrap(), ex.target as u64);
        let intents = line["intents"].as_array().unwrap();
        assert!((1..=5).contains(&intents.len()), "{line}");
        for it in intents {
            // Constrained decoding: every intent is one of the 10 candidates' titles, verbatim.
            assert_eq!(it["kind"], "exact", "{line}");
            let item = it["item"].as_u64().expect("matched item") as u32;
            assert!(cands[i][..10].contains(&item), "{item} not a candidate of example {i}");
            assert_eq!(it["text"].as_str().unwrap(), builder.item_text(&ds.catalog, item));
            assert_eq!(it["explicit"].as_bool().unwrap(), ex.prefix.contains(&item), "{line}");
        }
    }

    let tensors =
        candle_core::safetensors::load(out.join("embeddings_test.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(tensors["explicit"].dims(), &[3, 384]);
    assert_eq!(tensors["latent"].dims(), &[3, 384]);
    assert_eq!(tensors["index"].to_vec1::<u32>().unwrap(), vec![0, 1, 2]);
    let emb = IntentEmbeddings::read_safetensors(out.join("embeddings_test.safetensors")).unwrap();
    assert_eq!((emb.len(), emb.dim), (3, 384));
    assert_eq!(emb.mask, vec![1, 1, 1]);

    let s = read_json(&out.join("summary_test.json"));
    assert_eq!(s["examples"], 3);
    assert_eq!(s["backend"], "gguf");
    assert_eq!(s["k"], 10);
    assert_eq!(s["valid_rate"].as_f64(), Some(1.0));
    assert_eq!(s["exact_share"].as_f64(), Some(1.0));
    assert_eq!(s["cache"]["hits"], 0);
    assert_eq!(s["cache"]["generated"], 3);
    assert!(s["prompts_per_s"].as_f64().unwrap() > 0.0);
    assert!(s["prefill_tok_s"].as_f64().unwrap() > 0.0);
    assert!(s["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(s["encoder_sent_s"].as_f64().unwrap() > 0.0);
    let shares = s["explicit_share"].as_f64().unwrap() + s["latent_share"].as_f64().unwrap();
    assert!((shares - 1.0).abs() < 1e-9);
    assert!(s["command"].as_str().unwrap().starts_with("dmsrec intents"));

    // Again: every answer from the cache, the same intents.
    let first = std::fs::read(out.join("intents_test.jsonl")).unwrap();
    ok(&args);
    let s2 = read_json(&out.join("summary_test.json"));
    assert_eq!(s2["cache"]["hits"], 3);
    assert_eq!(s2["cache"]["generated"], 0);
    assert!(s2["prompts_per_s"].is_null());
    assert_eq!(
        std::fs::read(out.join("intents_test.jsonl")).unwrap(),
        first,
        "jsonl changed on a cached rerun"
    );
    let emb2 = IntentEmbeddings::read_safetensors(out.join("embeddings_test.safetensors")).unwrap();
    assert_eq!(emb2, emb);

    // A seeded sample: ascending example indices, the limit applied after sampling.
    let mut sample = intents_args(&f, &m, &out, "2");
    sample.extend(["--sample", "0.5", "--seed", "3"]);
    ok(&sample);
    let lines = jsonl(&out.join("intents_test.jsonl"));
    let idx: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(idx.len(), 2);
    assert!(idx[0] < idx[1] && idx[1] < 30, "{idx:?}");
    let s3 = read_json(&out.join("summary_test.json"));
    assert_eq!(s3["examples"], 2);
}

#[test]
fn intents_stage_resumes_after_sigkill_without_recomputing() {
    let Some(m) = models("intents_stage_resumes_after_sigkill_without_recomputing") else { return };
    let f = fixture();
    let out = f.root.join("intents-kill");
    let mut args = intents_args(&f, &m, &out, "8");
    args.extend(["--chunk", "1"]);

    let mut child = Command::new(env!("CARGO_BIN_EXE_dmsrec"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dmsrec intents");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let stored = line.contains("generated and stored");
                log.push(line);
                if stored {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no answer was stored in time; stderr so far:\n{}", log.join("\n"));
            }
        }
    }
    child.kill().expect("SIGKILL the stage");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the stage finished before it was killed:\n{}", log.join("\n"));
    drop(rx);
    reader.join().unwrap();
    assert!(!out.join("intents_test.jsonl").exists(), "outputs are written only at the end");

    let stored = AnswerCache::open(&out.join("answers.sqlite")).unwrap().len().unwrap();
    assert!((1..8).contains(&stored), "{stored} answers stored before the kill");

    // The rerun generates only what the killed run had not stored.
    args.truncate(args.len() - 2);
    ok(&args);
    let s = read_json(&out.join("summary_test.json"));
    assert_eq!(s["cache"]["hits"].as_u64().unwrap() as usize, stored, "{s}");
    assert_eq!(s["cache"]["generated"].as_u64().unwrap() as usize, 8 - stored, "{s}");
    assert_eq!(jsonl(&out.join("intents_test.jsonl")).len(), 8);
    assert_eq!(AnswerCache::open(&out.join("answers.sqlite")).unwrap().len().unwrap(), 8);
}

#[test]
fn intents_stage_rejects_candidates_of_another_split() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shop");
    ok(&[
        "data",
        "synth",
        "--out",
        p(&data),
        "--items",
        "80",
        "--train-sessions",
        "200",
        "--test-sessions",
        "30",
    ]);
    let bogus = tmp.path().join("cands.tsv");
    std::fs::write(&bogus, "1 2 3\n4 5 6\n").unwrap();
    let err = fails(&[
        "intents",
        "--data",
        p(&data),
        "--candidates",
        p(&bogus),
        "--split",
        "test",
        "--out",
        p(&tmp.path().join("o")),
    ]);
    assert!(err.contains("2 candidate rows for"), "{err}");
    assert!(!tmp.path().join("o").exists(), "nothing written for bad inputs");
}

#[test]
fn bench_intents_needs_a_candidate_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shop");
    ok(&[
        "data",
        "synth",
        "--out",
        p(&data),
        "--items",
        "80",
        "--train-sessions",
        "200",
        "--test-sessions",
        "30",
    ]);
    let err = fails(&["bench", "intents", "--data", p(&data)]);
    assert!(err.contains("test_candidates.tsv") && err.contains("--candidates"), "{err}");
}

#[test]
fn experiment_table2_fuses_real_intents_and_reports_both_protocols() {
    let Some(m) = models("experiment_table2_fuses_real_intents_and_reports_both_protocols") else { return };
    let f = fixture();
    let out = f.root.join("intents");
    // Real intents for a few examples of each split; the others run without (zero vectors, masked).
    ok(&intents_args(&f, &m, &out, "4"));
    let cands = f.root.join("cands");
    ok(&[
        "candidates",
        "--checkpoint",
        p(&f.root.join("runs/valid")),
        "--k",
        "10",
        "--split",
        "train",
        "--out",
        p(&cands),
    ]);
    let mut train_args = intents_args(&f, &m, &out, "4");
    let train_cands = cands.join("train_candidates.tsv");
    train_args[4] = p(&train_cands);
    train_args[6] = "train";
    ok(&train_args);

    let run = f.root.join("exp");
    let results = f.root.join("exp.json");
    let table2 = [
        "experiment",
        "table2",
        "--data",
        p(&f.data),
        "--run",
        p(&run),
        "--intents",
        p(&out),
        "--epochs",
        "2",
    ];
    let printed = ok(&[&table2[..], &["--results", p(&results)]].concat());
    let json = read_json(&results);
    for row in ["SR-GNN", "LLM-DMsRec(SR-GNN)", "SR-GNN (tuned)", "LLM-DMsRec(SR-GNN, tuned backbone)"] {
        for protocol in ["paper", "valid"] {
            let v = json["rows"][row][protocol]["MRR@20"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=100.0).contains(&v), "{row} {protocol}: {v}");
        }
    }
    let p_value = json["p_value_mrr20"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p_value));
    assert_eq!(json["llm_prompts"].as_f64(), Some(8.0));
    assert!(json["epoch_s"]["ratio"].as_f64().unwrap() > 0.0);
    let report = std::fs::read_to_string(run.join("report/README.md")).unwrap();
    assert!(report.contains("| Improve. |") && report.contains("LLM-DMsRec(SR-GNN)"), "{report}");
    assert!(printed.contains("## Table 2"));
    // The joint runs recorded their fusion settings.
    let joint_dir = std::fs::read_dir(run.join("variants"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| d.file_name().unwrap().to_string_lossy().contains("-kl-"))
        .unwrap();
    let config = read_json(&joint_dir.join("valid/config.json"));
    assert_eq!(config["joint"]["config"]["align"], "kl");
    assert_eq!(config["joint"]["config"]["intent_dim"], 384);
    // A backbone + intents checkpoint evaluates with its recorded test intents, exactly as the
    // run's own final test pass did.
    let evaluated = ok(&["evaluate", "--checkpoint", p(&joint_dir.join("valid"))]);
    let result = read_json(&joint_dir.join("valid/result.json"));
    let mrr20 = result["checkpoint_test"]["MRR@20"].as_f64().unwrap();
    assert!(evaluated.contains("+ intents"), "{evaluated}");
    assert!(evaluated.contains(&format!("MRR@20 {mrr20:.4}")), "MRR@20 {mrr20:.4} expected:\n{evaluated}");
    let cands = f.root.join("joint-candidates");
    ok(&[
        "candidates",
        "--checkpoint",
        p(&joint_dir.join("valid")),
        "--split",
        "test",
        "--k",
        "5",
        "--out",
        p(&cands),
    ]);
    assert!(std::fs::read_to_string(cands.join("test_candidates.tsv")).unwrap().lines().count() > 0);
    // A second call reuses every finished run.
    let again = ok(&table2);
    assert!(!again.lines().any(|l| l.starts_with("epoch ")), "finished runs were trained again:\n{again}");
}
