//! `attune eval`.
use anyhow::Context;
use attune_core::checkpoint::LoadedModel;
use attune_core::config::ProblemType;
use attune_explain::explainer::{ExplainConfig, Explainer, Method};
use attune_explain::parity::{explanation_parity, MethodParity};

use attune_train::metrics::Evaluation;
use attune_train::trainer::{score_encoded, write_evaluation, Gold};

use crate::cli::{DataArgs, EvalArgs};
use crate::progress::Bars;

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let model = super::load_trained(&args.model)?;
    let max_len = match args.max_len {
        Some(m) => m,
        None => super::trained_max_len(&args.model)?,
    };
    // A multi-label model scores multi-label data, whatever the flags say.
    let multi = model.config.problem_type == Some(ProblemType::MultiLabelClassification);
    let data_args = DataArgs {
        multi_label: multi,
        ..args.data_args.clone()
    };
    let ds = super::read_dataset(&args.data, &data_args)?;
    let gold = super::gold_of(&ds, &model.labels, &data_args)?;
    let texts: Vec<&str> = ds.examples.iter().map(|e| e.text.as_str()).collect();
    let encodings = model.tokenizer.encode(&texts, max_len)?;
    let mut bars = Bars::new();
    let (eval, decisions) = score_encoded(&model, &encodings, &gold, args.batch_size, &mut bars)?;
    bars.finish();
    let stem = args
        .data
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let out = args
        .out
        .unwrap_or_else(|| args.model.join(format!("eval-{stem}")));
    write_evaluation(&out, &eval, &stem)?;
    println!("{}", eval.table());
    let baseline = args.baseline.clone().or_else(|| {
        model
            .config
            .extra
            .get(super::quantize::SOURCE_KEY)
            .and_then(serde_json::Value::as_str)
            .map(std::path::PathBuf::from)
    });
    if let Some(dir) = baseline {
        let texts_for_parity = &texts[..texts.len().min(args.parity_texts)];
        let comparison = compare(
            &model,
            (&eval, &decisions),
            &dir,
            Inputs {
                texts: &texts,
                parity_texts: texts_for_parity,
                gold: &gold,
                max_len,
                batch_size: args.batch_size,
            },
        )?;
        comparison.print();
        let path = out.join("comparison.json");
        std::fs::write(&path, serde_json::to_string_pretty(&comparison)?)
            .with_context(|| format!("{}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!("\nwrote {}", out.join("eval.json").display());
    Ok(())
}

struct Inputs<'a> {
    texts: &'a [&'a str],
    parity_texts: &'a [&'a str],
    gold: &'a Gold,
    max_len: usize,
    batch_size: usize,
}

/// How a model (quantised, pruned) differs from the one it was made from.
#[derive(Debug, serde::Serialize)]
struct Comparison {
    baseline: std::path::PathBuf,
    baseline_format: String,
    format: String,
    accuracy: f64,
    baseline_accuracy: f64,
    macro_f1: f64,
    baseline_macro_f1: f64,
    /// Fraction of texts whose predicted label (label set, multi-label) is the same.
    agreement: f64,
    texts: usize,
    /// Spearman ρ of word scores per explanation method, over `parity_texts`.
    explanation_parity: std::collections::BTreeMap<String, serde_json::Value>,
    parity_texts: usize,
}

impl Comparison {
    fn print(&self) {
        println!(
            "\ncompared with {} ({}):",
            self.baseline.display(),
            self.baseline_format
        );
        println!(
            "  accuracy {:.4} -> {:.4} ({:+.2} pt), macro-F1 {:.4} -> {:.4} ({:+.2} pt)",
            self.baseline_accuracy,
            self.accuracy,
            100.0 * (self.accuracy - self.baseline_accuracy),
            self.baseline_macro_f1,
            self.macro_f1,
            100.0 * (self.macro_f1 - self.baseline_macro_f1)
        );
        println!(
            "  predictions agree on {:.2} % of {} texts",
            100.0 * self.agreement,
            self.texts
        );
        println!(
            "  explanation parity over {} texts (Spearman ρ of word scores; 1 = same ranking):",
            self.parity_texts
        );
        for (method, p) in &self.explanation_parity {
            println!(
                "    {method:<10} mean {:.3}  median {:.3}  min {:.3}",
                p["mean"].as_f64().unwrap_or(f64::NAN),
                p["median"].as_f64().unwrap_or(f64::NAN),
                p["min"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
}

/// The model against its baseline on the same texts, given the model's evaluation and
/// decisions, already computed.
fn compare(
    model: &LoadedModel,
    (eval, ours): (&Evaluation, &[Vec<u32>]),
    baseline_dir: &std::path::Path,
    inputs: Inputs<'_>,
) -> anyhow::Result<Comparison> {
    let baseline = super::load_trained(baseline_dir)
        .with_context(|| format!("loading the baseline model {}", baseline_dir.display()))?;
    if baseline.labels != model.labels {
        anyhow::bail!(
            "{}: the baseline's labels differ from the model's; compare models of one task",
            baseline_dir.display()
        );
    }
    let encodings = baseline.tokenizer.encode(inputs.texts, inputs.max_len)?;
    let mut bars = Bars::new();
    let (base_eval, theirs) = score_encoded(
        &baseline,
        &encodings,
        inputs.gold,
        inputs.batch_size,
        &mut bars,
    )?;
    bars.finish();
    let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    let config = ExplainConfig {
        methods: vec![Method::Raw, Method::Rollout, Method::Saliency],
        max_len: inputs.max_len,
        batch_size: inputs.batch_size,
        ..ExplainConfig::default()
    };
    eprintln!(
        "explaining {} texts with both models for the parity check",
        inputs.parity_texts.len()
    );
    let original = Explainer::new(&baseline, config.clone())?.explain(inputs.parity_texts)?;
    let changed = Explainer::new(model, config)?.explain(inputs.parity_texts)?;
    Ok(Comparison {
        baseline: baseline_dir.to_path_buf(),
        baseline_format: baseline.model.weight_format().to_string(),
        format: model.model.weight_format().to_string(),
        accuracy: eval.accuracy,
        baseline_accuracy: base_eval.accuracy,
        macro_f1: eval.macro_f1,
        baseline_macro_f1: base_eval.macro_f1,
        agreement: agree as f64 / ours.len().max(1) as f64,
        texts: ours.len(),
        explanation_parity: explanation_parity(&original, &changed)?
            .into_iter()
            .map(|(method, p)| (method.to_string(), parity_json(&p)))
            .collect(),
        parity_texts: inputs.parity_texts.len(),
    })
}

fn parity_json(p: &MethodParity) -> serde_json::Value {
    serde_json::json!({
        "mean": p.mean,
        "median": p.median,
        "min": p.min,
        "texts": p.texts,
        "undefined": p.undefined,
    })
}
