//! `dmsrec demo`: the whole backbone pipeline on the embedded synthetic shop, in a minute or two.

use crate::commands::{model_config, top_k, train_one};
use crate::DemoArgs;
use anyhow::Result;
use dmsrec_data::synth::{generate, SynthConfig};
use dmsrec_data::tsv;
use dmsrec_train::{Protocol, TrainConfig};
use std::time::Instant;

pub fn run(a: &DemoArgs) -> Result<()> {
    let start = Instant::now();
    let ds = generate(&SynthConfig { seed: a.seed, ..Default::default() });
    let data_dir = a.out.join("data");
    tsv::write_dataset(&data_dir, &ds)?;
    println!("== dmsrec demo: synthetic shop (seed {}), written to {}", a.seed, data_dir.display());
    println!(
        "{} items, {} training / {} test examples; e.g. item 1 = {:?}",
        ds.n_items(),
        ds.train.len(),
        ds.test.len(),
        ds.catalog.title(1)
    );
    let model_cfg = model_config("srgnn", ds.n_items(), 100, 1)?;
    let cfg = TrainConfig { epochs: a.epochs, seed: a.seed, ..Default::default() };
    println!("== phase: SR-GNN backbone, valid protocol (10% of train held out, best valid MRR@20)");
    let run_dir = a.out.join("srgnn");
    // A fresh run every time: the demo shows training, not resumption.
    let _ = std::fs::remove_dir_all(&run_dir);
    let result = train_one(&ds, &data_dir, &model_cfg, &cfg, Protocol::Valid, &run_dir, None)?;

    let example = ds.test.iter().find(|e| e.prefix.len() >= 3).unwrap_or(&ds.test[0]);
    let (_, _, model) = dmsrec_train::checkpoint::load_checkpoint(&run_dir, &candle_core::Device::Cpu)?;
    println!("== a test session:");
    for id in &example.prefix {
        println!("  {id:>4}  {}", ds.catalog.title(*id));
    }
    println!("   next click (held out): {} {}", example.target, ds.catalog.title(example.target));
    println!("== SR-GNN's top 5:");
    for (rank, (id, score)) in top_k(model.as_ref(), &example.prefix, 5)?.into_iter().enumerate() {
        let mark = if id == example.target { "  <- the held-out click" } else { "" };
        println!("  {}. {id:>4}  {score:>7.3}  {}{mark}", rank + 1, ds.catalog.title(id));
    }
    println!("== result: SR-GNN test {}", result.test.paper_line());
    println!(
        "checkpoint: {} (try `dmsrec recommend --checkpoint {} --session \"{}\"`); {:.0}s in all",
        run_dir.display(),
        run_dir.display(),
        example.prefix.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
