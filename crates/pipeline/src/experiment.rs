//! The paper's experiments as one call each (`dmsrec experiment`), on any dataset folder.
//!
//! * `table2`: backbone vs backbone + intents (paper Table 2), with the paper's training recipe and
//!   with the tuned recipe, and the † test (paired t-test per column).
//! * `ablation`: Table 3's variants (w/o Semantic, w/o KL, w/o Latent-Intent, w/o Explicit-Intent),
//!   plus cross-fitted training candidates when `--crossfit-intents` is given.
//! * `alignment`: KL vs contrastive vs InfoNCE vs DirectAU (Fig. 4).
//! * `sweep`: σ from 0.0 to 0.9 (Fig. 5) and an α × β grid (Fig. 6).
//!
//! Stages (pre-training, candidates, intents) run first when `--intents` is not given; every
//! stage and every training run lives in the run folder and is reused (or resumed) when present.
//! Each variant is trained under both protocols (`paper`: best epoch on test, as the paper
//! reports; `valid`: epoch chosen on a held-out 10% of the training examples). Progress and the
//! stages' events go to a callback; the report is written to files and returned.

use crate::candidates::{candidates, CandidatesEvent, CandidatesSpec};
use crate::intents::{intents, AnswerSource, IntentsEvent, IntentsOutcome, IntentsSpec, Split};
use crate::provenance::{command_line, git_revision, median};
use crate::run::{train_one, RunEvent, RunSpec};
use crate::{load_intent_features, FusionSetup};
use anyhow::{Context, Result};
use clap::ValueEnum;
use dmsrec_data::sample::SAMPLE_INDEX;
use dmsrec_data::{tsv, Dataset};
use dmsrec_models::{DataShape, ModelConfig, ModelKind};
use dmsrec_train::align::Align;
use dmsrec_train::fusion::{FusionConfig, FusionRecipe, IntentFeatures, IntentUse, SplitIntents};
use dmsrec_train::run_files::{read_ranks, write_json_atomic};
use dmsrec_train::significance::{paired_t_test, reciprocal_ranks};
use dmsrec_train::trainer::protocol_dir;
use dmsrec_train::{Metrics, Protocol, Schedule, TrainConfig};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ExperimentKind {
    Table2,
    Ablation,
    Alignment,
    Sweep,
    /// Everything above, and the results JSON.
    All,
}

/// How a backbone is trained.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// The paper's: Adam 1e-3 decayed ×0.1 every 3 epochs (official offset), L2 1e-5.
    Paper,
    /// The tuned baseline: constant 1e-3, session dropout 0.2 (chosen on the validation split).
    Tuned,
}

/// Everything that defines one experiment run.
#[derive(Debug, Clone)]
pub struct ExperimentSpec {
    pub kind: ExperimentKind,
    /// Dataset folder (e.g. from `dmsrec data sample`).
    pub data: PathBuf,
    /// The backbone of every row (with its official defaults for the data).
    pub model: ModelKind,
    /// Run folder: stages and training runs live here; finished ones are reused.
    pub run: PathBuf,
    /// The intent stage's output for both splits (default: RUN/intents, made by the stages).
    pub intents: Option<PathBuf>,
    /// An intent stage output whose training intents came from cross-fitted candidates
    /// (`dmsrec candidates --crossfit`); adds the "crossfit" row.
    pub crossfit_intents: Option<PathBuf>,
    /// Run the cross-fitted candidate and intent stages with this many folds (into
    /// RUN/candidates-crossfit and RUN/intents-crossfit) and add the "crossfit" row.
    pub crossfit: Option<usize>,
    /// Replay recorded intents instead of running the LLM: a folder with `intent_items_test.tsv`,
    /// `intent_items_train.tsv` (and `intent_items_train-crossfit.tsv`), as kept in `mini/`.
    pub replay: Option<PathBuf>,
    /// Candidates per prompt, when the stages run.
    pub k: usize,
    pub epochs: usize,
    pub seed: u64,
    /// Train every table row with this many seeds (seed, seed + 1, …) and report their mean; the
    /// † test then compares per-example values averaged over the seeds. Sweeps use the first seed.
    pub seeds: u64,
    /// Training recipe of the ablation, alignment and sweep runs.
    pub recipe: Recipe,
    /// σ of every run that does not sweep it.
    pub sigma: f64,
    pub intent_dropout: f64,
    /// Report folder (Markdown tables + SVG plots; default RUN/report).
    pub report: Option<PathBuf>,
    /// Where to write the results JSON (default REPORT/results.json).
    pub results: Option<PathBuf>,
}

