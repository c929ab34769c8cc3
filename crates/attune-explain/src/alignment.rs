//! Model importance against human importance over a whole file: explains every text, carries
//! the scores over to the people's words, and summarises each metric per method with bootstrap
//! intervals, next to the word-length and word-frequency baselines that any method must beat to
//! be interesting (Hollenstein & Beinborn 2021: on ZuCo, word length alone reaches ρ ≈ 0.75).
use std::collections::HashMap;

use crate::explainer::{Explainer, Explanation, RunError};
use crate::human::{align_words, scores_for_human_words, HumanRecord, HumanSignal};
use crate::metrics::{
    auprc, bin_size, comprehensiveness, iou_f1, spearman, sufficiency, summarize, token_f1, top_k,
    Summary, AOPC_FRACTIONS,
};
use crate::ExplainError;

/// Settings of an alignment run.
#[derive(Debug, Clone)]
pub struct AlignOptions {
    /// Gaze sentences with fewer aligned words are skipped.
    pub min_words: usize,
    /// Compute comprehensiveness and sufficiency (ten extra forward passes per text and method).
    pub faithfulness: bool,
    /// Bootstrap seed.
    pub seed: u64,
    /// Zipf word frequencies (lower-cased words) for the frequency baseline.
    pub frequencies: Option<HashMap<String, f64>>,
}

impl Default for AlignOptions {
    fn default() -> Self {
        Self {
            min_words: 3,
            faithfulness: true,
            seed: 42,
            frequencies: None,
        }
    }
}

