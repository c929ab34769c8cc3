//! The fine-tuning loop and its run directory.
//!
//! A run directory is self-describing: the best checkpoint (HF or PEFT layout, loadable by
//! `attune predict` and by `transformers`), `train_config.json` (every setting used, data
//! paths, labels), `metrics.jsonl` (one line per step: loss, lr, gradient norm, sentences/s),
//! `evals.jsonl` (one line per dev evaluation), `eval.json` (dev metrics of the best checkpoint)
//! and PNG plots of the training curves and the confusion matrix.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use attune_core::checkpoint::LoadedModel;
use attune_core::infer::{argmax, binary_cross_entropy_with_logits, cross_entropy};
use attune_core::{ForwardOptions, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokenizers::Encoding;

use crate::data::Rationale;
use crate::metrics::{evaluate, evaluate_multilabel, Evaluation};
use crate::optim::{linear_schedule, training_forward, AdamW, AdamWConfig};

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Model or tokenizer failure.
    #[error(transparent)]
    Core(#[from] attune_core::Error),
    /// Tensor failure.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Run-directory I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Plot failure.
    #[error(transparent)]
    Plot(#[from] attune_plot::PlotError),
    /// The settings do not make sense.
    #[error("{0}")]
    Config(String),
    /// Training diverged.
    #[error("loss became {0} at step {1}; lower --lr or enable clipping")]
    Diverged(f64, usize),
}

type Result<T> = std::result::Result<T, TrainError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Class weighting of the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every example counts the same.
    #[default]
    None,
    /// `n / (k · n_c)`, sklearn's "balanced": rare classes count more.
    Balanced,
}

/// Every training setting; written to `train_config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Tokens per text, special tokens included.
    pub max_len: usize,
    /// Fraction of all steps spent warming up.
    pub warmup_ratio: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub max_grad_norm: f64,
    /// Seed of initialisation, dropout, shuffling and the dev split.
    pub seed: u64,
    /// Stop after this many evaluations without dev improvement.
    pub patience: Option<usize>,
    /// Evaluate every N steps as well as after each epoch.
    pub eval_every: Option<usize>,
    /// Loss weighting per class.
    pub class_weights: ClassWeights,
    /// Dev metric that selects the best checkpoint: `accuracy` or `macro_f1`.
    pub metric: String,
    /// Sort texts of similar length into the same batch (less padding).
    pub length_bucketing: bool,
    /// Weight λ of the attention-supervision loss (0: off); see [`attention_loss`].
    #[serde(default)]
    pub attention_loss_weight: f64,
    /// Sharpness β of the attention target `softmax(β · rationale)` (HateXplain's "variance",
    /// 10 in Mathew et al. 2021).
    #[serde(default = "default_sharpness")]
    pub attention_sharpness: f64,
}

fn default_sharpness() -> f64 {
    10.0
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 16,
            lr: 2e-5,
            max_len: 128,
            warmup_ratio: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            seed: 42,
            patience: None,
            eval_every: None,
            class_weights: ClassWeights::None,
            metric: "accuracy".into(),
            length_bucketing: true,
            attention_loss_weight: 0.0,
            attention_sharpness: default_sharpness(),
        }
    }
}

impl TrainConfig {
    /// Checks the settings before any work starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("--lr must be a positive number");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return bad("--warmup-ratio must be in [0, 1)");
        }
        if self.max_len < 2 {
            return bad("--max-len must be at least 2");
        }
        if self.metric != "accuracy" && self.metric != "macro_f1" {
            return bad("--metric must be accuracy or macro_f1");
        }
        if !(self.attention_loss_weight >= 0.0 && self.attention_loss_weight.is_finite()) {
            return bad("--attention-loss-weight must be a number ≥ 0");
        }
        if !(self.attention_sharpness > 0.0 && self.attention_sharpness.is_finite()) {
            return bad("--attention-sharpness must be a positive number");
        }
        Ok(())
    }
}

/// Gold labels of a set of texts.
#[derive(Debug, Clone)]
pub enum Gold {
    /// One label id per text (softmax head).
    Single(Vec<u32>),
    /// A set of label ids per text, possibly empty (sigmoid head).
    Multi(Vec<Vec<u32>>),
}

