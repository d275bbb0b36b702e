//! `dmsrec`: session-based recommendation with LLM-derived intents, on candle.

mod bench;
mod candidates;
mod commands;
mod demo;
mod experiment;
mod intents;
mod progress;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

// candle allocates a fresh buffer for every op result; mimalloc's thread caches make that cheap
// (the system allocator costs ~1.5x on a training step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` of mimalloc v2 (`mimalloc.h`; the mimalloc crate builds v2).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

#[derive(Parser)]
#[command(
    name = "dmsrec",
    version,
    about = "LLM-derived multi-semantic intents in graph session recommenders"
)]
struct Cli {
    /// Compute threads (candle's pool busy-waits: on a busy 2-core box 1 is often fastest).
    #[arg(long, global = true, env = "DMSREC_THREADS", default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import, inspect, generate or download session datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Train a backbone on a dataset folder.
    Train(TrainArgs),
    /// Evaluate a checkpoint on its dataset's test split.
    Evaluate(EvaluateArgs),
    /// Phase I: the backbone's top-K candidate items for every example.
    Candidates(candidates::CandidatesArgs),
    /// Phase II: LLM intents for a split's examples (cached, resumable) and their embeddings.
    Intents(intents::IntentsArgs),
    /// Top-k items for a session.
    Recommend(RecommendArgs),
    /// All three phases on the embedded synthetic shop: backbone vs backbone + LLM intents.
    Demo(DemoArgs),
    /// Phase III experiments: Table 2, Table 3 ablations, alignment variants, σ/α/β sweeps.
    Experiment(experiment::ExperimentArgs),
    /// Measure speed and memory.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Convert a raw or published dataset into a dmsrec dataset folder.
    Import(ImportArgs),
    /// Print the paper's Table 1 columns for a dataset folder.
    Stats {
        #[arg(long)]
        data: PathBuf,
    },
    /// Write the deterministic synthetic shop dataset.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2024)]
        seed: u64,
        #[arg(long, default_value_t = 600)]
        items: usize,
        #[arg(long, default_value_t = 6000)]
        train_sessions: usize,
        #[arg(long, default_value_t = 800)]
        test_sessions: usize,
    },
    /// A seeded sample of a dataset's examples (the mini protocol: every phase on a few thousand examples).
    Sample {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        train: usize,
        #[arg(long, default_value_t = 500)]
        test: usize,
        #[arg(long, default_value_t = 2024)]
        seed: u64,
    },
    /// One example per session (the authors' MSGIFSR Beauty split): each training session and
    /// each test session rebuilt from the prefix rows, minus its last --drop-last items, gives
    /// all but its last item → that item.
    PerSession {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Items dropped from the end of each session first (1: predict the second-to-last item).
        #[arg(long, default_value_t = 1)]
        drop_last: usize,
    },
    /// Download raw MovieLens-1M or Amazon Beauty 2014 (checksum-verified, resumable).
    Download {
        #[arg(value_enum)]
        source: commands::DownloadSource,
        /// Folder for the raw files.
        #[arg(long)]
        dir: PathBuf,
        /// Server to use instead of the original hosts (mirrors, tests).
        #[arg(long)]
        base_url: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ImportFormat {
    /// Folder with train.tsv, test.tsv, all_train_seq.tsv, items.tsv.
    Tsv,
    /// SR-GNN pickles train.txt, test.txt, all_train_seq.txt (titles from --items).
    Pickle,
    /// Raw MovieLens-1M folder (ratings.dat, movies.dat), the paper's protocol.
    Ml1m,
    /// Raw Amazon 2014 5-core reviews (+ --meta), the paper's protocol.
    Amazon,
    /// Interactions CSV/TSV (+ --items), sessionized by --gap.
    Csv,
}

#[derive(Args)]
struct ImportArgs {
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// Input folder (tsv, pickle, ml1m) or file (amazon reviews, csv interactions).
    #[arg(long)]
    input: PathBuf,
    /// Output dataset folder.
    #[arg(long)]
    out: PathBuf,
    /// items.tsv for pickle, items CSV for csv.
    #[arg(long)]
    items: Option<PathBuf>,
    /// Amazon metadata file (meta_*.json[.gz]).
    #[arg(long)]
    meta: Option<PathBuf>,
    /// csv: inactivity gap in seconds that starts a new session (0: the id column is a session id).
    #[arg(long, default_value_t = 1800)]
    gap: i64,
    /// csv: make one example per prefix.
    #[arg(long)]
    augment: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ProtocolArg {
    Paper,
    Valid,
    Both,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    /// StepLR ×0.1 every 3 epochs, stepped as the model's official code does (SR-GNN, TAGNN and
    /// SHARE before each epoch, so the rate drops after 2 epochs; GCE-GNN after each epoch).
    Step,
    Constant,
    Cosine,
}

#[derive(Args, Clone)]
pub struct TrainArgs {
    /// Dataset folder (see `dmsrec data import`).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, value_enum, default_value = "srgnn")]
    pub model: dmsrec_models::ModelKind,
    /// The model's hyper-parameters as a JSON object (fields of its config, e.g.
    /// `{"dim": 100, "dropout_global": 0.5}`); flags such as --dim override it.
    #[arg(long)]
    pub model_config: Option<PathBuf>,
    /// cpu, cuda or cuda:N (needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder; one run folder per protocol inside it. Re-running resumes.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value = "valid")]
    pub protocol: ProtocolArg,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// L2 added to the gradient (PyTorch Adam weight_decay; default: the model's official
    /// value, 1e-5, or 0 for SHARE).
    #[arg(long)]
    pub l2: Option<f64>,
    #[arg(long, value_enum, default_value = "step")]
    pub schedule: ScheduleArg,
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Early-stopping patience in epochs (valid protocol).
    #[arg(long, default_value_t = 3)]
    pub patience: usize,
    /// Embedding size d (default: the model's, 100 for every backbone of the paper).
    #[arg(long)]
    pub dim: Option<usize>,
    /// Dropout on the session representation while training (0: the paper's recipe).
    #[arg(long, default_value_t = 0.0)]
    pub session_dropout: f64,
    /// GNN propagation steps (SR-GNN, TAGNN; default 1).
    #[arg(long)]
    pub step: Option<usize>,
    /// Write a results JSON file (shape of `results/<model>__<dataset>.json`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    #[command(flatten)]
    pub joint: JointArgs,
}

/// Phase III: fuse LLM intents into the backbone (paper §4.3–4.4).
#[derive(Args, Clone)]
pub struct JointArgs {
    /// The intent stage's output folder (embeddings_train/test.safetensors); without it the
    /// backbone is trained alone.
    #[arg(long)]
    pub intents: Option<PathBuf>,
    /// Which intent kinds to fuse (Table 3: explicit = w/o Latent-Intent, latent = w/o
    /// Explicit-Intent, none = w/o Semantic).
    #[arg(long, value_enum, default_value = "both")]
    pub intent_use: dmsrec_train::fusion::IntentUse,
    /// paper: everything trained, G = the backbone's representation (the default); authors: what
    /// the authors' code does for this backbone (their G, intent dropout and λ as σ; frozen intent
    /// projection, and for GCE-GNN a frozen fusion layer). With authors, --sigma, --alpha,
    /// --beta, --intent-dropout and --align are theirs.
    #[arg(long, value_enum, default_value = "paper")]
    pub fusion: dmsrec_train::fusion::FusionRecipe,
    /// Alignment of G with Ē_e, Ē_l (none = w/o KL).
    #[arg(long, value_enum, default_value = "kl")]
    pub align: dmsrec_train::align::Align,
    /// Weight of the explicit alignment term.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Weight of the latent alignment term.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Weight of the alignment loss in the total loss.
    #[arg(long, default_value_t = 0.2)]
    pub sigma: f64,
    /// Dropout on the intent embeddings before the shared projection.
    #[arg(long, default_value_t = 0.2)]
    pub intent_dropout: f64,
}

#[derive(Args)]
struct EvaluateArgs {
    /// A run folder (holds config.json and model.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder, if not the one recorded in the checkpoint.
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct RecommendArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Item ids separated by spaces, oldest first.
    #[arg(long)]
    session: String,
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Most training epochs of each run (early stopping on the validation split).
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Training examples sampled from the shop (each one costs an LLM prompt).
    #[arg(long, default_value_t = 250)]
    pub train: usize,
    /// Test examples sampled from the shop.
    #[arg(long, default_value_t = 80)]
    pub test: usize,
    /// Candidates per prompt.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 2024)]
    pub seed: u64,
    /// Where to keep the demo's dataset and run folders.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Seconds per epoch, examples/s and peak RSS of training.
    Train(bench::BenchTrainArgs),
    /// Median time of one training step on fixed synthetic shapes (compare with PyTorch).
    Step(bench::BenchStepArgs),
    /// LLM prompt speed (prefill, decode, prompts/s) on ML-1M test prompts, then encoder sentences/s.
    Intents(intents::BenchIntentsArgs),
    /// Training step time of backbone + intents against the plain backbone, side by side.
    Joint(bench::BenchJointArgs),
}

fn main() -> Result<()> {
    // A training step frees and reallocates the same large buffers (TAGNN's [items, clicks]
    // products are ~27 MB each). By default mimalloc returns freed memory to the OS after 10 ms,
    // and the kernel then zeroes fresh pages for the next step: 18% of a TAGNN step in `perf`.
    // Never purging keeps them; peak RSS is unchanged.
    // SAFETY: sets a plain integer option before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let cli = Cli::parse();
    // candle sizes its pools from RAYON_NUM_THREADS; set it before any pool starts.
    std::env::set_var("RAYON_NUM_THREADS", cli.threads.max(1).to_string());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    match cli.command {
        Command::Data(DataCommand::Import(a)) => commands::import(&a),
        Command::Data(DataCommand::Stats { data }) => commands::stats(&data),
        Command::Data(DataCommand::Synth { out, seed, items, train_sessions, test_sessions }) => {
            let cfg = dmsrec_data::synth::SynthConfig {
                seed,
                n_items: items,
                n_train_sessions: train_sessions,
                n_test_sessions: test_sessions,
                ..Default::default()
            };
            commands::synth(&out, &cfg)
        }
        Command::Data(DataCommand::Sample { data, out, train, test, seed }) => {
            commands::sample(&data, &out, train, test, seed)
        }
        Command::Data(DataCommand::PerSession { data, out, drop_last }) => {
            commands::per_session(&data, &out, drop_last)
        }
        Command::Data(DataCommand::Download { source, dir, base_url }) => {
            commands::download(source, &dir, base_url)
        }
        Command::Train(a) => commands::train(&a).map(|_| ()),
        Command::Evaluate(a) => commands::evaluate(&a.checkpoint, a.data.as_deref()),
        Command::Recommend(a) => commands::recommend(&a.checkpoint, &a.session, a.k, a.data.as_deref()),
        Command::Candidates(a) => candidates::run(&a.spec()),
        Command::Intents(a) => intents::run(&a.spec()),
        Command::Demo(a) => demo::run(&a),
        Command::Experiment(a) => experiment::run(&a.spec()),
        Command::Bench(BenchCommand::Train(a)) => bench::train(&a),
        Command::Bench(BenchCommand::Step(a)) => bench::step(&a),
        Command::Bench(BenchCommand::Joint(a)) => bench::joint(&a),
        Command::Bench(BenchCommand::Intents(a)) => intents::bench(&a),
    }
}