/// What was measured, per method (model methods first, then baselines) and metric.
#[derive(Debug, Clone)]
pub struct AlignReport {
    /// `gaze` or `rationale`.
    pub kind: &'static str,
    /// Records read.
    pub records: usize,
    /// Records that entered the metrics.
    pub used: usize,
    /// Records left out, with the reason.
    pub skipped: Vec<(String, usize)>,
    /// Human words no model word mapped to, and all human words of the used records.
    pub unaligned_words: (usize, usize),
    /// `(method, [(metric, summary)])` in report order.
    pub results: Vec<(String, Vec<(&'static str, Summary)>)>,
    /// One JSON object per used record: words, human values, aligned scores, per-text metrics.
    pub per_text: Vec<serde_json::Value>,
}

impl AlignReport {
    /// `{"<method>": {"<metric>": {"mean", "ci_low", "ci_high", "n", "sd"}}}`.
    pub fn results_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (method, metrics) in &self.results {
            let mut m = serde_json::Map::new();
            for (metric, s) in metrics {
                m.insert(
                    (*metric).to_owned(),
                    serde_json::json!({
                        "mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high,
                        "n": s.n, "sd": s.sd,
                    }),
                );
            }
            out.insert(method.clone(), serde_json::Value::Object(m));
        }
        serde_json::Value::Object(out)
    }
}

/// Baseline names as they appear in reports.
pub const WORD_LENGTH: &str = "word_length";
/// See [`WORD_LENGTH`].
pub const WORD_FREQUENCY: &str = "word_frequency";

/// Per-method lists of per-text values, keyed by metric.
#[derive(Default)]
struct Collected {
    order: Vec<String>,
    values: HashMap<String, Vec<(&'static str, f64)>>,
}

impl Collected {
    fn push(&mut self, method: &str, metric: &'static str, value: f64) {
        if !self.values.contains_key(method) {
            self.order.push(method.to_owned());
        }
        self.values
            .entry(method.to_owned())
            .or_default()
            .push((metric, value));
    }
}

const METRIC_ORDER: [&str; 6] = [
    "spearman",
    "token_f1",
    "iou_f1",
    "auprc",
    "comprehensiveness",
    "sufficiency",
];

/// Runs the explainer over `records` and measures the alignment. `progress` is called after each
/// batch with the records done and the records that enter the metrics (those with a rationale,
/// for rationale files), so a progress bar can reach its end.
pub fn align_dataset(
    explainer: &Explainer<'_>,
    records: &[HumanRecord],
    options: &AlignOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<AlignReport, RunError> {
    let kind = match records.first().map(|r| &r.signal) {
        None => return Err(ExplainError::Empty("no human records").into()),
        Some(HumanSignal::Fixation(_)) => "gaze",
        Some(HumanSignal::Rationale(_)) => "rationale",
    };
    if let Some(bad) = records
        .iter()
        .position(|r| matches!(r.signal, HumanSignal::Fixation(_)) != (kind == "gaze"))
    {
        return Err(ExplainError::Input {
            location: records[bad].id.clone(),
            message: "a file must hold either fixations or rationales, not both".into(),
        }
        .into());
    }
    let mut skipped: Vec<(String, usize)> = Vec::new();
    let mut skip = |reason: String| match skipped.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => skipped.push((reason, 1)),
    };
    let usable: Vec<&HumanRecord> = records
        .iter()
        .filter(|r| {
            let ok = kind == "gaze" || r.has_rationale();
            if !ok {
                skip("no word marked (e.g. HateXplain's normal posts)".into());
            }
            ok
        })
        .collect();
    let mut collected = Collected::default();
    let mut per_text = Vec::new();
    let (mut unaligned, mut total_words) = (0, 0);
    let mut done = 0;
    for chunk in usable.chunks(explainer.config().batch_size.max(8)) {
        let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
        let explanations = explainer.explain(&texts)?;
        for (record, e) in chunk.iter().zip(&explanations) {
            let model_words: Vec<&str> = e.words.iter().map(String::as_str).collect();
            let human_words: Vec<&str> = record.tokens.iter().map(String::as_str).collect();
            let alignment = align_words(&model_words, &human_words);
            let aligned = human_words.len() - alignment.unaligned_human.len();
            if kind == "gaze" && aligned < options.min_words {
                skip(format!("fewer than {} aligned words", options.min_words));
                continue;
            }
            unaligned += alignment.unaligned_human.len();
            total_words += human_words.len();
            let mut scores = Vec::new();
            for (method, word_scores) in &e.scores {
                let human_scores =
                    scores_for_human_words(word_scores, &alignment, human_words.len())?;
                scores.push((method.name().to_owned(), human_scores));
            }
            let lengths: Vec<Option<f64>> = human_words
                .iter()
                .map(|w| Some(w.chars().count() as f64))
                .collect();
            scores.push((WORD_LENGTH.to_owned(), lengths));
            if let Some(freq) = &options.frequencies {
                let zipf = human_words
                    .iter()
                    .map(|w| Some(freq.get(&w.to_lowercase()).copied().unwrap_or(0.0)))
                    .collect();
                scores.push((WORD_FREQUENCY.to_owned(), zipf));
            }
            let mut text_metrics = serde_json::Map::new();
            for (method, human_scores) in &scores {
                let mut metrics = serde_json::Map::new();
                match &record.signal {
                    HumanSignal::Fixation(relfix) => {
                        let (s, h): (Vec<f64>, Vec<f64>) = human_scores
                            .iter()
                            .zip(relfix)
                            .filter_map(|(s, &h)| s.map(|s| (s, h)))
                            .unzip();
                        match spearman(&s, &h)? {
                            Some(rho) => {
                                collected.push(method, "spearman", rho);
                                metrics.insert("spearman".into(), rho.into());
                            }
                            None => skip(format!(
                                "{method}: constant scores or fixations (ρ undefined)"
                            )),
                        }
                    }
                    HumanSignal::Rationale(mask) => {
                        // Human words the model never saw (truncated) rank last.
                        let s: Vec<f64> = human_scores
                            .iter()
                            .map(|s| s.unwrap_or(f64::NEG_INFINITY))
                            .collect();
                        for (name, value) in [
                            ("token_f1", token_f1(&s, mask)?),
                            ("iou_f1", iou_f1(&s, mask)?),
                            ("auprc", auprc(&s, mask)?),
                        ] {
                            collected.push(method, name, value);
                            metrics.insert(name.into(), value.into());
                        }
                    }
                }
                text_metrics.insert(method.clone(), serde_json::Value::Object(metrics));
            }
            if options.faithfulness {
                for (method, comp, suff) in faithfulness(explainer, e)? {
                    collected.push(&method, "comprehensiveness", comp);
                    collected.push(&method, "sufficiency", suff);
                    if let Some(serde_json::Value::Object(m)) = text_metrics.get_mut(&method) {
                        m.insert("comprehensiveness".into(), comp.into());
                        m.insert("sufficiency".into(), suff.into());
                    }
                }
            }
            let human_values: serde_json::Value = match &record.signal {
                HumanSignal::Fixation(v) => serde_json::json!(v),
                HumanSignal::Rationale(v) => {
                    serde_json::json!(v.iter().map(|&b| u8::from(b)).collect::<Vec<_>>())
                }
            };
            per_text.push(serde_json::json!({
                "id": record.id,
                "words": record.tokens,
                "human": human_values,
                "prediction": explainer_label(explainer, e),
                "unaligned_words": alignment.unaligned_human,
                "scores": scores.iter().map(|(m, s)| (m.clone(), serde_json::json!(s))).collect::<serde_json::Map<_, _>>(),
                "metrics": text_metrics,
            }));
        }
        done += chunk.len();
        progress(done, usable.len());
    }
    let mut results = Vec::new();
    for method in &collected.order {
        let values = &collected.values[method];
        let mut metrics = Vec::new();
        for metric in METRIC_ORDER {
            let v: Vec<f64> = values
                .iter()
                .filter(|(m, _)| *m == metric)
                .map(|(_, v)| *v)
                .collect();
            if !v.is_empty() {
                metrics.push((metric, summarize(&v, options.seed)?));
            }
        }
        results.push((method.clone(), metrics));
    }
    Ok(AlignReport {
        kind,
        records: records.len(),
        used: per_text.len(),
        skipped,
        unaligned_words: (unaligned, total_words),
        results,
        per_text,
    })
}

fn explainer_label(explainer: &Explainer<'_>, e: &Explanation) -> serde_json::Value {
    serde_json::json!({
        "label": explainer.labels().get(e.predicted),
        "probability": e.probs.get(e.predicted),
    })
}

/// ERASER AOPC comprehensiveness and sufficiency of every method of one explanation, from the
/// model's own words (no human data needed): all word subsets of all methods run as batches.
fn faithfulness(
    explainer: &Explainer<'_>,
    e: &Explanation,
) -> Result<Vec<(String, f64, f64)>, RunError> {
    let n = e.words.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut keeps = Vec::new();
    for scores in e.scores.values() {
        for fraction in AOPC_FRACTIONS {
            let top = top_k(scores, bin_size(n, fraction));
            let mut only = vec![false; n];
            for i in top {
                only[i] = true;
            }
            keeps.push(only.iter().map(|&b| !b).collect::<Vec<_>>());
            keeps.push(only);
        }
    }
    let probs = explainer.subset_probabilities(e, &keeps)?;
    let full = f64::from(e.probs[e.target]);
    let bins = AOPC_FRACTIONS.len();
    e.scores
        .keys()
        .enumerate()
        .map(|(m, method)| {
            let block = &probs[m * 2 * bins..(m + 1) * 2 * bins];
            let without: Vec<f64> = block.iter().step_by(2).copied().collect();
            let only: Vec<f64> = block.iter().skip(1).step_by(2).copied().collect();
            Ok((
                method.name().to_owned(),
                comprehensiveness(full, &without)?,
                sufficiency(full, &only)?,
            ))
        })
        .collect()
}

/// Reads `word<TAB>zipf` lines (e.g. exported from the `wordfreq` package by
/// `tools/export_word_frequencies.py`).
pub fn read_frequencies(path: &std::path::Path) -> Result<HashMap<String, f64>, ExplainError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExplainError::Input {
        location: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: &str| ExplainError::Input {
            location: format!("{}:{}", path.display(), i + 1),
            message: message.to_owned(),
        };
        let (word, value) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected `word<TAB>frequency`"))?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| bad("frequency is not a number"))?;
        out.insert(word.to_lowercase(), value);
    }
    Ok(out)
}
