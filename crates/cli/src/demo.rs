//! `dmsrec demo`: all three phases of LLM-DMsRec on the embedded synthetic shop, in a few minutes.
//!
//! A seeded sample of the shop's examples goes through the mini protocol of `dmsrec experiment`:
//! SR-GNN pre-training → top-K candidates (phase I) → SmolLM2 intents from the titles, constrained
//! to the candidates, embedded with MiniLM (phase II) → joint training with the KL alignment
//! (phase III), printed against the backbone alone. Every stage is kept in `--out` and reused.

use crate::DemoArgs;
use anyhow::{Context, Result};
use dmsrec_data::synth::{generate, SynthConfig};
use dmsrec_data::tsv;
use dmsrec_pipeline::experiment::{ExperimentKind, ExperimentSpec, Recipe};
use std::time::Instant;

pub fn run(a: &DemoArgs) -> Result<()> {
    let start = Instant::now();
    let shop = generate(&SynthConfig { seed: a.seed, ..Default::default() });
    let (ds, _) = dmsrec_data::sample::sample(&shop, a.train, a.test, a.seed)?;
    let data_dir = a.out.join("data");
    tsv::write_dataset(&data_dir, &ds)?;
    println!("== dmsrec demo: synthetic shop (seed {}), a sample written to {}", a.seed, data_dir.display());
    println!(
        "{} items; {} training / {} test examples sampled from {} / {}; e.g. item 1 = {:?}",
        ds.n_items(),
        ds.train.len(),
        ds.test.len(),
        shop.train.len(),
        shop.test.len(),
        ds.catalog.title(1)
    );

    let run_dir = a.out.join("run");
    let report = a.out.join("report");
    let spec = ExperimentSpec {
        kind: ExperimentKind::Table2,
        data: data_dir.clone(),
        model: dmsrec_models::ModelKind::Srgnn,
        run: run_dir.clone(),
        intents: None,
        crossfit_intents: None,
        crossfit: None,
        replay: None,
        k: a.k,
        epochs: a.epochs,
        seed: a.seed,
        seeds: 1,
        recipe: Recipe::Tuned,
        sigma: 0.2,
        intent_dropout: 0.2,
        report: Some(report.clone()),
        results: None,
    };
    crate::experiment::run(&spec)?;

    // One test session with what the LLM made of it.
    let jsonl = run_dir.join("intents").join("intents_test.jsonl");
    let text = std::fs::read_to_string(&jsonl).with_context(|| format!("reading {}", jsonl.display()))?;
    let lines: Vec<serde_json::Value> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>().context("parsing test intents")?;
    let index_of = |v: &serde_json::Value| v["index"].as_u64().map(|i| i as usize);
    // Prefer a session with a few clicks: it shows more of what the LLM reads.
    let v = lines
        .iter()
        .find(|v| index_of(v).is_some_and(|i| ds.test[i].prefix.len() >= 3))
        .or(lines.first())
        .context("no test intents")?;
    let example = &ds.test[index_of(v).context("intent line without index")?];
    println!("== a test session:");
    for id in &example.prefix {
        println!("  {id:>4}  {}", ds.catalog.title(*id));
    }
    println!("   next click (held out): {} {}", example.target, ds.catalog.title(example.target));
    println!("== the LLM's intents (chosen among the backbone's top-{} candidates):", a.k);
    for intent in v["intents"].as_array().into_iter().flatten() {
        let kind = if intent["explicit"].as_bool() == Some(true) { "explicit" } else { "latent" };
        println!("  [{kind}] {}", intent["text"].as_str().unwrap_or(""));
    }
    println!(
        "report: {}/README.md; {:.0}s in all (stages are reused on a second run)",
        report.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