/// What an experiment reports while it works.
pub enum ExperimentEvent<'e> {
    /// A stage (pre-training, candidates, intents) starts.
    Stage(&'e str),
    Candidates(CandidatesEvent<'e>),
    Intents(IntentsEvent<'e>),
    IntentsDone(&'e IntentsOutcome),
    /// One training run of a variant, seed and protocol (the pre-training's variant is "pretrain").
    Training {
        variant: &'e str,
        seed: u64,
        protocol: Protocol,
        event: RunEvent<'e>,
    },
}

/// A finished experiment: its Markdown report and where it and the results JSON were written.
pub struct ExperimentOutcome {
    pub markdown: String,
    pub report: PathBuf,
    pub results: PathBuf,
}

impl Recipe {
    /// The training config of a run with this recipe.
    pub fn train_config(self, epochs: usize, seed: u64) -> TrainConfig {
        let mut cfg = TrainConfig { epochs, seed, ..Default::default() };
        if self == Recipe::Tuned {
            cfg.schedule = Schedule::Constant;
            cfg.session_dropout = 0.2;
        }
        cfg
    }
}

/// One trained configuration.
#[derive(Clone, Debug)]
struct Variant {
    /// Folder name and lookup key.
    key: String,
    recipe: Recipe,
    /// None: the plain backbone.
    joint: Option<JointChoice>,
}

#[derive(Clone, Debug)]
struct JointChoice {
    intents: IntentUse,
    align: Align,
    alpha: f64,
    beta: f64,
    sigma: f64,
    crossfit: bool,
}

/// A finished variant under one protocol, over its seeds.
struct Outcome {
    /// Mean over seeds.
    metrics: Metrics,
    /// Per seed: the test rank of every example.
    ranks: Vec<Vec<u32>>,
    /// Per seed.
    chosen_epochs: Vec<usize>,
    epoch_s: f64,
}

const SIGMAS: [f64; 10] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
const GRID: [f64; 4] = [0.0, 0.5, 1.0, 2.0];
const PROTOCOLS: [Protocol; 2] = [Protocol::Paper, Protocol::Valid];

struct Runner<'a> {
    a: &'a ExperimentSpec,
    on_event: &'a dyn Fn(ExperimentEvent),
    ds: Dataset,
    intents: PathBuf,
    crossfit_intents: Option<PathBuf>,
    features: HashMap<(bool, IntentUse), (IntentFeatures, IntentFeatures, usize)>,
    outcomes: BTreeMap<(String, u64, &'static str), Outcome>,
}

impl<'a> Runner<'a> {
    fn plain(&self, recipe: Recipe) -> Variant {
        Variant { key: format!("{recipe:?}-plain").to_lowercase(), recipe, joint: None }
    }

    fn joint(&self, recipe: Recipe, tweak: impl FnOnce(&mut JointChoice)) -> Variant {
        let mut j = JointChoice {
            intents: IntentUse::Both,
            align: Align::Kl,
            alpha: 1.0,
            beta: 1.0,
            sigma: self.a.sigma,
            crossfit: false,
        };
        tweak(&mut j);
        let key = format!(
            "{}-{:?}-{}-a{}-b{}-s{}{}",
            format!("{recipe:?}").to_lowercase(),
            j.intents,
            j.align,
            j.alpha,
            j.beta,
            j.sigma,
            if j.crossfit { "-crossfit" } else { "" }
        )
        .to_lowercase();
        Variant { key, recipe, joint: Some(j) }
    }

    fn train_config(&self, recipe: Recipe) -> TrainConfig {
        recipe.train_config(self.a.epochs, self.a.seed)
    }

    fn setup(&mut self, j: &JointChoice) -> Result<FusionSetup> {
        let dir = match (&self.crossfit_intents, j.crossfit) {
            (Some(d), true) => d.clone(),
            (None, true) => anyhow::bail!("the crossfit row needs --crossfit-intents"),
            _ => self.intents.clone(),
        };
        let cache_key = (j.crossfit, j.intents);
        if !self.features.contains_key(&cache_key) {
            let (train, dim) = load_intent_features(&dir, "train", &self.ds.train, j.intents)?;
            // Test intents always come from the full model's candidates.
            let (test, _) = load_intent_features(&self.intents, "test", &self.ds.test, j.intents)?;
            self.features.insert(cache_key, (train, test, dim));
        }
        let (train, test, dim) = &self.features[&cache_key];
        let cfg = FusionConfig {
            intents: j.intents,
            align: j.align,
            alpha: j.alpha,
            beta: j.beta,
            sigma: j.sigma,
            intent_dropout: self.a.intent_dropout,
            intent_dim: *dim,
            recipe: FusionRecipe::Paper,
        };
        let intents = SplitIntents { train: train.clone(), test: test.clone() };
        Ok(FusionSetup { cfg, source: dir, intents })
    }

    /// Trains (or reuses) a variant under both protocols with every seed.
    fn run(&mut self, v: &Variant) -> Result<()> {
        self.run_seeds(v, self.a.seeds)
    }

    /// Trains (or reuses) a variant under both protocols with the first `seeds` seeds.
    fn run_seeds(&mut self, v: &Variant, seeds: u64) -> Result<()> {
        let seeds = seeds.max(1);
        let model_cfg = ModelConfig::for_data(self.a.model, &DataShape::of(&self.ds));
        // SR-GNN's runs keep the folder names they always had.
        let variants = match self.a.model {
            ModelKind::Srgnn => "variants".to_string(),
            other => format!("variants-{other}"),
        };
        let setup = match &v.joint {
            Some(j) => Some(self.setup(j)?),
            None => None,
        };
        for p in PROTOCOLS {
            if self.outcomes.contains_key(&(v.key.clone(), seeds, p.name())) {
                continue;
            }
            let (mut all, mut ranks, mut chosen, mut epoch_s) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for seed in self.a.seed..self.a.seed + seeds {
                let cfg = TrainConfig { seed, ..self.train_config(v.recipe) };
                let name = if seed == self.a.seed { v.key.clone() } else { format!("{}-seed{seed}", v.key) };
                let dir = protocol_dir(&self.a.run.join(&variants).join(name), p);
                let spec = RunSpec {
                    ds: &self.ds,
                    data_dir: &self.a.data,
                    model: &model_cfg,
                    train: &cfg,
                    protocol: p,
                    run_dir: &dir,
                    fusion: setup.as_ref(),
                    device: &candle_core::Device::Cpu,
                };
                let on_event = self.on_event;
                let r = train_one(&spec, &|event| {
                    on_event(ExperimentEvent::Training { variant: &v.key, seed, protocol: p, event })
                })?;
                ranks.push(read_ranks(&dir.join("test_ranks.txt"))?);
                epoch_s.extend(r.epochs.iter().map(|e| e.train_s));
                chosen.push(r.chosen_epoch);
                all.push(r.test.paper_subset());
            }
            let metrics = Metrics(
                Metrics::paper_columns()
                    .iter()
                    .map(|c| (c.to_string(), all.iter().map(|m| m.get(c)).sum::<f64>() / all.len() as f64))
                    .collect(),
            );
            let outcome = Outcome { metrics, ranks, chosen_epochs: chosen, epoch_s: median(&epoch_s) };
            self.outcomes.insert((v.key.clone(), seeds, p.name()), outcome);
        }
        Ok(())
    }

    /// A variant's outcome with every seed.
    fn get(&self, v: &Variant, p: Protocol) -> &Outcome {
        self.get_seeds(v, p, self.a.seeds)
    }

    fn get_seeds(&self, v: &Variant, p: Protocol, seeds: u64) -> &Outcome {
        &self.outcomes[&(v.key.clone(), seeds, p.name())]
    }
}

/// Runs the stages that are missing: pre-training, candidates, intents of both splits.
fn stages(a: &ExperimentSpec, ds: &Dataset, on_event: &dyn Fn(ExperimentEvent)) -> Result<PathBuf> {
    let pretrain = a.run.join("pretrain");
    let candidates_dir = a.run.join("candidates");
    let intents_dir = a.run.join("intents");
    let checkpoint = protocol_dir(&pretrain, Protocol::Valid);
    if !checkpoint.join("result.json").exists() {
        on_event(ExperimentEvent::Stage(
            "stage 1/3: pre-training the backbone (tuned recipe, valid protocol)",
        ));
        let model = ModelConfig::for_data(a.model, &DataShape::of(ds));
        let train = Recipe::Tuned.train_config(30, a.seed);
        let spec = RunSpec {
            ds,
            data_dir: &a.data,
            model: &model,
            train: &train,
            protocol: Protocol::Valid,
            run_dir: &checkpoint,
            fusion: None,
            device: &candle_core::Device::Cpu,
        };
        train_one(&spec, &|event| {
            on_event(ExperimentEvent::Training {
                variant: "pretrain",
                seed: a.seed,
                protocol: Protocol::Valid,
                event,
            })
        })?;
    }
    let candidate_stage = |out: &Path, splits: Vec<Split>, crossfit: Option<usize>| CandidatesSpec {
        checkpoint: checkpoint.clone(),
        data: None,
        k: a.k,
        splits,
        out: out.to_path_buf(),
        crossfit,
        compare: None,
    };
    let run_candidates =
        |spec: &CandidatesSpec| candidates(spec, &|e| on_event(ExperimentEvent::Candidates(e)));
    if !candidates_dir.join("test_candidates.tsv").exists()
        || !candidates_dir.join("train_candidates.tsv").exists()
    {
        on_event(ExperimentEvent::Stage(&format!("stage 2/3: top-{} candidates", a.k)));
        run_candidates(&candidate_stage(&candidates_dir, vec![Split::Train, Split::Test], None))?;
    }
    let run_intents = |candidates: &Path, split: Split, out: &Path, replay_name: &str| -> Result<()> {
        if out.join(format!("embeddings_{}.safetensors", split.name())).exists() {
            return Ok(());
        }
        on_event(ExperimentEvent::Stage(&format!(
            "stage 3/3: intents of the {} split into {} (cached and resumable)",
            split.name(),
            out.display()
        )));
        let file = candidates.join(format!("{}_candidates.tsv", split.name()));
        let mut spec = IntentsSpec::new(&a.data, &file, split, out, a.k);
        if let Some(dir) = &a.replay {
            spec.source = AnswerSource::Replay(dir.join(replay_name));
        }
        let outcome = intents(&spec, &|e| on_event(ExperimentEvent::Intents(e)))?;
        on_event(ExperimentEvent::IntentsDone(&outcome));
        Ok(())
    };
    run_intents(&candidates_dir, Split::Test, &intents_dir, "intent_items_test.tsv")?;
    run_intents(&candidates_dir, Split::Train, &intents_dir, "intent_items_train.tsv")?;
    if let Some(folds) = a.crossfit {
        let crossfit_candidates = a.run.join("candidates-crossfit");
        if !crossfit_candidates.join("train_candidates.tsv").exists() {
            on_event(ExperimentEvent::Stage(&format!(
                "stage 2b: cross-fitted training candidates ({folds} folds)"
            )));
            run_candidates(&candidate_stage(&crossfit_candidates, vec![Split::Train], Some(folds)))?;
        }
        let out = a.run.join("intents-crossfit");
        run_intents(&crossfit_candidates, Split::Train, &out, "intent_items_train-crossfit.tsv")?;
    }
    Ok(intents_dir)
}

/// Runs the experiment (the missing stages first, then every variant it needs, reusing finished
/// runs), writes the Markdown report, its plots and the results JSON.
pub fn experiment(a: &ExperimentSpec, on_event: &dyn Fn(ExperimentEvent)) -> Result<ExperimentOutcome> {
    let ds = tsv::read_dataset(&a.data).with_context(|| format!("reading {}", a.data.display()))?;
    let intents = match &a.intents {
        Some(d) => d.clone(),
        None => stages(a, &ds, on_event)?,
    };
    let crossfit_intents = match (&a.crossfit_intents, a.crossfit) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(_)) => Some(a.run.join("intents-crossfit")),
        (None, None) => None,
    };
    let mut r = Runner {
        a,
        on_event,
        ds,
        intents,
        crossfit_intents,
        features: HashMap::new(),
        outcomes: BTreeMap::new(),
    };
    let a = r.a;
    let report_dir = a.report.clone().unwrap_or_else(|| a.run.join("report"));
    std::fs::create_dir_all(&report_dir)?;
    let want = |k: ExperimentKind| a.kind == k || a.kind == ExperimentKind::All;
    let mut md = String::new();
    let mut rows: Map<String, Value> = Map::new();
    let mut json_extra: Map<String, Value> = Map::new();
    // A sampled folder (`dmsrec data sample`) is named after its source.
    let dataset = std::fs::read(a.data.join(SAMPLE_INDEX))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| Some(format!("{} sample (seed {})", v["source"].as_str()?, v["seed"].as_u64()?)))
        .unwrap_or_else(|| r.ds.name.clone());
    writeln!(md, "# LLM-DMsRec experiments on `{dataset}`\n")?;
    writeln!(
        md,
        "{} training / {} test examples, {} items; seeds {}..{} (table rows: mean over seeds; sweeps: \
         first seed); up to {} epochs; σ = {} unless swept; intent dropout {}. `paper`: best epoch on test (as the paper reports); `valid`: epoch chosen \
         on a held-out 10% of the training examples, then test once. † = paired t-test p < 0.05 \
         against the row's backbone (hits for P@K, reciprocal ranks for MRR@K).\n",
        r.ds.train.len(),
        r.ds.test.len(),
        r.ds.n_items(),
        a.seed,
        a.seed + a.seeds.max(1) - 1,
        a.epochs,
        a.sigma,
        a.intent_dropout
    )?;

    let base = r.plain(a.recipe);
    let full = r.joint(a.recipe, |_| {});
    if want(ExperimentKind::Table2) {
        writeln!(md, "## Table 2: backbone vs backbone + LLM intents\n")?;
        for recipe in [Recipe::Paper, Recipe::Tuned] {
            let (plain, joint) = (r.plain(recipe), r.joint(recipe, |_| {}));
            r.run(&plain)?;
            r.run(&joint)?;
            let label = a.model.label();
            let (pname, jname) = match recipe {
                Recipe::Paper => (label.to_string(), format!("LLM-DMsRec({label})")),
                Recipe::Tuned => (format!("{label} (tuned)"), format!("LLM-DMsRec({label}, tuned backbone)")),
            };
            let (pname, jname) = (pname.as_str(), jname.as_str());
            rows.insert(pname.into(), both_protocols(&r, &plain));
            rows.insert(jname.into(), both_protocols(&r, &joint));
            for p in PROTOCOLS {
                writeln!(md, "**{jname} vs {pname}, `{}` protocol**\n", p.name())?;
                md.push_str(&comparison_table(&r, &plain, &[(jname, &joint)], p, pname));
            }
            for p in PROTOCOLS {
                let test = mrr20_test(&r, &joint, &plain, p);
                json_extra.insert(
                    format!("p_value_mrr20_{}_{}", format!("{recipe:?}").to_lowercase(), p.name()),
                    json!(test),
                );
            }
        }
        json_extra.insert(
            "p_value_mrr20".into(),
            json!(mrr20_test(&r, &r.joint(Recipe::Paper, |_| {}), &r.plain(Recipe::Paper), Protocol::Paper)),
        );
        let (pe, je) = (
            r.get(&r.plain(Recipe::Paper), Protocol::Paper).epoch_s,
            r.get(&r.joint(Recipe::Paper, |_| {}), Protocol::Paper).epoch_s,
        );
        writeln!(
            md,
            "Median epoch time: backbone {pe:.2} s, backbone + intents {je:.2} s ({:.2}×).\n",
            je / pe
        )?;
        json_extra.insert("epoch_s".into(), json!({"backbone": pe, "joint": je, "ratio": je / pe}));
    }
    if want(ExperimentKind::Ablation) {
        let full_label = format!("LLM-DMsRec({})", a.model.label());
        let mut variants: Vec<(&str, Variant)> = vec![
            (full_label.as_str(), full.clone()),
            ("w/o Semantic", base.clone()),
            ("w/o KL", r.joint(a.recipe, |j| j.align = Align::None)),
            ("w/o Latent-Intent", r.joint(a.recipe, |j| j.intents = IntentUse::Explicit)),
            ("w/o Explicit-Intent", r.joint(a.recipe, |j| j.intents = IntentUse::Latent)),
        ];
        if r.crossfit_intents.is_some() {
            variants.push(("crossfit", r.joint(a.recipe, |j| j.crossfit = true)));
        }
        for (_, v) in &variants {
            r.run(v)?;
        }
        writeln!(md, "## Table 3: ablations ({:?} recipe)\n", a.recipe)?;
        for p in PROTOCOLS {
            writeln!(md, "**`{}` protocol** (Improve. against w/o Semantic)\n", p.name())?;
            let listed: Vec<(&str, &Variant)> =
                variants.iter().filter(|(n, _)| *n != "w/o Semantic").map(|(n, v)| (*n, v)).collect();
            md.push_str(&comparison_table(&r, &base, &listed, p, "w/o Semantic"));
        }
        for (name, v) in &variants[2..] {
            rows.insert((*name).into(), both_protocols(&r, v));
        }
    }
    if want(ExperimentKind::Alignment) {
        let kinds = [Align::Kl, Align::Contrastive, Align::Infonce, Align::Directau];
        let variants: Vec<(String, Variant)> =
            kinds.iter().map(|&k| (format!("align={k}"), r.joint(a.recipe, |j| j.align = k))).collect();
        for (_, v) in &variants {
            r.run(v)?;
        }
        r.run(&base)?;
        writeln!(md, "## Alignment mechanisms (Fig. 4, {:?} recipe)\n", a.recipe)?;
        for p in PROTOCOLS {
            writeln!(md, "**`{}` protocol**\n", p.name())?;
            let listed: Vec<(&str, &Variant)> = variants.iter().map(|(n, v)| (n.as_str(), v)).collect();
            md.push_str(&comparison_table(&r, &base, &listed, p, "w/o Semantic"));
        }
        for (name, v) in &variants[1..] {
            rows.insert(name.clone(), both_protocols(&r, v));
        }
        let bars: Vec<(String, [f64; 2])> = variants
            .iter()
            .map(|(n, v)| {
                (
                    n.replace("align=", ""),
                    [
                        r.get(v, Protocol::Paper).metrics.get("MRR@20"),
                        r.get(v, Protocol::Valid).metrics.get("MRR@20"),
                    ],
                )
            })
            .collect();
        crate::plots::grouped_bars(
            &report_dir.join("alignment.svg"),
            "Alignment mechanism: test MRR@20",
            &bars,
            ["paper", "valid"],
        )?;
        writeln!(md, "![alignment](alignment.svg)\n")?;
    }
    if want(ExperimentKind::Sweep) {
        let mut sweep: Map<String, Value> = Map::new();
        let mut series = [Vec::new(), Vec::new()];
        for &s in &SIGMAS {
            let v = r.joint(a.recipe, |j| j.sigma = s);
            r.run_seeds(&v, 1)?;
            for (i, p) in PROTOCOLS.iter().enumerate() {
                series[i].push((s, r.get_seeds(&v, *p, 1).metrics.get("MRR@20")));
            }
            let mrr = |p| r.get_seeds(&v, p, 1).metrics.get("MRR@20");
            sweep.insert(
                format!("{s:.1}"),
                json!({"paper": mrr(Protocol::Paper), "valid": mrr(Protocol::Valid)}),
            );
        }
        json_extra.insert("sigma_sweep".into(), Value::Object(sweep));
        crate::plots::lines(
            &report_dir.join("sigma.svg"),
            "σ sweep: test MRR@20",
            "σ",
            &[("paper", &series[0]), ("valid", &series[1])],
        )?;
        writeln!(md, "## σ sweep (Fig. 5, {:?} recipe)\n\n![sigma](sigma.svg)\n", a.recipe)?;
        writeln!(md, "| σ | MRR@20 paper | MRR@20 valid | P@20 paper | P@20 valid |\n|---|---|---|---|---|")?;
        for &s in &SIGMAS {
            let v = r.joint(a.recipe, |j| j.sigma = s);
            let (pp, vv) =
                (&r.get_seeds(&v, Protocol::Paper, 1).metrics, &r.get_seeds(&v, Protocol::Valid, 1).metrics);
            writeln!(
                md,
                "| {s:.1} | {:.4} | {:.4} | {:.4} | {:.4} |",
                pp.get("MRR@20"),
                vv.get("MRR@20"),
                pp.get("P@20"),
                vv.get("P@20")
            )?;
        }
        writeln!(md)?;
        let mut grid = Map::new();
        for p in PROTOCOLS {
            writeln!(md, "**α × β, test MRR@20, `{}` protocol** (rows α, columns β)\n", p.name())?;
            writeln!(
                md,
                "| α \\ β | {} |\n|---|{}",
                GRID.map(|b| format!("{b}")).join(" | "),
                "---|".repeat(GRID.len())
            )?;
            let mut lines = Vec::new();
            for &alpha in &GRID {
                let mut cells = Vec::new();
                let mut line = Vec::new();
                for &beta in &GRID {
                    let v = r.joint(a.recipe, |j| {
                        j.alpha = alpha;
                        j.beta = beta;
                    });
                    r.run_seeds(&v, 1)?;
                    let m = r.get_seeds(&v, p, 1).metrics.get("MRR@20");
                    cells.push(format!("{m:.4}"));
                    line.push((beta, m));
                    grid.insert(format!("{}:alpha={alpha},beta={beta}", p.name()), json!(m));
                }
                writeln!(md, "| {alpha} | {} |", cells.join(" | "))?;
                lines.push((format!("α = {alpha}"), line));
            }
            writeln!(md)?;
            let named: Vec<(&str, &[(f64, f64)])> =
                lines.iter().map(|(n, l)| (n.as_str(), l.as_slice())).collect();
            let file = format!("alpha-beta-{}.svg", p.name());
            crate::plots::lines(
                &report_dir.join(&file),
                &format!("α × β ({} protocol): test MRR@20", p.name()),
                "β",
                &named,
            )?;
            writeln!(md, "![alpha-beta]({file})\n")?;
        }
        json_extra.insert("alpha_beta_grid".into(), Value::Object(grid));
    }
    let mut sources =
        vec![("train", r.intents.join("summary_train.json")), ("test", r.intents.join("summary_test.json"))];
    if let Some(dir) = &r.crossfit_intents {
        sources.push(("train (crossfit candidates)", dir.join("summary_train.json")));
    }
    md.push_str(&intent_summary(&sources, &mut json_extra)?);
    writeln!(md, "Command: `{}` (git {})", command_line(), git_revision())?;
    let md_path = report_dir.join("README.md");
    dmsrec_data::atomic::write_bytes_atomic(&md_path, md.as_bytes())?;
    let mut out = json!({
        "protocol": {"train": r.ds.train.len(), "test": r.ds.test.len(), "k": a.k, "seed": a.seed, "dataset": dataset,
                     "epochs": a.epochs, "seeds": a.seeds, "ablation_recipe": a.recipe, "sigma": a.sigma, "intent_dropout": a.intent_dropout},
        "rows": rows,
        "command": command_line(),
        "git": git_revision(),
    });
    out.as_object_mut().expect("object").extend(json_extra);
    let json_path = a.results.clone().unwrap_or_else(|| report_dir.join("results.json"));
    write_json_atomic(&json_path, &out)?;
    Ok(ExperimentOutcome { markdown: md, report: md_path, results: json_path })
}