impl Default for Gold {
    fn default() -> Self {
        Self::Single(Vec::new())
    }
}

impl Gold {
    /// Number of texts labelled.
    pub fn len(&self) -> usize {
        match self {
            Self::Single(v) => v.len(),
            Self::Multi(v) => v.len(),
        }
    }

    /// Whether no text is labelled.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch loss: (weighted) cross-entropy, or binary cross-entropy on multi-hot targets.
    fn loss(
        &self,
        logits: &Tensor,
        indices: &[usize],
        class_weights: Option<&Tensor>,
    ) -> Result<Tensor> {
        let device = logits.device();
        Ok(match self {
            Self::Single(ids) => {
                let targets: Vec<u32> = indices.iter().map(|&i| ids[i]).collect();
                let targets = Tensor::from_vec(targets, indices.len(), device)?;
                cross_entropy(logits, &targets, class_weights)?
            }
            Self::Multi(sets) => {
                let k = logits.dim(1)?;
                let mut hot = vec![0f32; indices.len() * k];
                for (row, &i) in indices.iter().enumerate() {
                    for &c in &sets[i] {
                        hot[row * k + c as usize] = 1.0;
                    }
                }
                let targets = Tensor::from_vec(hot, (indices.len(), k), device)?;
                binary_cross_entropy_with_logits(logits, &targets)?
            }
        })
    }
}

/// Texts with their gold labels.
#[derive(Debug, Clone, Default)]
pub struct LabelledTexts {
    /// The texts.
    pub texts: Vec<String>,
    /// Their labels, in the same order.
    pub gold: Gold,
    /// Human word importance per text (same order), for attention supervision; empty when the
    /// data has none.
    pub rationales: Vec<Option<Rationale>>,
}

/// One optimisation step, as logged to `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepLog {
    /// 1-based step.
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    /// Training loss of the batch.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training throughput of this step.
    pub sentences_per_s: f64,
    /// Attention-supervision loss of the batch (before weighting), when it is on and the batch
    /// has supervised texts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_loss: Option<f64>,
}

/// One dev evaluation, as logged to `evals.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalLog {
    /// Step after which it ran.
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    /// Dev accuracy.
    pub accuracy: f64,
    /// Dev macro-F1.
    pub macro_f1: f64,
    /// Dev loss.
    pub loss: f64,
    /// Whether this became the kept checkpoint.
    pub best: bool,
}

/// Receives progress; the CLI draws progress bars from it.
pub trait Observer {
    /// A phase with `total` units of work begins.
    fn phase(&mut self, name: &str, total: usize);
    /// `n` more units of the current phase are done.
    fn advance(&mut self, n: usize);
    /// A training step finished.
    fn step(&mut self, log: &StepLog);
    /// A dev evaluation finished.
    fn eval(&mut self, log: &EvalLog);
}

/// An observer that ignores everything (tests, libraries).
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn phase(&mut self, _: &str, _: usize) {}
    fn advance(&mut self, _: usize) {}
    fn step(&mut self, _: &StepLog) {}
    fn eval(&mut self, _: &EvalLog) {}
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Dev metrics of the kept checkpoint.
    pub best: Evaluation,
    /// Step of the kept checkpoint.
    pub best_step: usize,
    /// Steps run.
    pub steps: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Mean training throughput.
    pub sentences_per_s: f64,
}

/// Encodes texts once, up front, so epochs only collate.
fn encode_all(
    model: &LoadedModel,
    texts: &[String],
    max_len: usize,
    obs: &mut dyn Observer,
    name: &str,
) -> Result<Vec<Encoding>> {
    obs.phase(name, texts.len());
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(1024) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        out.extend(model.tokenizer.encode(&refs, max_len)?);
        obs.advance(chunk.len());
    }
    Ok(out)
}

