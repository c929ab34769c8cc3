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
    /// Show where the model looks: per-word importance by attention, rollout, flow, gradients,
    /// integrated gradients or occlusion, as a terminal heatmap, JSON lines or an HTML page.
    Explain(ExplainArgs),
    /// Measure how far model importance is from human attention (eye tracking, rationales).
    Align(AlignArgs),
    /// Convert a trained model's encoder to int8 or bf16 for faster inference; `eval` then
    /// shows the accuracy change and whether explanations stayed the same.
    Quantize(QuantizeArgs),
    /// Score attention heads by importance (Michel et al. 2019), plot accuracy against the
    /// fraction pruned, and write a model without the least important heads.
    Prune(PruneArgs),
}

/// `attune prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Trained model (a run directory of `attune train`; LoRA adapters are merged).
    #[arg(long)]
    pub model: PathBuf,
    /// Labelled data the pruning curve and the speed are measured on (e.g. the dev set).
    #[arg(long)]
    pub data: PathBuf,
    /// Labelled data the importance scores come from (default: --data). A split apart from
    /// --data keeps the curve honest.
    #[arg(long)]
    pub importance_data: Option<PathBuf>,
    /// Texts of the importance data to use.
    #[arg(long, default_value_t = 2000)]
    pub importance_limit: usize,
    /// Fraction of all heads to remove in the written model.
    #[arg(long, default_value_t = 0.3)]
    pub fraction: f64,
    /// Directory for the pruned model, prune.json and prune_curve.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Tokens per text (default: the training setting).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Texts per batch (small batches approximate per-example gradients better).
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Seed of the random-order baseline.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Input options.
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// `attune quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Trained model (a run directory of `attune train`; LoRA adapters are merged).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory to write the quantised model to.
    #[arg(long)]
    pub out: PathBuf,
    /// Weight format: int8 (VNNI, per-row weights, per-token activations) or bf16.
    #[arg(long, default_value = "int8")]
    pub dtype: String,
}

/// Options shared by `explain` and `align`.
#[derive(Debug, Args, Clone)]
pub struct MethodArgs {
    /// Comma-separated methods: raw, rollout, flow, saliency, grad_input, ig, occlusion, or all.
    #[arg(long, default_value = "all")]
    pub methods: String,
    /// Layer for raw attention (0-based); default the last.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Head for raw attention (0-based); default the mean over heads.
    #[arg(long)]
    pub head: Option<usize>,
    /// Rows raw attention reads: `cls` (what the classifier reads) or `words` (attention each
    /// token receives from all words, as Hollenstein & Beinborn 2021).
    #[arg(long, default_value = "cls")]
    pub raw_query: String,
    /// Integrated-gradients steps.
    #[arg(long, default_value_t = 50)]
    pub ig_steps: usize,
    /// Integrated-gradients baseline for words: pad, mask or zero.
    #[arg(long, default_value = "pad")]
    pub baseline: String,
    /// Token limit per text; default the run's training max length.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Rows per forward/backward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Trained run directory (or any classifier directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Texts to explain; read from stdin, one per line, when none are given.
    pub texts: Vec<String>,
    #[command(flatten)]
    pub methods: MethodArgs,
    /// Class to explain (label name); default the predicted class of each text.
    #[arg(long)]
    pub target: Option<String>,
    /// One JSON object per text on stdout instead of the heatmap.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page with the texts shaded per method.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Plain text instead of ANSI colours (also when NO_COLOR is set or stdout is not a terminal).
    #[arg(long)]
    pub no_color: bool,
}

#[derive(Debug, Args)]
pub struct AlignArgs {
    /// Trained run directory (or any classifier directory, e.g. the pretrained model).
    #[arg(long)]
    pub model: PathBuf,
    /// Human attention, JSONL: `tokens` plus `relfix` (eye tracking) or `rationale` (0/1).
    #[arg(long)]
    pub human: PathBuf,
    /// Keep only records whose `split` field has this value (e.g. test).
    #[arg(long)]
    pub split: Option<String>,
    /// Use at most this many records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Sentences with fewer aligned words are skipped for Spearman (and counted).
    #[arg(long, default_value_t = 3)]
    pub min_words: usize,
    /// Word frequencies for the frequency baseline: `word<TAB>zipf` lines.
    #[arg(long)]
    pub word_frequencies: Option<PathBuf>,
    /// Skip the faithfulness metrics (comprehensiveness, sufficiency), which cost ten forward
    /// passes per text and method.
    #[arg(long)]
    pub no_faithfulness: bool,
    /// Seed for the bootstrap intervals.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub methods: MethodArgs,
    /// Output directory: align.json, per-text scores and the chart.
    #[arg(long)]
    pub out: PathBuf,
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
    /// JSONL only: keep rows whose FIELD equals VALUE, e.g. `--where split=val`.
    #[arg(long = "where", value_name = "FIELD=VALUE")]
    pub where_: Option<String>,
    /// JSONL only: field with one human importance value per word (e.g. HateXplain's
    /// `rationale_mean`), used by `--attention-loss-weight`.
    #[arg(long, value_name = "FIELD")]
    pub rationales: Option<String>,
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
    /// Weight λ of the attention-supervision loss (HateXplain): pulls the last layer's
    /// head-averaged CLS attention toward softmax(β · rationale). 0 turns it off.
    #[arg(long, default_value_t = 0.0)]
    pub attention_loss_weight: f64,
    /// Sharpness β of the attention target.
    #[arg(long, default_value_t = 10.0)]
    pub attention_sharpness: f64,
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
    /// Model to compare with: accuracy change, prediction agreement and explanation parity.
    /// Default for a quantised model: the model it was made from.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Texts (the first of the data) whose explanations are compared with the baseline's.
    #[arg(long, default_value_t = 200)]
    pub parity_texts: usize,
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
    /// Explanations/s per method on this many dev sentences at their real lengths (0: skip).
    #[arg(long, default_value_t = 32)]
    pub explain_texts: usize,
    /// Weight formats to measure inference in (each in its own process, for its peak RSS).
    #[arg(long, default_value = "f32,bf16,int8", value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Reference engines for --reference: torch, torch-int8, ort, ort-int8.
    #[arg(long, default_value = "torch,torch-int8,ort,ort-int8")]
    pub engines: String,
    /// Skip the training measurements.
    #[arg(long)]
    pub no_train: bool,
    /// Internal: measure inference in this one format and print JSON rows.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}
