//! `dmsrec experiment`: the arguments of `dmsrec_pipeline::experiment` and its progress lines.

use crate::candidates::CandidatesPrinter;
use crate::commands::RunPrinter;
use crate::intents::{print_outcome, IntentsProgress};
use anyhow::Result;
use clap::Args;
use dmsrec_models::ModelKind;
use dmsrec_pipeline::experiment::{ExperimentEvent, ExperimentKind, ExperimentSpec, Recipe};
use dmsrec_pipeline::RunEvent;
use std::cell::RefCell;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExperimentArgs {
    #[arg(value_enum)]
    pub kind: ExperimentKind,
    /// Dataset folder (e.g. from `dmsrec data sample`).
    #[arg(long)]
    pub data: PathBuf,
    /// The backbone of every row (with its official defaults for the data).
    #[arg(long, value_enum, default_value = "srgnn")]
    pub model: ModelKind,
    /// Run folder: stages and training runs live here; finished ones are reused.
    #[arg(long)]
    pub run: PathBuf,
    /// The intent stage's output for both splits (default: RUN/intents, made by the stages).
    #[arg(long)]
    pub intents: Option<PathBuf>,
    /// An intent stage output whose training intents came from cross-fitted candidates
    /// (`dmsrec candidates --crossfit`); adds the "crossfit" row.
    #[arg(long)]
    pub crossfit_intents: Option<PathBuf>,
    /// Run the cross-fitted candidate and intent stages with this many folds (into
    /// RUN/candidates-crossfit and RUN/intents-crossfit) and add the "crossfit" row.
    #[arg(long)]
    pub crossfit: Option<usize>,
    /// Replay recorded intents instead of running the LLM: a folder with `intent_items_test.tsv`,
    /// `intent_items_train.tsv` (and `intent_items_train-crossfit.tsv`), as kept in `mini/`.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Candidates per prompt, when the stages run.
    #[arg(long, default_value_t = 20)]
    pub k: usize,
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Train every table row with this many seeds (seed, seed + 1, …) and report their mean; the
    /// † test then compares per-example values averaged over the seeds. Sweeps use the first seed.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// Training recipe of the ablation, alignment and sweep runs.
    #[arg(long, value_enum, default_value = "tuned")]
    pub recipe: Recipe,
    /// σ of every run that does not sweep it.
    #[arg(long, default_value_t = 0.2)]
    pub sigma: f64,
    #[arg(long, default_value_t = 0.2)]
    pub intent_dropout: f64,
    /// Report folder (Markdown tables + SVG plots; default RUN/report).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Where to write the results JSON (default REPORT/results.json).
    #[arg(long)]
    pub results: Option<PathBuf>,
}

impl ExperimentArgs {
    pub fn spec(&self) -> ExperimentSpec {
        ExperimentSpec {
            kind: self.kind,
            data: self.data.clone(),
            model: self.model,
            run: self.run.clone(),
            intents: self.intents.clone(),
            crossfit_intents: self.crossfit_intents.clone(),
            crossfit: self.crossfit,
            replay: self.replay.clone(),
            k: self.k,
            epochs: self.epochs,
            seed: self.seed,
            seeds: self.seeds,
            recipe: self.recipe,
            sigma: self.sigma,
            intent_dropout: self.intent_dropout,
            report: self.report.clone(),
            results: self.results.clone(),
        }
    }
}

/// Runs the experiment, printing its stages, a progress bar per training run and the report.
pub fn run(spec: &ExperimentSpec) -> Result<()> {
    let run_printer: RefCell<Option<RunPrinter>> = RefCell::new(None);
    let candidates = CandidatesPrinter::default();
    let intents: RefCell<Option<IntentsProgress>> = RefCell::new(None);
    let on_event = |event: ExperimentEvent| match event {
        ExperimentEvent::Stage(what) => println!("== {what}"),
        ExperimentEvent::Training { variant, seed, protocol, event } => {
            if let RunEvent::Started { .. } = event {
                let header = format!("{} {variant}, seed {seed}, protocol {protocol:?}", spec.model);
                *run_printer.borrow_mut() = Some(RunPrinter::new(&header, protocol));
            }
            if let Some(p) = run_printer.borrow().as_ref() {
                p.on_event(event);
            }
        }
        ExperimentEvent::Candidates(e) => candidates.on_event(e),
        ExperimentEvent::Intents(e) => {
            intents.borrow_mut().get_or_insert_with(IntentsProgress::default).on_event(e)
        }
        ExperimentEvent::IntentsDone(outcome) => {
            if let Some(p) = intents.borrow_mut().take() {
                p.bar.finish_and_clear();
            }
            print_outcome(outcome);
        }
    };
    let outcome = dmsrec_pipeline::experiment::experiment(spec, &on_event)?;
    println!("{}", outcome.markdown);
    println!("wrote {} and {}", outcome.report.display(), outcome.results.display());
    Ok(())
}
