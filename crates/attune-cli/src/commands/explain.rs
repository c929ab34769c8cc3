//! `attune explain`: per-word importance for each text, as a terminal heatmap, JSON lines or a
//! self-contained HTML page.
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use attune_explain::explainer::Explainer;
use attune_explain::render;

use crate::cli::ExplainArgs;

/// Texts per explainer call: bounds memory and lets results appear while later texts run.
const CHUNK: usize = 64;

fn read_stdin_lines() -> anyhow::Result<Vec<String>> {
    let mut texts = Vec::new();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.with_context(|| format!("stdin:{}", i + 1))?;
        if !line.trim().is_empty() {
            texts.push(line);
        }
    }
    Ok(texts)
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let mut config = super::explain_config(&args.methods, &args.model)?;
    let (model, _) = super::load_for_explain(&args.model, &config.methods)?;
    if let Some(target) = &args.target {
        config.target = Some(
            model
                .labels
                .iter()
                .position(|l| l == target)
                .with_context(|| {
                    format!(
                        "--target: unknown label `{target}` (labels: {})",
                        model.labels.join(", ")
                    )
                })?,
        );
    }
    let methods = config.methods.clone();
    let explainer = Explainer::new(&model, config)?;
    let texts = if args.texts.is_empty() {
        read_stdin_lines()?
    } else {
        args.texts.clone()
    };
    if texts.is_empty() {
        anyhow::bail!("no texts: pass them as arguments or one per line on stdin");
    }
    let colour =
        !args.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    let bar = (texts.len() > CHUNK).then(|| crate::progress::bar("explaining", texts.len()));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut kept = Vec::new();
    for chunk in texts.chunks(CHUNK) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for e in explainer.explain(&refs)? {
            if args.json {
                writeln!(out, "{}", render::to_json(&e, &model.labels))?;
            } else {
                writeln!(out, "{}", render::to_terminal(&e, &model.labels, colour))?;
            }
            if args.html.is_some() {
                kept.push(e);
            }
        }
        out.flush()?;
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if let Some(path) = &args.html {
        std::fs::write(path, render::to_html(&kept, &model.labels, &methods))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
