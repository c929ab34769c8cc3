//! `attune prune`: head importance, the accuracy-vs-heads-pruned curve, and a pruned model.
use std::collections::BTreeMap;

use anyhow::Context;
use attune_plot::{Panel, Series};
use attune_train::bench::traffic;
use attune_train::prune::{
    head_importance, mask_without, masked_accuracy, prune_order, pruning_curve,
};
use attune_train::trainer::Gold;

use crate::cli::{DataArgs, PruneArgs};
use crate::progress::Bars;

/// Fractions of all heads the curve is measured at.
const FRACTIONS: [f64; 10] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];

fn labelled(
    path: &std::path::Path,
    args: &DataArgs,
    labels: &[String],
    limit: Option<usize>,
) -> anyhow::Result<(Vec<String>, Vec<u32>)> {
    let data_args = DataArgs {
        limit: limit.or(args.limit),
        ..args.clone()
    };
    let ds = super::read_dataset(path, &data_args)?;
    let Gold::Single(gold) = super::gold_of(&ds, labels, &data_args)? else {
        anyhow::bail!("head pruning needs single-label data");
    };
    Ok((ds.examples.into_iter().map(|e| e.text).collect(), gold))
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    if !(0.0..1.0).contains(&args.fraction) {
        anyhow::bail!("--fraction {} must be in [0, 1)", args.fraction);
    }
    if args.out == args.model {
        anyhow::bail!("--out must differ from --model: the original is the reference");
    }
    let mut model = super::load_trained(&args.model)?;
    if model.model.weight_format() != attune_core::quant::WeightFormat::F32 {
        anyhow::bail!(
            "{}: a {} model; prune the f32 model, then quantise",
            args.model.display(),
            model.model.weight_format()
        );
    }
    let max_len = match args.max_len {
        Some(m) => m,
        None => super::trained_max_len(&args.model)?,
    };
    let (texts, gold) = labelled(&args.data, &args.data_args, &model.labels, None)?;
    let (imp_texts, imp_gold) = match &args.importance_data {
        Some(path) => labelled(
            path,
            &args.data_args,
            &model.labels,
            Some(args.importance_limit),
        )?,
        None => (
            texts.iter().take(args.importance_limit).cloned().collect(),
            gold.iter().take(args.importance_limit).copied().collect(),
        ),
    };
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let imp_refs: Vec<&str> = imp_texts.iter().map(String::as_str).collect();
    let encodings = model.tokenizer.encode(&text_refs, max_len)?;
    let imp_encodings = model.tokenizer.encode(&imp_refs, max_len)?;
    let mut bars = Bars::new();
    let scores = head_importance(
        &model,
        &imp_encodings,
        &imp_gold,
        args.batch_size,
        &mut bars,
    )?;
    let curve = pruning_curve(
        &model,
        &encodings,
        &gold,
        &scores,
        &FRACTIONS,
        args.batch_size.max(32),
        args.seed,
        &mut bars,
    )?;
    bars.finish();
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}", args.out.display()))?;

    let cfg = model.model.config().clone();
    let total_heads = cfg.num_hidden_layers * cfg.num_attention_heads;
    let order = prune_order(&scores, &model.model.heads());
    let count = ((args.fraction * total_heads as f64).round() as usize).min(order.len());
    let mut remove: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(layer, head) in &order[..count] {
        remove.entry(layer).or_default().push(head);
    }
    remove.values_mut().for_each(|heads| heads.sort_unstable());
    eprintln!("measuring speed before and after pruning {count} heads");
    // Real traffic (length-sorted batches of 32), median of 5 after a warm-up, as `bench` does.
    let before = traffic(&model, &texts, 32, max_len, 5)?.sentences_per_s;
    model.prune_heads(&remove)?;
    let after = traffic(&model, &texts, 32, max_len, 5)?.sentences_per_s;
    // Head masks are in original indices, so an all-ones mask fits the pruned model.
    let keep_all = mask_without(
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        &[],
        model.model.device(),
    )?;
    let accuracy = masked_accuracy(
        &model,
        &encodings,
        &gold,
        &keep_all,
        args.batch_size.max(32),
    )?;
    model.save(&args.out)?;
    let run_config = args.model.join("train_config.json");
    if run_config.is_file() {
        std::fs::copy(&run_config, args.out.join("train_config.json"))
            .with_context(|| format!("copying {}", run_config.display()))?;
    }

    let percent = |points: &dyn Fn(&attune_train::prune::CurvePoint) -> f64| -> Vec<(f64, f64)> {
        curve
            .iter()
            .map(|p| (100.0 * p.fraction, 100.0 * points(p)))
            .collect()
    };
    attune_plot::line_panels(
        &args.out.join("prune_curve.png"),
        &[Panel {
            title: format!("{}: accuracy as heads are removed", data_name(&args.data)),
            x_label: "heads pruned (%)".into(),
            y_label: "accuracy (%)".into(),
            series: vec![
                Series {
                    name: "least important first".into(),
                    points: percent(&|p| p.accuracy),
                },
                Series {
                    name: "random order".into(),
                    points: percent(&|p| p.random_accuracy),
                },
            ],
        }],
    )?;
    let report = serde_json::json!({
        "model": args.model,
        "data": args.data,
        "importance_texts": imp_texts.len(),
        "importance": scores,
        "curve": curve,
        "pruned_heads": remove,
        "fraction": count as f64 / total_heads as f64,
        "accuracy_before": curve.first().map(|p| p.accuracy),
        "accuracy_after": accuracy,
        "sentences_per_s_before": before,
        "sentences_per_s_after": after,
    });
    let json_path = args.out.join("prune.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("{}", json_path.display()))?;

    println!(
        "{:>8} {:>8} {:>10} {:>10}",
        "pruned", "heads", "accuracy", "random"
    );
    for p in &curve {
        println!(
            "{:>7.0}% {:>8} {:>9.2}% {:>9.2}%",
            100.0 * p.fraction,
            p.removed,
            100.0 * p.accuracy,
            100.0 * p.random_accuracy
        );
    }
    println!(
        "\nwrote a model without {count} of {total_heads} heads to {}: accuracy {:.2}%, {:.1} -> {:.1} sentences/s ({:+.0}%)",
        args.out.display(),
        100.0 * accuracy,
        before,
        after,
        100.0 * (after / before - 1.0)
    );
    println!("curve: {}", args.out.join("prune_curve.png").display());
    Ok(())
}

fn data_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into())
}
