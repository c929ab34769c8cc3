//! `attune align`: model importance against human attention — a method × metric table on the
//! terminal, `align.json`, per-text scores and a chart.
use std::path::Path;

use anyhow::Context;
use attune_explain::alignment::{align_dataset, read_frequencies, AlignOptions, AlignReport};
use attune_explain::explainer::Explainer;
use attune_explain::human::read_human;

use crate::cli::AlignArgs;

fn print_table(report: &AlignReport) {
    let metrics: Vec<&str> = report
        .results
        .iter()
        .flat_map(|(_, m)| m.iter().map(|(name, _)| *name))
        .fold(Vec::new(), |mut acc, m| {
            if !acc.contains(&m) {
                acc.push(m);
            }
            acc
        });
    print!("{:<16}", "method");
    for m in &metrics {
        print!(" {:>26}", m);
    }
    println!();
    for (method, values) in &report.results {
        print!("{method:<16}");
        for m in &metrics {
            match values.iter().find(|(name, _)| name == m) {
                Some((_, s)) => print!(
                    " {:>26}",
                    format!("{:.3} [{:.3}, {:.3}]", s.mean, s.ci_low, s.ci_high)
                ),
                None => print!(" {:>26}", "–"),
            }
        }
        println!();
    }
    println!(
        "{} records, {} used; human words not aligned: {} of {} ({:.2} %)",
        report.records,
        report.used,
        report.unaligned_words.0,
        report.unaligned_words.1,
        100.0 * report.unaligned_words.0 as f64 / report.unaligned_words.1.max(1) as f64
    );
    for (reason, n) in &report.skipped {
        println!("skipped {n}: {reason}");
    }
}

fn write_outputs(report: &AlignReport, out: &Path, args: &AlignArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = serde_json::json!({
        "model": args.model,
        "human": args.human,
        "kind": report.kind,
        "records": report.records,
        "used": report.used,
        "skipped": report.skipped.iter().map(|(r, n)| serde_json::json!({"reason": r, "count": n})).collect::<Vec<_>>(),
        "unaligned_words": report.unaligned_words.0,
        "human_words": report.unaligned_words.1,
    });
    let path = out.join("align.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&report.results_json())? + "\n",
    )
    .with_context(|| format!("writing {}", path.display()))?;
    let path = out.join("align_meta.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let path = out.join("texts.jsonl");
    let lines: Vec<String> = report.per_text.iter().map(ToString::to_string).collect();
    std::fs::write(&path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    let mut panels: Vec<(String, Vec<attune_plot::IntervalBar>)> = Vec::new();
    for (method, metrics) in &report.results {
        for (metric, s) in metrics {
            let bar = attune_plot::IntervalBar {
                name: method.clone(),
                mean: s.mean,
                low: s.ci_low,
                high: s.ci_high,
            };
            match panels.iter_mut().find(|(m, _)| m == metric) {
                Some((_, bars)) => bars.push(bar),
                None => panels.push(((*metric).to_owned(), vec![bar])),
            }
        }
    }
    attune_plot::interval_bars(&out.join("align.png"), &panels)?;
    if report.kind == "gaze" {
        spearman_distribution(report, &out.join("spearman_distribution.png"))?;
    }
    Ok(())
}

/// Per-sentence ρ spreads widely (sd 0.2–0.45 in Hollenstein & Beinborn 2021), so the mean alone
/// hides whether a method is uniformly mediocre or good on most sentences and bad on a few: one
/// histogram curve per method, as the share of sentences per ρ bin of width 0.1.
fn spearman_distribution(report: &AlignReport, path: &Path) -> anyhow::Result<()> {
    const BINS: usize = 20;
    let mut series = Vec::new();
    for (method, _) in &report.results {
        let values: Vec<f64> = report
            .per_text
            .iter()
            .filter_map(|t| t["metrics"][method.as_str()]["spearman"].as_f64())
            .collect();
        if values.is_empty() {
            continue;
        }
        let mut counts = [0usize; BINS];
        for v in &values {
            let bin = (((v + 1.0) / 2.0 * BINS as f64) as usize).min(BINS - 1);
            counts[bin] += 1;
        }
        series.push(attune_plot::Series {
            name: method.clone(),
            points: counts
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    (
                        -1.0 + (i as f64 + 0.5) * 2.0 / BINS as f64,
                        c as f64 / values.len() as f64,
                    )
                })
                .collect(),
        });
    }
    attune_plot::line_panels(
        path,
        &[attune_plot::Panel {
            title: "Spearman ρ per sentence".into(),
            x_label: "ρ (model vs relative fixation)".into(),
            y_label: "share of sentences".into(),
            series,
        }],
    )?;
    Ok(())
}

pub fn run(args: AlignArgs) -> anyhow::Result<()> {
    let config = super::explain_config(&args.methods, &args.model)?;
    let (model, base_model) = super::load_for_explain(&args.model, &config.methods)?;
    let explainer = Explainer::new(&model, config)?;
    let mut records = read_human(&args.human)?;
    if let Some(split) = &args.split {
        records.retain(|r| r.split.as_deref() == Some(split.as_str()));
        if records.is_empty() {
            anyhow::bail!("{}: no record has split `{split}`", args.human.display());
        }
    }
    if let Some(limit) = args.limit {
        records.truncate(limit);
    }
    let default_frequencies = Path::new("models/wordfreq_en.tsv");
    let frequencies = match &args.word_frequencies {
        Some(path) => Some(read_frequencies(path)?),
        None if default_frequencies.is_file() => Some(read_frequencies(default_frequencies)?),
        None => {
            eprintln!(
                "note: no word frequencies (models/wordfreq_en.tsv or --word-frequencies): the \
                 word-frequency baseline is left out; ./scripts/setup-model writes the file"
            );
            None
        }
    };
    let options = AlignOptions {
        min_words: args.min_words,
        // Faithfulness measures changes of the prediction; a base model has none.
        faithfulness: !args.no_faithfulness && !base_model,
        seed: args.seed,
        frequencies,
    };
    let bar = crate::progress::bar("aligning", records.len());
    let report = align_dataset(&explainer, &records, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    print_table(&report);
    write_outputs(&report, &args.out, &args)?;
    eprintln!(
        "wrote {0}/align.json, {0}/texts.jsonl, {0}/align.png{1}",
        args.out.display(),
        if report.kind == "gaze" {
            format!(", {}/spearman_distribution.png", args.out.display())
        } else {
            String::new()
        }
    );
    Ok(())
}
