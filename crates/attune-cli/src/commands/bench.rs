//! `attune bench`: our throughput, and PyTorch's on the same inputs in the same run when
//! `--reference` is given (`tools/bench_reference.py`, same thread count).
use std::process::Command;

use anyhow::Context;
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_train::bench::{inference, training, Measurement};

use crate::cli::BenchArgs;

fn parse_shape(s: &str) -> anyhow::Result<(usize, usize)> {
    let (b, q) = s
        .split_once('x')
        .with_context(|| format!("shape {s:?} must look like BATCHxSEQ, e.g. 32x128"))?;
    Ok((
        b.trim()
            .parse()
            .with_context(|| format!("batch in {s:?}"))?,
        q.trim().parse().with_context(|| format!("seq in {s:?}"))?,
    ))
}

fn sentences(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let texts: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string)
        .collect();
    if texts.is_empty() {
        anyhow::bail!("{}: no sentences", path.display());
    }
    Ok(texts)
}

fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
        })
}

/// Explanations per second for each method alone, and plain classification of the same texts
/// (`classify`) as the yardstick for the attention methods' overhead. Texts keep their real
/// lengths (dynamic padding), as `attune explain` runs them.
fn explanation_rates(
    model: &checkpoint::LoadedModel,
    texts: &[&str],
    repeats: usize,
) -> anyhow::Result<Vec<Measurement>> {
    use attune_explain::explainer::{ExplainConfig, Explainer, Method};
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<Vec<f64>> {
        f()?; // warm-up
        (0..repeats.max(1))
            .map(|_| {
                let start = std::time::Instant::now();
                f()?;
                Ok(texts.len() as f64 / start.elapsed().as_secs_f64())
            })
            .collect()
    };
    let measurement = |task: String, mut rates: Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        Measurement {
            task,
            batch: 32,
            seq: 0,
            sentences_per_s: rates[rates.len() / 2],
            repeats: rates,
        }
    };
    let mut out = Vec::new();
    eprintln!("attune: classify {} texts", texts.len());
    let rates = time(&mut || {
        model.classify(texts, 128, 32)?;
        Ok(())
    })?;
    out.push(measurement("classify".into(), rates));
    for method in Method::ALL {
        eprintln!("attune: explain {method}");
        let explainer = Explainer::new(
            model,
            ExplainConfig {
                methods: vec![method],
                ..ExplainConfig::default()
            },
        )?;
        let rates = time(&mut || {
            explainer.explain(texts)?;
            Ok(())
        })?;
        out.push(measurement(format!("explain:{method}"), rates));
    }
    Ok(out)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let texts = sentences(&args.data)?;
    let labels = Some(vec!["0".to_string(), "1".to_string()]);
    let frozen = checkpoint::load(
        &args.model,
        &LoadOptions {
            labels: labels.clone(),
            ..Default::default()
        },
    )?;
    let mut ours: Vec<Measurement> = Vec::new();
    for shape in &args.infer {
        let (b, s) = parse_shape(shape)?;
        eprintln!("attune: inference {b}x{s}");
        ours.push(inference(&frozen, &texts, b, s, args.repeats, false)?);
        ours.push(inference(&frozen, &texts, b, s, args.repeats, true)?);
    }
    if args.explain_texts > 0 {
        let chosen: Vec<&str> = texts
            .iter()
            .take(args.explain_texts)
            .map(String::as_str)
            .collect();
        ours.extend(explanation_rates(&frozen, &chosen, args.repeats)?);
    }
    drop(frozen);
    let (tb, ts) = parse_shape(&args.train)?;
    for (task, mode) in [
        ("train", TrainMode::Full),
        (
            "train-lora",
            TrainMode::Lora(attune_core::lora::LoraConfig::new(
                8,
                16.0,
                0.1,
                vec!["query".into(), "value".into()],
            )),
        ),
    ] {
        eprintln!("attune: {task} {tb}x{ts}");
        let model = checkpoint::load(
            &args.model,
            &LoadOptions {
                labels: labels.clone(),
                mode,
                ..Default::default()
            },
        )?;
        let mut m = training(&model, &texts, tb, ts, args.repeats)?;
        m.task = task.into();
        ours.push(m);
    }
    let reference: Vec<serde_json::Value> = if args.reference {
        eprintln!("pytorch: running tools/bench_reference.py");
        let output = Command::new(&args.python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tools/bench_reference.py"
            ))
            .args([
                "--model",
                &args.model.display().to_string(),
                "--data",
                &args.data.display().to_string(),
            ])
            .args([
                "--repeats",
                &args.repeats.to_string(),
                "--threads",
                &threads().to_string(),
            ])
            .args(["--infer", &args.infer.join(","), "--train", &args.train])
            .output()
            .with_context(|| format!("running {}", args.python))?;
        if !output.status.success() {
            anyhow::bail!(
                "tools/bench_reference.py failed: {}",
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
        }
        serde_json::from_slice(&output.stdout)
            .context("tools/bench_reference.py printed invalid JSON")?
    } else {
        Vec::new()
    };
    println!(
        "{:<18} {:>6} {:>5} {:>12} {:>12} {:>7}",
        "task", "batch", "seq", "attune s/s", "pytorch s/s", "ratio"
    );
    let mut rows = Vec::new();
    for m in &ours {
        let torch = reference
            .iter()
            .find(|r| r["task"] == m.task.as_str() && r["batch"] == m.batch && r["seq"] == m.seq);
        let torch_sps = torch.and_then(|r| r["sentences_per_s"].as_f64());
        let ratio = torch_sps.map(|t| m.sentences_per_s / t);
        println!(
            "{:<18} {:>6} {:>5} {:>12.1} {:>12} {:>7}",
            m.task,
            m.batch,
            m.seq,
            m.sentences_per_s,
            torch_sps
                .map(|t| format!("{t:.1}"))
                .unwrap_or_else(|| "-".into()),
            ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into())
        );
        rows.push(
            serde_json::json!({"attune": m, "pytorch_sentences_per_s": torch_sps, "ratio": ratio}),
        );
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({"threads": threads(), "model": args.model, "results": rows});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}
