//! `attune bench`: our throughput, and PyTorch's on the same inputs in the same run when
//! `--reference` is given (`tools/bench_reference.py`, same thread count).
use std::process::Command;

use anyhow::Context;
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_core::quant::WeightFormat;
use attune_train::bench::{inference, traffic, training, Measurement};

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

/// One line of the results: an engine's throughput on one task and shape.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    engine: String,
    task: String,
    batch: usize,
    seq: usize,
    sentences_per_s: f64,
    #[serde(default)]
    repeats: Vec<f64>,
    /// Peak resident memory of the process that measured (inference rows only).
    #[serde(default)]
    peak_rss_mb: Option<f64>,
}

impl Row {
    fn ours(engine: &str, m: Measurement, peak_rss_mb: Option<f64>) -> Self {
        Self {
            engine: engine.into(),
            task: m.task,
            batch: m.batch,
            seq: m.seq,
            sentences_per_s: m.sentences_per_s,
            repeats: m.repeats,
            peak_rss_mb,
        }
    }
}

/// Peak resident set size of this process (`VmHWM`), in MB; `None` off Linux.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn labels() -> Option<Vec<String>> {
    Some(vec!["0".to_string(), "1".to_string()])
}

/// Inference in one weight format, in this process (a child of `run`): fixed shapes, with and
/// without attention capture, and real traffic. Prints JSON rows.
fn worker(args: &BenchArgs, format: &str) -> anyhow::Result<()> {
    let format: WeightFormat = format.parse().map_err(anyhow::Error::msg)?;
    let texts = sentences(&args.data)?;
    let mut model = checkpoint::load(
        &args.model,
        &LoadOptions {
            labels: labels(),
            ..Default::default()
        },
    )?;
    if format != WeightFormat::F32 {
        model.quantize(format)?;
    }
    let engine = format!("attune-{format}");
    // Real traffic first: the peak RSS after it is what a process serving this model needs. The
    // fixed 32 × 128 shapes (and all attention maps kept) then need more, reported on their rows.
    eprintln!(
        "{engine}: traffic ({} sentences at their lengths)",
        texts.len()
    );
    let serving = traffic(&model, &texts, 32, 128, (args.repeats / 2).max(1))?;
    let mut rows = vec![Row::ours(&engine, serving, peak_rss_mb())];
    for shape in &args.infer {
        let (b, s) = parse_shape(shape)?;
        eprintln!("{engine}: inference {b}x{s}");
        for capture in [false, true] {
            let m = inference(&model, &texts, b, s, args.repeats, capture)?;
            rows.push(Row::ours(&engine, m, peak_rss_mb()));
        }
    }
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}

/// Runs `attune bench --worker FORMAT` as a child process and reads its rows.
fn measure_format(args: &BenchArgs, format: &str) -> anyhow::Result<Vec<Row>> {
    let exe = std::env::current_exe().context("locating the attune binary")?;
    let output = Command::new(exe)
        .args(["bench", "--worker", format, "--model"])
        .arg(&args.model)
        .arg("--data")
        .arg(&args.data)
        .args(["--repeats", &args.repeats.to_string()])
        .args(["--infer", &args.infer.join(",")])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running the inference worker")?;
    if !output.status.success() {
        anyhow::bail!("inference in {format} failed (see above)");
    }
    serde_json::from_slice(&output.stdout).context("inference worker printed invalid JSON")
}

/// Fails before any measuring when the reference engines cannot run.
fn check_reference_env(args: &BenchArgs) -> anyhow::Result<()> {
    let modules = if args.engines.contains("ort") {
        "import torch, transformers, onnxruntime, onnx"
    } else {
        "import torch, transformers"
    };
    let ready = Command::new(&args.python)
        .args(["-c", modules])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ready {
        anyhow::bail!(
            "--reference needs {} with torch, transformers and onnxruntime: run tools/setup-reference.sh",
            args.python
        );
    }
    Ok(())
}

fn reference_rows(args: &BenchArgs) -> anyhow::Result<Vec<Row>> {
    eprintln!("reference: tools/bench_reference.py ({})", args.engines);
    let output = Command::new(&args.python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/bench_reference.py"
        ))
        .arg("--model")
        .arg(&args.model)
        .arg("--data")
        .arg(&args.data)
        .args(["--repeats", &args.repeats.to_string()])
        .args(["--threads", &threads().to_string()])
        .args(["--infer", &args.infer.join(",")])
        .args(["--train", if args.no_train { "" } else { &args.train }])
        .args(["--engines", &args.engines])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", args.python))?;
    if !output.status.success() {
        anyhow::bail!("tools/bench_reference.py failed (see above)");
    }
    serde_json::from_slice(&output.stdout).context("tools/bench_reference.py printed invalid JSON")
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(format) = &args.worker {
        return worker(&args, format);
    }
    if args.reference {
        check_reference_env(&args)?;
    }
    let texts = sentences(&args.data)?;
    let mut rows: Vec<Row> = Vec::new();
    // `--formats ""` measures no inference (training or the references only).
    for format in args.formats.iter().filter(|f| !f.is_empty()) {
        rows.extend(measure_format(&args, format)?);
    }
    if args.explain_texts > 0 {
        let frozen = checkpoint::load(
            &args.model,
            &LoadOptions {
                labels: labels(),
                ..Default::default()
            },
        )?;
        let chosen: Vec<&str> = texts
            .iter()
            .take(args.explain_texts)
            .map(String::as_str)
            .collect();
        for m in explanation_rates(&frozen, &chosen, args.repeats)? {
            rows.push(Row::ours("attune-f32", m, None));
        }
    }
    if !args.no_train {
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
                    labels: labels(),
                    mode,
                    ..Default::default()
                },
            )?;
            let mut m = training(&model, &texts, tb, ts, args.repeats)?;
            m.task = task.into();
            rows.push(Row::ours("attune-f32", m, None));
        }
    }
    if args.reference {
        rows.extend(reference_rows(&args)?);
    }
    print_table(&rows);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "threads": threads(),
            "model": args.model,
            "cpu": cpu_model(),
            "results": rows,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

/// One block per task and shape, one line per engine, with the ratio to PyTorch eager f32 in
/// the same run.
fn print_table(rows: &[Row]) {
    println!(
        "{:<18} {:>7} {:<16} {:>10} {:>10} {:>10}",
        "task", "shape", "engine", "s/s", "x torch", "peak MB"
    );
    let mut keys: Vec<(&str, usize, usize)> = Vec::new();
    for r in rows {
        let key = (r.task.as_str(), r.batch, r.seq);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (task, batch, seq) in keys {
        let same: Vec<&Row> = rows
            .iter()
            .filter(|r| r.task == task && r.batch == batch && r.seq == seq)
            .collect();
        let torch = rows
            .iter()
            .find(|r| r.engine == "torch" && r.task == task && r.batch == batch && r.seq == seq)
            .map(|r| r.sentences_per_s);
        let shape = if seq == 0 {
            format!("{batch}xreal")
        } else {
            format!("{batch}x{seq}")
        };
        for r in same {
            println!(
                "{:<18} {:>7} {:<16} {:>10.1} {:>10} {:>10}",
                task,
                shape,
                r.engine,
                r.sentences_per_s,
                torch.map_or("-".into(), |t| format!("{:.2}x", r.sentences_per_s / t)),
                r.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0}"))
            );
        }
    }
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}