/// Batches of indices for one epoch: shuffled, then (with bucketing) sorted by length inside
/// windows of 50 batches so each batch pads little while batch order stays random.
fn epoch_batches(
    lengths: &[usize],
    batch: usize,
    bucketing: bool,
    rng: &mut rand::rngs::StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    if bucketing {
        for window in order.chunks_mut(batch * 50) {
            window.sort_by_key(|&i| lengths[i]);
        }
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch).map(<[usize]>::to_vec).collect();
    if bucketing {
        batches.shuffle(rng);
    }
    batches
}

/// Runs the model over encoded texts and scores it against `gold`. Multi-label predictions are
/// the labels whose sigmoid probability is at least 0.5.
pub fn evaluate_encoded(
    model: &LoadedModel,
    encodings: &[Encoding],
    gold: &Gold,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<Evaluation> {
    Ok(score_encoded(model, encodings, gold, batch_size, obs)?.0)
}

/// [`evaluate_encoded`] plus each text's decision (its class, or its set of classes for a
/// multi-label model), for comparing two models' predictions without running either twice.
pub fn score_encoded(
    model: &LoadedModel,
    encodings: &[Encoding],
    gold: &Gold,
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<(Evaluation, Vec<Vec<u32>>)> {
    let mut single = vec![0u32; encodings.len()];
    let mut multi = vec![Vec::new(); encodings.len()];
    let mut loss_sum = 0f64;
    obs.phase("evaluating", encodings.len());
    for chunk in attune_core::length_sorted_batches(encodings, batch_size) {
        let batch = model
            .tokenizer
            .collate_at(encodings, &chunk, model.model.device())?;
        let out = model.model.forward(&batch, &ForwardOptions::default())?;
        loss_sum += gold
            .loss(&out.logits, &chunk, None)?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?
            * chunk.len() as f64;
        let scores = out.logits.to_vec2::<f32>()?;
        for (&i, row) in chunk.iter().zip(&scores) {
            single[i] = argmax(row) as u32;
            // sigmoid(x) >= 0.5 exactly when x >= 0.
            multi[i] = (0..row.len() as u32)
                .filter(|&c| row[c as usize] >= 0.0)
                .collect();
        }
        obs.advance(chunk.len());
    }
    let loss = Some(loss_sum / gold.len().max(1) as f64);
    Ok(match gold {
        Gold::Single(ids) => (
            evaluate(ids, &single, &model.labels, loss),
            single.into_iter().map(|c| vec![c]).collect(),
        ),
        Gold::Multi(sets) => (
            evaluate_multilabel(sets, &multi, &model.labels, loss),
            multi,
        ),
    })
}

fn metric_of(eval: &Evaluation, metric: &str) -> f64 {
    if metric == "macro_f1" {
        eval.macro_f1
    } else {
        eval.accuracy
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    std::fs::write(path, text).map_err(io_err(path))
}

/// The attention target of one text over its tokens (HateXplain, Mathew et al. 2021, §5.2):
/// each token takes the human value of the word it lies in (special tokens and tokens outside
/// every word: 0), then `softmax(β · values)` over the text's tokens. A word split into several
/// pieces gives each piece its value, as HateXplain does.
pub fn attention_target(encoding: &Encoding, rationale: &Rationale, sharpness: f64) -> Vec<f32> {
    let values: Vec<f64> = encoding
        .get_offsets()
        .iter()
        .zip(encoding.get_word_ids())
        .map(|(&(start, end), word)| {
            if word.is_none() || end <= start {
                return 0.0;
            }
            rationale
                .spans
                .iter()
                .position(|&(s, e)| start >= s && start < e)
                .map_or(0.0, |w| f64::from(rationale.values[w]))
        })
        .collect();
    let max = values
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(sharpness * v));
    let exps: Vec<f64> = values
        .iter()
        .map(|&v| (sharpness * v - max).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Attention-supervision loss (Mathew et al. 2021, "HateXplain", AAAI, §5.2): the cross-entropy
/// `−Σ_t target_t · log a_t` between each supervised text's target (see [`attention_target`])
/// and `a`, the last layer's `[CLS]` attention row averaged over heads, averaged over the
/// supervised texts of the batch. `targets` is `[batch, seq]` (zero rows for texts without a
/// rationale), `supervised` the number of non-zero rows. Attention probabilities of padding are
/// exactly 0 and their targets too; the clamp keeps `0 · log 0` at 0.
pub fn attention_loss(
    last_layer_attention: &Tensor,
    targets: &Tensor,
    supervised: usize,
) -> Result<Tensor> {
    let cls_row = last_layer_attention.narrow(2, 0, 1)?.squeeze(2)?.mean(1)?;
    let log_a = cls_row.clamp(1e-12, 1.0)?.log()?;
    Ok(((targets * log_a)?.sum_all()? * (-1.0 / supervised.max(1) as f64))?)
}

/// Fine-tunes `model` on `train`, keeping the checkpoint that scores best on `dev`, and fills
/// `run_dir` (see the module docs).
pub fn train(
    model: &LoadedModel,
    train: &LabelledTexts,
    dev: &LabelledTexts,
    cfg: &TrainConfig,
    run_dir: &Path,
    extra_config: serde_json::Value,
    obs: &mut dyn Observer,
) -> Result<TrainSummary> {
    cfg.validate()?;
    if train.texts.len() != train.gold.len() || dev.texts.len() != dev.gold.len() {
        return Err(TrainError::Config("every text needs its labels".into()));
    }
    let supervised_texts = train.rationales.iter().flatten().count();
    if cfg.attention_loss_weight > 0.0 {
        if train.rationales.len() != train.texts.len() {
            return Err(TrainError::Config(
                "--attention-loss-weight needs human rationales for the training texts \
                 (--rationales FIELD)"
                    .into(),
            ));
        }
        if supervised_texts == 0 {
            return Err(TrainError::Config(
                "--attention-loss-weight: no training text has a marked word".into(),
            ));
        }
    }
    if train.texts.is_empty() || dev.texts.is_empty() {
        return Err(TrainError::Config(
            "training and dev sets must not be empty".into(),
        ));
    }
    std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
    let mut config_record = serde_json::to_value(cfg).expect("serialisable");
    config_record["labels"] = serde_json::json!(model.labels);
    config_record["train_examples"] = serde_json::json!(train.texts.len());
    config_record["dev_examples"] = serde_json::json!(dev.texts.len());
    if let (Some(obj), Some(extra)) = (config_record.as_object_mut(), extra_config.as_object()) {
        obj.extend(extra.clone());
    }
    write_json(&run_dir.join("train_config.json"), &config_record)?;

    let train_enc = encode_all(model, &train.texts, cfg.max_len, obs, "tokenising train")?;
    let dev_enc = encode_all(model, &dev.texts, cfg.max_len, obs, "tokenising dev")?;
    let lengths: Vec<usize> = train_enc.iter().map(Encoding::len).collect();
    let attention_targets: Vec<Option<Vec<f32>>> = if cfg.attention_loss_weight > 0.0 {
        train_enc
            .iter()
            .zip(&train.rationales)
            .map(|(enc, r)| {
                r.as_ref()
                    .map(|r| attention_target(enc, r, cfg.attention_sharpness))
            })
            .collect()
    } else {
        Vec::new()
    };
    let device = model.model.device().clone();

    let class_weights = match (cfg.class_weights, &train.gold) {
        (ClassWeights::None, _) => None,
        (ClassWeights::Balanced, Gold::Multi(_)) => {
            return Err(TrainError::Config(
                "balanced class weights apply to single-label training only".into(),
            ))
        }
        (ClassWeights::Balanced, Gold::Single(ids)) => {
            let k = model.labels.len();
            let mut counts = vec![0usize; k];
            ids.iter().for_each(|&l| counts[l as usize] += 1);
            let n = ids.len() as f64;
            let w: Vec<f32> = counts
                .iter()
                .map(|&c| {
                    if c == 0 {
                        0.0
                    } else {
                        (n / (k as f64 * c as f64)) as f32
                    }
                })
                .collect();
            Some(Tensor::from_vec(w, k, &device)?)
        }
    };
    let vars = model.params.trainable_vars();
    if vars.is_empty() {
        return Err(TrainError::Config(
            "the model has no trainable parameters".into(),
        ));
    }
    let mut optimizer = AdamW::new(
        vars,
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let steps_per_epoch = train.texts.len().div_ceil(cfg.batch_size);
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup_ratio * total_steps as f64).ceil() as usize;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x5eed_ba7c);

    let metrics_path = run_dir.join("metrics.jsonl");
    let mut metrics = std::io::BufWriter::new(
        std::fs::File::create(&metrics_path).map_err(io_err(&metrics_path))?,
    );
    let evals_path = run_dir.join("evals.jsonl");
    let mut evals_file = std::fs::File::create(&evals_path).map_err(io_err(&evals_path))?;
    let mut step_logs: Vec<StepLog> = Vec::new();
    let mut eval_logs: Vec<EvalLog> = Vec::new();
    let mut best: Option<(Evaluation, usize)> = None;
    let mut evals_without_gain = 0usize;
    let mut step = 0usize;
    let mut stopped_early = false;
    let mut train_seconds = 0f64;
    let mut sentences = 0usize;
    let train_opts = ForwardOptions {
        train: true,
        output_attentions: cfg.attention_loss_weight > 0.0,
        ..ForwardOptions::default()
    };

    'epochs: for epoch in 0..cfg.epochs {
        let batches = epoch_batches(&lengths, cfg.batch_size, cfg.length_bucketing, &mut rng);
        obs.phase(
            &format!("epoch {}/{}", epoch + 1, cfg.epochs),
            batches.len(),
        );
        let last_index = batches.len() - 1;
        for (bi, indices) in batches.into_iter().enumerate() {
            let started = Instant::now();
            let batch = model.tokenizer.collate_at(&train_enc, &indices, &device)?;
            let (out, lookup) = training_forward(model, &batch, &train_opts)?;
            let mut loss = train
                .gold
                .loss(&out.logits, &indices, class_weights.as_ref())?;
            let mut attention_loss_value = None;
            if let Some(last) = out.attentions.last() {
                let seq = last.dim(3)?;
                let mut targets = vec![0f32; indices.len() * seq];
                let mut supervised = 0;
                for (row, &i) in indices.iter().enumerate() {
                    if let Some(t) = &attention_targets[i] {
                        targets[row * seq..row * seq + t.len()].copy_from_slice(t);
                        supervised += 1;
                    }
                }
                if supervised > 0 {
                    let targets = Tensor::from_vec(targets, (indices.len(), seq), &device)?
                        .to_dtype(last.dtype())?;
                    let att = attention_loss(last, &targets, supervised)?;
                    attention_loss_value =
                        Some(att.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?);
                    loss = (loss + (att * cfg.attention_loss_weight)?)?;
                }
            }
            let loss_value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            step += 1;
            if !loss_value.is_finite() {
                return Err(TrainError::Diverged(loss_value, step));
            }
            let grads = loss.backward()?;
            let lr = linear_schedule(step - 1, warmup, total_steps, cfg.lr);
            let rows = match &lookup {
                Some(lookup) => lookup.gradients(&grads)?,
                None => Vec::new(),
            };
            let grad_norm = optimizer.step(&grads, &rows, lr, Some(cfg.max_grad_norm))?;
            let elapsed = started.elapsed().as_secs_f64();
            train_seconds += elapsed;
            sentences += indices.len();
            let log = StepLog {
                step,
                epoch: epoch as f64 + (bi + 1) as f64 / steps_per_epoch as f64,
                loss: loss_value,
                lr,
                grad_norm,
                sentences_per_s: indices.len() as f64 / elapsed.max(1e-9),
                attention_loss: attention_loss_value,
            };
            serde_json::to_writer(&mut metrics, &log).expect("serialisable");
            metrics.write_all(b"\n").map_err(io_err(&metrics_path))?;
            obs.step(&log);
            obs.advance(1);
            step_logs.push(log);

            let periodic = cfg
                .eval_every
                .is_some_and(|n| n > 0 && step.is_multiple_of(n));
            if periodic || bi == last_index {
                metrics.flush().map_err(io_err(&metrics_path))?;
                let eval = evaluate_encoded(model, &dev_enc, &dev.gold, cfg.batch_size * 2, obs)?;
                let improved = best
                    .as_ref()
                    .is_none_or(|(b, _)| metric_of(&eval, &cfg.metric) > metric_of(b, &cfg.metric));
                let elog = EvalLog {
                    step,
                    epoch: step as f64 / steps_per_epoch as f64,
                    accuracy: eval.accuracy,
                    macro_f1: eval.macro_f1,
                    loss: eval.loss.unwrap_or(f64::NAN),
                    best: improved,
                };
                serde_json::to_writer(&mut evals_file, &elog).expect("serialisable");
                evals_file.write_all(b"\n").map_err(io_err(&evals_path))?;
                obs.eval(&elog);
                eval_logs.push(elog);
                if improved {
                    model.save(run_dir)?;
                    best = Some((eval, step));
                    evals_without_gain = 0;
                } else {
                    evals_without_gain += 1;
                    if cfg.patience.is_some_and(|p| evals_without_gain >= p) {
                        stopped_early = true;
                        break 'epochs;
                    }
                }
                if bi != last_index {
                    obs.phase(
                        &format!("epoch {}/{}", epoch + 1, cfg.epochs),
                        last_index + 1,
                    );
                    obs.advance(bi + 1);
                }
            }
        }
    }
    metrics.flush().map_err(io_err(&metrics_path))?;
    let (best_eval, best_step) = best.expect("at least one evaluation ran");
    write_evaluation(run_dir, &best_eval, "dev")?;
    plot_run(run_dir, &step_logs, &eval_logs)?;
    Ok(TrainSummary {
        best: best_eval,
        best_step,
        steps: step,
        stopped_early,
        sentences_per_s: sentences as f64 / train_seconds.max(1e-9),
    })
}

/// Writes `eval.json` and `confusion_matrix.png` into `dir`.
pub fn write_evaluation(dir: &Path, eval: &Evaluation, data_name: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_json(&dir.join("eval.json"), eval)?;
    if eval.confusion.is_empty() {
        return Ok(());
    }
    attune_plot::confusion_matrix(
        &dir.join("confusion_matrix.png"),
        &eval.labels,
        &eval.confusion,
        &format!(
            "{data_name}: accuracy {:.3}, macro-F1 {:.3}",
            eval.accuracy, eval.macro_f1
        ),
    )?;
    Ok(())
}

/// Writes `training_curves.png`: loss (train and dev), dev metrics and learning rate.
pub fn plot_run(run_dir: &Path, steps: &[StepLog], evals: &[EvalLog]) -> Result<()> {
    use attune_plot::{Panel, Series};
    // Smooth the noisy per-batch loss with a trailing mean over ~2 % of the run.
    let window = (steps.len() / 50).max(1);
    let smoothed: Vec<(f64, f64)> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let from = i.saturating_sub(window - 1);
            let mean = steps[from..=i].iter().map(|s| s.loss).sum::<f64>() / (i - from + 1) as f64;
            (s.step as f64, mean)
        })
        .collect();
    let loss_series = vec![
        Series {
            name: format!("train (mean of {window})"),
            points: smoothed,
        },
        Series {
            name: "dev".into(),
            points: evals.iter().map(|e| (e.step as f64, e.loss)).collect(),
        },
    ];
    let panels = [
        Panel {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "cross-entropy".into(),
            series: loss_series,
        },
        Panel {
            title: "dev metrics".into(),
            x_label: "step".into(),
            y_label: "score".into(),
            series: vec![
                Series {
                    name: "accuracy".into(),
                    points: evals.iter().map(|e| (e.step as f64, e.accuracy)).collect(),
                },
                Series {
                    name: "macro-F1".into(),
                    points: evals.iter().map(|e| (e.step as f64, e.macro_f1)).collect(),
                },
            ],
        },
        Panel {
            title: "learning rate".into(),
            x_label: "step".into(),
            y_label: "lr".into(),
            series: vec![Series {
                name: "lr".into(),
                points: steps.iter().map(|s| (s.step as f64, s.lr)).collect(),
            }],
        },
    ];
    attune_plot::line_panels(&run_dir.join("training_curves.png"), &panels)?;
    Ok(())
}