fn both_protocols(r: &Runner, v: &Variant) -> Value {
    let mut m = Map::new();
    for p in PROTOCOLS {
        let o = r.get(v, p);
        let mut metrics = serde_json::to_value(&o.metrics).expect("metrics serialize");
        metrics.as_object_mut().expect("object").insert("chosen_epochs".into(), json!(o.chosen_epochs));
        if o.ranks.len() > 1 {
            let per_seed: Vec<f64> = o.ranks.iter().map(|r| Metrics::from_ranks(r).get("MRR@20")).collect();
            metrics.as_object_mut().expect("object").insert("MRR@20_per_seed".into(), json!(per_seed));
        }
        m.insert(p.name().into(), metrics);
    }
    Value::Object(m)
}

fn mrr20_test(r: &Runner, a: &Variant, b: &Variant, p: Protocol) -> Option<f64> {
    paired_t_test(&column_values(&r.get(a, p).ranks, "MRR@20"), &column_values(&r.get(b, p).ranks, "MRR@20"))
        .map(|t| t.p_value)
}

/// Per-example values of one column, averaged over seeds: hits for P@K, reciprocal ranks for MRR@K.
fn column_values(ranks_per_seed: &[Vec<u32>], column: &str) -> Vec<f64> {
    let (kind, k) = column.split_once('@').expect("column names are X@K");
    let k: u32 = k.parse().expect("cutoff");
    let one = |ranks: &[u32]| -> Vec<f64> {
        match kind {
            "P" => ranks.iter().map(|&r| f64::from(u8::from(r <= k))).collect(),
            _ => reciprocal_ranks(ranks, k),
        }
    };
    let mut sum = vec![0.0; ranks_per_seed.first().map_or(0, Vec::len)];
    for ranks in ranks_per_seed {
        for (s, v) in sum.iter_mut().zip(one(ranks)) {
            *s += v;
        }
    }
    sum.iter().map(|s| s / ranks_per_seed.len().max(1) as f64).collect()
}

