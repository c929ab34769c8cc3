//! `attune eval`.
use attune_core::config::ProblemType;
use attune_train::trainer::{evaluate_encoded, write_evaluation};

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
    let eval = evaluate_encoded(&model, &encodings, &gold, args.batch_size, &mut bars)?;
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
    println!("\nwrote {}", out.join("eval.json").display());
    Ok(())
}
