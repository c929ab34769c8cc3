//! Command-line definitions (kept apart from the command implementations, as uv does).
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// attune: fine-tune BERT-family classifiers and see where they look.
#[derive(Debug, Parser)]
#[command(name = "attune", version, about)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (e.g. `info`, `attune=debug`).
    #[arg(long, global = true, env = "ATTUNE_LOG", default_value = "warn")]
    pub log: String,
}

/// attune's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fine-tune a model on a labelled dataset (full or LoRA).
    Train(TrainArgs),
    /// Score a trained model on a labelled dataset.
    Eval(EvalArgs),
    /// Classify texts (arguments, or one per line on stdin) as JSON lines.
    Predict(PredictArgs),
    /// Measure inference and training speed (optionally beside PyTorch).
    Bench(BenchArgs),
}

/// Which columns hold what, and how to treat bad rows.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// Column (header name or JSON key) with the text; guessed from text/sentence/... if absent.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Column with the label; guessed from label/category/... if absent.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Use only the first N rows (of the training file, for `train`).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip malformed rows (they are counted and reported) instead of stopping.
    #[arg(long)]
    pub skip_bad_rows: bool,
    /// Lower-case texts first (off by default: subword models expect raw text).
    #[arg(long)]
    pub lowercase: bool,
    /// Remove English stop words first (off by default).
    #[arg(long)]
    pub remove_stop_words: bool,
    /// Multi-label data: each text has any number of labels, joined by --label-separator (or a
    /// JSON list in .jsonl; a text with none has an empty list or the separator alone). Trains a
    /// sigmoid head with binary cross-entropy.
    #[arg(long)]
    pub multi_label: bool,
    /// Separator between the labels of one text in multi-label data.
    #[arg(long, default_value = "|")]
    pub label_separator: String,
}

/// Pooling of the classification head.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolingArg {
    /// Pooler over the CLS token (HF BertForSequenceClassification).
    Cls,
    /// Mean over tokens.
    Mean,
}

/// `attune train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Base model directory (HF layout: config.json, model.safetensors, tokenizer.json/vocab.txt).
    #[arg(long)]
    pub model: PathBuf,
    /// Training data (.csv, .tsv or .jsonl).
    #[arg(long)]
    pub train: PathBuf,
    /// Dev data; without it a stratified, seeded split of --train is used.
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// Run directory to create (best checkpoint, metrics, plots).
    #[arg(long)]
    pub out: PathBuf,
    /// Share of --train held out as dev when --dev is absent.
    #[arg(long, default_value_t = 0.1)]
    pub dev_fraction: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Peak learning rate (2e-5 suits full fine-tuning, ~5e-4 LoRA).
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// Maximum tokens per text, CLS and SEP included.
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Fraction of steps for linear warmup.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Decoupled weight decay (not on biases and LayerNorm).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Seed for initialisation, dropout, shuffling and the dev split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Stop after this many dev evaluations without improvement.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Also evaluate on dev every N steps (always after each epoch).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Dev metric that picks the kept checkpoint.
    #[arg(long, default_value = "accuracy", value_parser = ["accuracy", "macro_f1"])]
    pub metric: String,
    /// Weight the loss by inverse class frequency.
    #[arg(long)]
    pub balanced_class_weights: bool,
    /// Disable length bucketing (batches then pad to their longest random member).
    #[arg(long)]
    pub no_bucketing: bool,
    /// Head pooling.
    #[arg(long, value_enum, default_value = "cls")]
    pub pooling: PoolingArg,
    /// Train LoRA adapters (plus the head) instead of every weight.
    #[arg(long)]
    pub lora: bool,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub lora_r: usize,
    /// LoRA alpha (scale = alpha / r).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Dropout on the LoRA input.
    #[arg(long, default_value_t = 0.1)]
    pub lora_dropout: f64,
    /// Modules that get adapters (comma-separated: query,key,value,dense).
    #[arg(long, default_value = "query,value", value_delimiter = ',')]
    pub lora_targets: Vec<String>,
    /// Input options.
    #[command(flatten)]
    pub data: DataArgs,
}

/// `attune eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Trained model (a run directory of `attune train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data to score.
    #[arg(long)]
    pub data: PathBuf,
    /// Where to write eval.json and confusion_matrix.png (default: RUN_DIR/eval-DATA_NAME).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tokens per text (default: the training setting).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Input options.
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// `attune predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Trained model (a run directory of `attune train`).
    #[arg(long)]
    pub model: PathBuf,
    /// Texts to classify; without any, one text per line is read from stdin.
    pub texts: Vec<String>,
    /// Tokens per text (default: the training setting).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Lines read from stdin before a batch is classified and written (bounds memory).
    #[arg(long, default_value_t = 512)]
    pub chunk: usize,
}

/// `attune bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model directory (base or trained).
    #[arg(long)]
    pub model: PathBuf,
    /// Sentences to feed (tab-separated file with a header; first column used).
    #[arg(long, default_value = "../shared/data/sst2/dev.tsv")]
    pub data: PathBuf,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Inference shapes as BATCHxSEQ.
    #[arg(long, default_value = "32x128,32x64", value_delimiter = ',')]
    pub infer: Vec<String>,
    /// Training shape as BATCHxSEQ.
    #[arg(long, default_value = "16x64")]
    pub train: String,
    /// Also run tools/bench_reference.py (PyTorch) on the same inputs and report ratios.
    #[arg(long)]
    pub reference: bool,
    /// Python interpreter for --reference.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}