/// A Markdown table: the baseline row, then each variant with its Improve. row († where p < 0.05).
fn comparison_table(
    r: &Runner,
    base: &Variant,
    variants: &[(&str, &Variant)],
    p: Protocol,
    base_name: &str,
) -> String {
    let cols = Metrics::paper_columns();
    let mut s = format!("| model | {} |\n|---|{}\n", cols.join(" | "), "---|".repeat(cols.len()));
    let b = r.get(base, p);
    let line = |name: &str, m: &Metrics| {
        format!(
            "| {name} | {} |\n",
            cols.iter().map(|c| format!("{:.4}", m.get(c))).collect::<Vec<_>>().join(" | ")
        )
    };
    s.push_str(&line(base_name, &b.metrics));
    for (name, v) in variants {
        let o = r.get(v, p);
        s.push_str(&line(name, &o.metrics));
        let cells: Vec<String> = cols
            .iter()
            .map(|c| {
                let (x, y) = (o.metrics.get(c), b.metrics.get(c));
                let t = paired_t_test(&column_values(&o.ranks, c), &column_values(&b.ranks, c));
                let dagger = if t.is_some_and(|t| t.p_value < 0.05) { " †" } else { "" };
                if y > 0.0 {
                    format!("{:+.2}%{dagger}", 100.0 * (x - y) / y)
                } else {
                    format!("n/a{dagger}")
                }
            })
            .collect();
        s.push_str(&format!("| Improve. | {} |\n", cells.join(" | ")));
    }
    s.push('\n');
    s
}

