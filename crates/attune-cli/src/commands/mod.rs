//! One module per command.
mod align;
mod bench;
mod eval;
mod explain;
mod predict;
mod prune;
mod quantize;
mod train;

use std::path::Path;

use anyhow::Context;
use attune_train::data::{Preprocess, ReadOptions};

use crate::cli::{Command, DataArgs};

/// Dispatches a parsed command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Align(args) => align::run(args),
        Command::Quantize(args) => quantize::run(args),
        Command::Prune(args) => prune::run(args),
    }
}

fn read_options(args: &DataArgs) -> anyhow::Result<ReadOptions> {
    let filter = match &args.where_ {
        Some(spec) => {
            let (field, value) = spec
                .split_once('=')
                .with_context(|| format!("--where {spec:?}: expected FIELD=VALUE"))?;
            Some((field.trim().to_owned(), value.trim().to_owned()))
        }
        None => None,
    };
    Ok(ReadOptions {
        text_column: args.text_column.clone(),
        label_column: args.label_column.clone(),
        limit: args.limit,
        skip_bad_rows: args.skip_bad_rows,
        preprocess: Preprocess {
            lowercase: args.lowercase,
            remove_stop_words: args.remove_stop_words,
        },
        label_separator: args.multi_label.then(|| args.label_separator.clone()),
        filter,
        rationale_field: args.rationales.clone(),
    })
}

/// Reads a dataset and reports any skipped rows on stderr.
fn read_dataset(path: &Path, args: &DataArgs) -> anyhow::Result<attune_train::data::Dataset> {
    let ds = attune_train::data::read_dataset(path, &read_options(args)?)?;
    if !ds.skipped.is_empty() {
        eprintln!(
            "{}: skipped {} bad rows; first: {}",
            path.display(),
            ds.skipped.len(),
            ds.skipped[0]
        );
    }
    Ok(ds)
}

/// Gold labels of a dataset against a model's label list, single- or multi-label.
fn gold_of(
    ds: &attune_train::data::Dataset,
    labels: &[String],
    args: &DataArgs,
) -> anyhow::Result<attune_train::trainer::Gold> {
    use attune_train::data::{label_id_sets, label_ids};
    use attune_train::trainer::Gold;
    Ok(if args.multi_label {
        Gold::Multi(label_id_sets(ds, labels, &args.label_separator)?)
    } else {
        Gold::Single(label_ids(ds, labels)?)
    })
}

/// The max length a run was trained with (`train_config.json`), else 128.
fn trained_max_len(run_dir: &Path) -> anyhow::Result<usize> {
    let path = run_dir.join("train_config.json");
    if !path.is_file() {
        return Ok(128);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    Ok(value
        .get("max_len")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(128) as usize)
}

/// Loads a trained model for inference, merging LoRA adapters for base-model speed.
fn load_trained(dir: &Path) -> anyhow::Result<attune_core::checkpoint::LoadedModel> {
    let mut model = attune_core::checkpoint::load(dir, &Default::default())?;
    model.merge_adapters()?;
    Ok(model)
}

/// Explainer settings from the command line.
fn explain_config(
    args: &crate::cli::MethodArgs,
    run_dir: &Path,
) -> anyhow::Result<attune_explain::explainer::ExplainConfig> {
    Ok(attune_explain::explainer::ExplainConfig {
        methods: attune_explain::explainer::parse_methods(&args.methods)?,
        layer: args.layer,
        head: args.head,
        raw_query: args.raw_query.parse()?,
        ig_steps: args.ig_steps,
        baseline: args.baseline.parse()?,
        max_len: match args.max_len {
            Some(m) => m,
            None => trained_max_len(run_dir)?,
        },
        batch_size: args.batch_size,
        target: None,
    })
}

/// Loads a model to explain. A base model (no `id2label`, e.g. the pretrained encoder, as in
/// Hollenstein & Beinborn's comparisons) is accepted for the attention methods, which do not
/// involve the classification head; the head is then a single placeholder class, and methods
/// that differentiate or perturb the prediction are refused because they would explain noise.
fn load_for_explain(
    dir: &Path,
    methods: &[attune_explain::explainer::Method],
) -> anyhow::Result<(attune_core::checkpoint::LoadedModel, bool)> {
    use attune_explain::explainer::Method;
    let config = attune_core::config::BertConfig::from_file(&dir.join("config.json"))?;
    if config.labels().is_some() {
        return Ok((load_trained(dir)?, false));
    }
    if let Some(m) = methods
        .iter()
        .find(|m| !matches!(m, Method::Raw | Method::Rollout | Method::Flow))
    {
        anyhow::bail!(
            "{}: a base model without a classification head; `{m}` explains a prediction, so \
             fine-tune first, or use the attention methods (raw, rollout, flow) only",
            dir.display()
        );
    }
    let opts = attune_core::checkpoint::LoadOptions {
        labels: Some(vec!["(no head)".to_owned()]),
        ..Default::default()
    };
    Ok((attune_core::checkpoint::load(dir, &opts)?, true))
}
