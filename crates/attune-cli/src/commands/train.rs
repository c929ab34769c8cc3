//! `attune train`.
use anyhow::Context;
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_core::config::{Pooling, ProblemType};
use attune_core::lora::LoraConfig;
use attune_train::data::{label_set, multi_label_set, stratified_split, Dataset};
use attune_train::trainer::{self, ClassWeights, LabelledTexts, TrainConfig};

use crate::cli::{DataArgs, PoolingArg, TrainArgs};
use crate::progress::Bars;

fn labelled(ds: &Dataset, labels: &[String], args: &DataArgs) -> anyhow::Result<LabelledTexts> {
    Ok(LabelledTexts {
        texts: ds.examples.iter().map(|e| e.text.clone()).collect(),
        gold: super::gold_of(ds, labels, args)?,
        rationales: if args.rationales.is_some() {
            ds.examples.iter().map(|e| e.rationale.clone()).collect()
        } else {
            Vec::new()
        },
    })
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        max_len: args.max_len,
        warmup_ratio: args.warmup_ratio,
        weight_decay: args.weight_decay,
        max_grad_norm: args.max_grad_norm,
        seed: args.seed,
        patience: args.patience,
        eval_every: args.eval_every,
        class_weights: if args.balanced_class_weights {
            ClassWeights::Balanced
        } else {
            ClassWeights::None
        },
        metric: args.metric.clone(),
        length_bucketing: !args.no_bucketing,
        attention_loss_weight: args.attention_loss_weight,
        attention_sharpness: args.attention_sharpness,
    };
    cfg.validate()?;
    if !(0.0..1.0).contains(&args.dev_fraction) || args.dev_fraction == 0.0 {
        anyhow::bail!(
            "--dev-fraction must be in (0, 1), got {}",
            args.dev_fraction
        );
    }
    let train_ds = super::read_dataset(&args.train, &args.data)?;
    let (train_ds, dev_ds) = match &args.dev {
        // --limit caps the training rows; the dev set is always read whole.
        Some(dev) => {
            let dev_args = DataArgs {
                limit: None,
                ..args.data.clone()
            };
            (train_ds, super::read_dataset(dev, &dev_args)?)
        }
        None => {
            let (train, dev) = stratified_split(train_ds.examples, args.dev_fraction, args.seed);
            let path = train_ds.path.clone();
            (
                Dataset {
                    examples: train,
                    skipped: vec![],
                    path: path.clone(),
                },
                Dataset {
                    examples: dev,
                    skipped: vec![],
                    path,
                },
            )
        }
    };
    let labels = if args.data.multi_label {
        multi_label_set(&train_ds.examples, &args.data.label_separator)
    } else {
        label_set(&train_ds.examples)
    };
    if labels.len() < 2 {
        anyhow::bail!(
            "{}: needs at least two distinct labels, found {:?}",
            args.train.display(),
            labels
        );
    }
    let train = labelled(&train_ds, &labels, &args.data)?;
    let dev = labelled(&dev_ds, &labels, &args.data)?;
    let mode = if args.lora {
        TrainMode::Lora(LoraConfig::new(
            args.lora_r,
            args.lora_alpha,
            args.lora_dropout,
            args.lora_targets.clone(),
        ))
    } else {
        TrainMode::Full
    };
    let opts = LoadOptions {
        labels: Some(labels.clone()),
        mode,
        seed: args.seed,
        problem_type: Some(if args.data.multi_label {
            ProblemType::MultiLabelClassification
        } else {
            ProblemType::SingleLabelClassification
        }),
        pooling: Some(match args.pooling {
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Mean => Pooling::Mean,
        }),
        ..LoadOptions::default()
    };
    let model = checkpoint::load(&args.model, &opts)?;
    // Like transformers' load report: what the checkpoint did not provide, and what it had
    // that this model does not use, so a wrong base model is noticed before training.
    let report = model.params.report();
    let (adapters, fresh): (Vec<&String>, Vec<&String>) = report
        .initialised
        .iter()
        .partition(|n| attune_core::lora::is_adapter_param(n));
    if !fresh.is_empty() {
        let names: Vec<&str> = fresh.iter().map(|n| n.as_str()).collect();
        eprintln!("initialised from scratch: {}", names.join(", "));
    }
    if !adapters.is_empty() {
        eprintln!("new LoRA adapter matrices: {}", adapters.len());
    }
    let unused = model.params.unused(&report.loaded);
    if !unused.is_empty() {
        eprintln!("unused checkpoint tensors: {}", unused.join(", "));
    }
    let trainable: usize = model
        .params
        .trainable_vars()
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum();
    eprintln!(
        "training {} on {} examples ({} dev), {} labels, {} trainable parameters{}",
        args.model.display(),
        train.texts.len(),
        dev.texts.len(),
        labels.len(),
        trainable,
        if args.lora { " (LoRA)" } else { "" }
    );
    let extra = serde_json::json!({
        "base_model": args.model,
        "train_file": args.train,
        "dev_file": args.dev,
        "dev_fraction": if args.dev.is_none() { Some(args.dev_fraction) } else { None },
        "limit": args.data.limit,
        "lora": model.lora,
        "pooling": format!("{:?}", args.pooling).to_lowercase(),
        "text_column": args.data.text_column,
        "label_column": args.data.label_column,
        "lowercase": args.data.lowercase,
        "remove_stop_words": args.data.remove_stop_words,
        "multi_label": args.data.multi_label,
        "label_separator": args.data.label_separator,
        "where": args.data.where_,
        "rationales": args.data.rationales,
    });
    let mut bars = Bars::new();
    let summary = trainer::train(&model, &train, &dev, &cfg, &args.out, extra, &mut bars)
        .with_context(|| format!("training into {}", args.out.display()))?;
    bars.finish();
    println!("{}", summary.best.table());
    println!(
        "\nkept checkpoint of step {} of {}{}; {:.1} sentences/s; run directory {}",
        summary.best_step,
        summary.steps,
        if summary.stopped_early {
            " (stopped early)"
        } else {
            ""
        },
        summary.sentences_per_s,
        args.out.display()
    );
    Ok(())
}