/// Intent validity and the explicit/latent distribution from the intent stage's summaries.
fn intent_summary(sources: &[(&str, PathBuf)], out: &mut Map<String, Value>) -> Result<String> {
    let mut md = String::from("## Intents (phase II)\n\n| split | examples | valid answers | intents/answer | explicit | latent | LLM s/prompt |\n|---|---|---|---|---|---|---|\n");
    let (mut prompts, mut main_prompts, mut seconds, mut valid, mut explicit) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (split, path) in sources {
        let Ok(text) = std::fs::read(path) else { continue };
        let v: Value =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let n = f("examples");
        writeln!(
            md,
            "| {split} | {n} | {:.1}% | {:.2} | {:.1}% | {:.1}% | {:.2} |",
            100.0 * f("valid_rate"),
            f("mean_intents"),
            100.0 * f("explicit_share"),
            100.0 * f("latent_share"),
            v["llm_s_total"].as_f64().unwrap_or(f("generation_s")) / n
        )?;
        prompts += n;
        seconds += v["llm_s_total"].as_f64().unwrap_or(f("generation_s"));
        if split.contains("crossfit") {
            out.insert("crossfit_explicit_share".into(), json!(f("explicit_share")));
        } else {
            main_prompts += n;
            valid += f("valid_rate") * n;
            explicit += f("explicit_share") * n;
        }
    }
    // Validity and the explicit share of the intents the main rows use (train + test).
    out.insert("intent_validity".into(), json!(valid / main_prompts));
    out.insert("explicit_share".into(), json!(explicit / main_prompts));
    out.insert("llm_prompts".into(), json!(prompts));
    out.insert("llm_hours".into(), json!(seconds / 3600.0));
    md.push('\n');
    Ok(md)
}
