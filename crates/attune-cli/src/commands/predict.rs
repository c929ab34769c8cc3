//! `attune predict`: one JSON line per text, in input order, streaming stdin in bounded chunks
//! so memory does not grow with the input.
use std::io::{BufRead, Write};

use anyhow::Context;
use attune_core::checkpoint::LoadedModel;
use attune_core::config::ProblemType;
use attune_core::infer::argmax;

use crate::cli::PredictArgs;

fn write_predictions(
    model: &LoadedModel,
    texts: &[String],
    max_len: usize,
    batch_size: usize,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let probs = model.classify(&refs, max_len, batch_size)?;
    let multi_label = model.config.problem_type == Some(ProblemType::MultiLabelClassification);
    for (text, p) in texts.iter().zip(probs) {
        let best = argmax(&p);
        let probs: serde_json::Map<String, serde_json::Value> = model
            .labels
            .iter()
            .zip(&p)
            .map(|(l, &v)| (l.clone(), serde_json::json!(v)))
            .collect();
        let mut line = serde_json::json!({
            "text": text,
            "label": model.labels[best],
            "score": p[best],
            "probs": probs,
        });
        if multi_label {
            // Every label the sigmoid head puts at 0.5 or above (possibly none).
            line["labels"] = serde_json::json!(model
                .labels
                .iter()
                .zip(&p)
                .filter(|(_, &v)| v >= 0.5)
                .map(|(l, _)| l)
                .collect::<Vec<_>>());
        }
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    Ok(())
}

pub fn run(args: PredictArgs) -> anyhow::Result<()> {
    let model = super::load_trained(&args.model)?;
    let max_len = match args.max_len {
        Some(m) => m,
        None => super::trained_max_len(&args.model)?,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !args.texts.is_empty() {
        return write_predictions(&model, &args.texts, max_len, args.batch_size, &mut out);
    }
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    let mut chunk = Vec::with_capacity(args.chunk);
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .context("reading stdin")?;
        if n > 0 {
            line_no += 1;
            let text = std::str::from_utf8(&buf).map_err(|e| {
                anyhow::anyhow!("stdin:{line_no}: invalid UTF-8 at byte {}", e.valid_up_to())
            })?;
            chunk.push(text.trim_end_matches(['\n', '\r']).to_string());
        }
        if chunk.len() >= args.chunk.max(1) || (n == 0 && !chunk.is_empty()) {
            write_predictions(&model, &chunk, max_len, args.batch_size, &mut out)?;
            chunk.clear();
        }
        if n == 0 {
            return Ok(());
        }
    }
}
