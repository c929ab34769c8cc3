//! Labelled text datasets from CSV, TSV (incl. GLUE `sentence\tlabel`) and JSONL files.
//!
//! Every malformed input is an error naming the file, the line and the field — a missing or
//! empty file, a missing column, a ragged row, invalid UTF-8, an empty text or label — unless the
//! caller opts into skipping bad rows, in which case each one is counted and reported, never
//! dropped silently.
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Problems with a dataset file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A specific row or field is wrong.
    #[error("{path}:{line}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A problem with the file as a whole (format, header, emptiness).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The text as found (after optional preprocessing).
    pub text: String,
    /// The label as a string (integers are kept as their decimal form).
    pub label: String,
    /// 1-based line of the file it came from.
    pub line: u64,
    /// Human word importance (e.g. HateXplain's `rationale_mean`) when read with
    /// [`ReadOptions::rationale_field`]; `None` when the text has none or nobody marked a word.
    pub rationale: Option<Rationale>,
}

/// Importance people gave the words of a text: one value per word, with each word's byte span
/// in [`Example::text`] so it can be mapped onto any tokenizer's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Rationale {
    /// `[start, end)` byte offsets of the words.
    pub spans: Vec<(usize, usize)>,
    /// One value ≥ 0 per word (0/1 masks or fractions of annotators).
    pub values: Vec<f32>,
}

/// How to read a dataset.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Column (CSV/TSV header name or JSONL key) holding the text; guessed when `None`.
    pub text_column: Option<String>,
    /// Column holding the label; guessed when `None`.
    pub label_column: Option<String>,
    /// Keep only the first N rows.
    pub limit: Option<usize>,
    /// Skip (and count) malformed rows instead of failing.
    pub skip_bad_rows: bool,
    /// Optional text preprocessing.
    pub preprocess: Preprocess,
    /// Multi-label data: labels are joined by this separator (`"a|b"`); in JSONL a label may
    /// also be an array. `None` for single-label data.
    pub label_separator: Option<String>,
    /// JSONL only: keep rows whose `field` equals `value` (e.g. `split` = `val`).
    pub filter: Option<(String, String)>,
    /// JSONL only: field with one number per word of the text (per item when the text field is
    /// a token list, else per whitespace-separated word), read into [`Example::rationale`].
    pub rationale_field: Option<String>,
}

/// Text preprocessing from the original seed project. Off by default: subword models were
/// trained on raw text and lose information when it is lower-cased or stripped of stop words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preprocess {
    /// Lower-case the text.
    pub lowercase: bool,
    /// Remove common English stop words.
    pub remove_stop_words: bool,
}

/// A small English stop-word list (NLTK's most frequent function words, without negations,
/// which carry sentiment).
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as",
    "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these",
    "those", "i", "me", "my", "we", "our", "you", "your", "he", "him", "his", "she", "her", "they",
    "them", "their", "what", "which", "who", "whom", "am", "do", "does", "did", "have", "has",
    "had", "there", "then", "than", "so", "such", "into", "about", "over", "under",
];

impl Preprocess {
    /// Applies the enabled steps.
    pub fn apply(&self, text: &str) -> String {
        let text = if self.lowercase {
            text.to_lowercase()
        } else {
            text.to_string()
        };
        if !self.remove_stop_words {
            return text;
        }
        text.split_whitespace()
            .filter(|w| !STOP_WORDS.contains(&w.to_lowercase().as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A dataset read from one file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The rows, in file order.
    pub examples: Vec<Example>,
    /// Rows skipped under `skip_bad_rows`, with their error messages.
    pub skipped: Vec<String>,
    /// The file.
    pub path: PathBuf,
}

const TEXT_GUESSES: &[&str] = &[
    "text",
    "tokens",
    "post_tokens",
    "sentence",
    "content",
    "review",
    "tweet",
    "utterance",
];
const LABEL_GUESSES: &[&str] = &[
    "label",
    "category",
    "class",
    "intent",
    "sentiment",
    "target",
];

enum Format {
    Delimited(u8),
    Jsonl,
}

fn format_of(path: &Path) -> Result<Format, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" => Ok(Format::Delimited(b',')),
        "tsv" | "tab" => Ok(Format::Delimited(b'\t')),
        "jsonl" | "ndjson" | "json" => Ok(Format::Jsonl),
        other => Err(DataError::File {
            path: path.to_path_buf(),
            message: format!("unknown file type {other:?}: use .csv, .tsv or .jsonl"),
        }),
    }
}

fn pick_column(
    path: &Path,
    available: &[String],
    wanted: Option<&str>,
    guesses: &[&str],
    flag: &str,
) -> Result<String, DataError> {
    if let Some(w) = wanted {
        if available.iter().any(|a| a == w) {
            return Ok(w.to_string());
        }
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: format!("no column {w:?} (columns: {})", available.join(", ")),
        });
    }
    guesses
        .iter()
        .find_map(|g| {
            available
                .iter()
                .find(|a| a.eq_ignore_ascii_case(g))
                .cloned()
        })
        .ok_or_else(|| DataError::File {
            path: path.to_path_buf(),
            message: format!(
                "cannot tell which column to use; pass {flag} (columns: {})",
                available.join(", ")
            ),
        })
}

/// Reads a labelled dataset; see the module docs for the checks made.
pub fn read_dataset(path: &Path, opts: &ReadOptions) -> Result<Dataset, DataError> {
    let meta = std::fs::metadata(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() == 0 {
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: "file is empty".into(),
        });
    }
    let format = format_of(path)?;
    if !matches!(format, Format::Jsonl) {
        for (set, flag) in [
            (opts.filter.is_some(), "--where"),
            (opts.rationale_field.is_some(), "--rationales"),
        ] {
            if set {
                return Err(DataError::File {
                    path: path.to_path_buf(),
                    message: format!("{flag} applies to JSONL files only"),
                });
            }
        }
    }
    if opts.rationale_field.is_some()
        && (opts.preprocess.lowercase || opts.preprocess.remove_stop_words)
    {
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: "--rationales cannot be combined with --lowercase or \
                      --remove-stop-words (they would move the words the rationale refers to)"
                .into(),
        });
    }
    let mut rows = Rows::default();
    match format {
        Format::Delimited(delim) => read_delimited(path, delim, opts, &mut rows)?,
        Format::Jsonl => read_jsonl(path, opts, &mut rows)?,
    }
    if rows.examples.is_empty() {
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: if rows.skipped.is_empty() {
                "no data rows".into()
            } else {
                format!(
                    "all {} rows were bad; first: {}",
                    rows.skipped.len(),
                    rows.skipped[0]
                )
            },
        });
    }
    Ok(Dataset {
        examples: rows.examples,
        skipped: rows.skipped,
        path: path.to_path_buf(),
    })
}

#[derive(Default)]
struct Rows {
    examples: Vec<Example>,
    skipped: Vec<String>,
}

impl Rows {
    /// Records a row's outcome; returns `Err` only when bad rows are fatal.
    fn push(
        &mut self,
        result: Result<Example, DataError>,
        opts: &ReadOptions,
    ) -> Result<(), DataError> {
        match result {
            Ok(mut ex) => {
                ex.text = opts.preprocess.apply(&ex.text);
                self.examples.push(ex);
                Ok(())
            }
            Err(e) if opts.skip_bad_rows => {
                self.skipped.push(e.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn full(&self, opts: &ReadOptions) -> bool {
        opts.limit.is_some_and(|l| self.examples.len() >= l)
    }
}

fn check_fields(
    path: &Path,
    line: u64,
    text: &str,
    label: &str,
    cols: (&str, &str),
) -> Result<(), DataError> {
    let row_err = |message: String| DataError::Row {
        path: path.to_path_buf(),
        line,
        message,
    };
    if text.trim().is_empty() {
        return Err(row_err(format!("field {:?} is empty", cols.0)));
    }
    if label.trim().is_empty() {
        return Err(row_err(format!("field {:?} is empty", cols.1)));
    }
    Ok(())
}

fn read_delimited(
    path: &Path,
    delim: u8,
    opts: &ReadOptions,
    rows: &mut Rows,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // GLUE TSVs contain bare quotes inside sentences, so quoting is a CSV-only feature here.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delim)
        .quoting(delim == b',')
        .has_headers(true)
        .from_reader(file);
    let map_csv = |e: csv::Error| -> DataError {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { err, .. } => {
                format!("invalid UTF-8 in field {}", err.field() + 1)
            }
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("row has {len} fields, the header has {expected_len}")
            }
            _ => e.to_string(),
        };
        DataError::Row {
            path: path.to_path_buf(),
            line,
            message,
        }
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(map_csv)?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let text_col = pick_column(
        path,
        &header,
        opts.text_column.as_deref(),
        TEXT_GUESSES,
        "--text-column",
    )?;
    let label_col = pick_column(
        path,
        &header,
        opts.label_column.as_deref(),
        LABEL_GUESSES,
        "--label-column",
    )?;
    let ti = header
        .iter()
        .position(|h| *h == text_col)
        .expect("picked from header");
    let li = header
        .iter()
        .position(|h| *h == label_col)
        .expect("picked from header");
    let mut record = csv::StringRecord::new();
    loop {
        if rows.full(opts) {
            break;
        }
        let result = match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                let text = record.get(ti).unwrap_or("");
                let label = record.get(li).unwrap_or("").trim();
                check_fields(path, line, text, label, (&text_col, &label_col)).map(|()| Example {
                    rationale: None,
                    text: text.trim_end().to_string(),
                    label: label.to_string(),
                    line,
                })
            }
            Err(e) => {
                if !e.is_io_error() && opts.skip_bad_rows {
                    Err(map_csv(e))
                } else {
                    return Err(map_csv(e));
                }
            }
        };
        rows.push(result, opts)?;
    }
    Ok(())
}

fn read_jsonl(path: &Path, opts: &ReadOptions, rows: &mut Rows) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut columns: Option<(String, String)> = None;
    loop {
        if rows.full(opts) {
            break;
        }
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let row_err = |message: String| DataError::Row {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let line = match std::str::from_utf8(&buf) {
            Ok(s) => s.trim(),
            Err(e) => {
                rows.push(
                    Err(row_err(format!(
                        "invalid UTF-8 at byte {}",
                        e.valid_up_to()
                    ))),
                    opts,
                )?;
                continue;
            }
        };
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                rows.push(Err(row_err(format!("invalid JSON: {e}"))), opts)?;
                continue;
            }
        };
        let Some(object) = value.as_object() else {
            rows.push(Err(row_err("expected a JSON object".into())), opts)?;
            continue;
        };
        let (text_col, label_col) = match &columns {
            Some(c) => c.clone(),
            None => {
                let keys: Vec<String> = object.keys().cloned().collect();
                let t = pick_column(
                    path,
                    &keys,
                    opts.text_column.as_deref(),
                    TEXT_GUESSES,
                    "--text-column",
                )?;
                let l = pick_column(
                    path,
                    &keys,
                    opts.label_column.as_deref(),
                    LABEL_GUESSES,
                    "--label-column",
                )?;
                columns = Some((t.clone(), l.clone()));
                (t, l)
            }
        };
        let field = |name: &str| -> Result<String, DataError> {
            match object.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
                Some(serde_json::Value::Array(items)) if name == label_col => {
                    let Some(sep) = &opts.label_separator else {
                        return Err(row_err(format!(
                            "field {name:?} is a list: pass --multi-label"
                        )));
                    };
                    let parts = items
                        .iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => Ok(s.clone()),
                            serde_json::Value::Number(n) => Ok(n.to_string()),
                            other => Err(row_err(format!(
                                "field {name:?} has a non-label item {other}"
                            ))),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    // An empty list is a text with no labels; keep it distinguishable from a
                    // missing label by the separator alone.
                    Ok(if parts.is_empty() {
                        sep.clone()
                    } else {
                        parts.join(sep)
                    })
                }
                Some(other) => Err(row_err(format!(
                    "field {name:?} must be a string or number, got {other}"
                ))),
                None => Err(row_err(format!("missing field {name:?}"))),
            }
        };
        if let Some((key, wanted)) = &opts.filter {
            let value = match object.get(key) {
                Some(serde_json::Value::String(v)) => v.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            if &value != wanted {
                continue;
            }
        }
        // A pre-tokenised text (a list of words, as in HateXplain's `post_tokens`) is joined by
        // spaces, remembering where each word went.
        let text_and_spans = match object.get(&text_col) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .map(|words| join_words(&words))
                .ok_or_else(|| {
                    row_err(format!(
                        "field {text_col:?} must be a string or a list of strings"
                    ))
                }),
            _ => field(&text_col).map(|t: String| {
                let spans = whitespace_spans(&t);
                (t, spans)
            }),
        };
        let result = text_and_spans.and_then(|(text, spans)| {
            let label = field(&label_col)?;
            check_fields(path, line_no, &text, &label, (&text_col, &label_col))?;
            let rationale = match &opts.rationale_field {
                Some(name) => read_rationale(object.get(name), name, spans).map_err(row_err)?,
                None => None,
            };
            Ok(Example {
                text,
                label: label.trim().to_string(),
                line: line_no,
                rationale,
            })
        });
        rows.push(result, opts)?;
    }
    Ok(())
}

/// Joins words with single spaces; returns the text and each word's byte span in it.
fn join_words(words: &[String]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::new();
    let mut spans = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        spans.push((text.len(), text.len() + w.len()));
        text.push_str(w);
    }
    (text, spans)
}

/// Byte spans of the whitespace-separated words of `text`.
fn whitespace_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// One value per word from a JSON list; `None` when every value is 0 (nobody marked a word:
/// such texts train without attention supervision).
fn read_rationale(
    value: Option<&serde_json::Value>,
    name: &str,
    spans: Vec<(usize, usize)>,
) -> Result<Option<Rationale>, String> {
    let items = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "field {name:?} must be a list of numbers, got {other}"
            ))
        }
    };
    let values = items
        .iter()
        .map(|v| {
            v.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| x as f32)
        })
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| format!("field {name:?} must hold numbers ≥ 0"))?;
    if values.len() != spans.len() {
        return Err(format!(
            "field {name:?} has {} values but the text has {} words",
            values.len(),
            spans.len()
        ));
    }
    Ok(values
        .iter()
        .any(|&v| v > 0.0)
        .then_some(Rationale { spans, values }))
}

/// The labels of one example under multi-label `separator` (empty parts dropped).
pub fn split_labels<'a>(label: &'a str, separator: &str) -> Vec<&'a str> {
    label
        .split(separator)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The union of all labels of a multi-label training set, ordered as [`label_set`] orders.
pub fn multi_label_set(examples: &[Example], separator: &str) -> Vec<String> {
    sorted_labels(
        examples
            .iter()
            .flat_map(|e| split_labels(&e.label, separator)),
    )
}

/// Label-id sets of a multi-label dataset; an unknown label is an error naming file and line.
pub fn label_id_sets(
    dataset: &Dataset,
    labels: &[String],
    separator: &str,
) -> Result<Vec<Vec<u32>>, DataError> {
    dataset
        .examples
        .iter()
        .map(|e| {
            split_labels(&e.label, separator)
                .into_iter()
                .map(|l| {
                    labels
                        .iter()
                        .position(|k| k == l)
                        .map(|i| i as u32)
                        .ok_or_else(|| DataError::Row {
                            path: dataset.path.clone(),
                            line: e.line,
                            message: format!(
                                "unknown label {l:?} (the training labels are: {})",
                                labels.join(", ")
                            ),
                        })
                })
                .collect()
        })
        .collect()
}

/// The label set of a training set, in a stable order: numeric order when every label is an
/// integer (so GLUE's 0/1 map to ids 0/1), else alphabetical.
pub fn label_set(examples: &[Example]) -> Vec<String> {
    sorted_labels(examples.iter().map(|e| e.label.as_str()))
}

fn sorted_labels<'a>(all: impl Iterator<Item = &'a str>) -> Vec<String> {
    let unique: BTreeSet<&str> = all.collect();
    let mut labels: Vec<String> = unique.into_iter().map(str::to_string).collect();
    if labels.iter().all(|l| l.parse::<i64>().is_ok()) {
        labels.sort_by_key(|l| l.parse::<i64>().expect("checked"));
    }
    labels
}

/// Maps each example's label to its index in `labels`; an unknown label is an error naming the
/// file and line.
pub fn label_ids(dataset: &Dataset, labels: &[String]) -> Result<Vec<u32>, DataError> {
    let index: BTreeMap<&str, u32> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    dataset
        .examples
        .iter()
        .map(|e| {
            index
                .get(e.label.as_str())
                .copied()
                .ok_or_else(|| DataError::Row {
                    path: dataset.path.clone(),
                    line: e.line,
                    message: format!(
                        "unknown label {:?} (the training labels are: {})",
                        e.label,
                        labels.join(", ")
                    ),
                })
        })
        .collect()
}

/// Seeded stratified split: `dev_fraction` of each class goes to the second set (at least one
/// example per class with two or more examples).
pub fn stratified_split(
    examples: Vec<Example>,
    dev_fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let mut by_class: BTreeMap<String, Vec<Example>> = BTreeMap::new();
    for e in examples {
        by_class.entry(e.label.clone()).or_default().push(e);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut train, mut dev) = (Vec::new(), Vec::new());
    for (_, mut group) in by_class {
        group.shuffle(&mut rng);
        let n_dev = if group.len() >= 2 {
            ((group.len() as f64 * dev_fraction).round() as usize).clamp(1, group.len() - 1)
        } else {
            0
        };
        let rest = group.split_off(n_dev);
        dev.extend(group);
        train.extend(rest);
    }
    train.sort_by_key(|e| e.line);
    dev.sort_by_key(|e| e.line);
    (train, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn reads_glue_tsv_with_bare_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.tsv",
            b"sentence\tlabel\nit 's \" quoted \t1\nbad film \t0\n",
        );
        let ds = read_dataset(&p, &ReadOptions::default()).unwrap();
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.examples[0].text, "it 's \" quoted");
        assert_eq!(ds.examples[0].line, 2);
        assert_eq!(label_set(&ds.examples), vec!["0", "1"]);
    }

    #[test]
    fn numeric_labels_sort_numerically() {
        let ex = |l: &str| Example {
            rationale: None,
            text: "x".into(),
            label: l.into(),
            line: 1,
        };
        assert_eq!(
            label_set(&[ex("10"), ex("2"), ex("1")]),
            vec!["1", "2", "10"]
        );
        assert_eq!(label_set(&[ex("b"), ex("a")]), vec!["a", "b"]);
    }

    #[test]
    fn reads_csv_with_chosen_columns_and_jsonl_with_integer_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.csv",
            b"id,body,intent\n1,\"hello, world\",greet\n2,bye,leave\n",
        );
        let opts = ReadOptions {
            text_column: Some("body".into()),
            label_column: Some("intent".into()),
            ..Default::default()
        };
        let ds = read_dataset(&p, &opts).unwrap();
        assert_eq!(ds.examples[0].text, "hello, world");
        assert_eq!(ds.examples[1].label, "leave");
        let p = write(
            dir.path(),
            "d.jsonl",
            b"{\"text\": \"a\", \"label\": 1}\n\n{\"text\": \"b\", \"label\": 0}\n",
        );
        let ds = read_dataset(&p, &ReadOptions::default()).unwrap();
        assert_eq!(
            ds.examples
                .iter()
                .map(|e| e.label.as_str())
                .collect::<Vec<_>>(),
            vec!["1", "0"]
        );
        assert_eq!(ds.examples[1].line, 3);
    }

    #[test]
    fn limit_keeps_the_first_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "t.tsv", b"sentence\tlabel\na\t1\nb\t0\nc\t1\n");
        let ds = read_dataset(
            &p,
            &ReadOptions {
                limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            ds.examples
                .iter()
                .map(|e| e.text.as_str())
                .collect::<Vec<_>>(),
            vec!["a", "b"]
        );
    }

    fn error_of(name: &str, content: &[u8], opts: &ReadOptions) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), name, content);
        read_dataset(&p, opts).unwrap_err().to_string()
    }

    #[test]
    fn bad_inputs_name_file_line_and_field() {
        let d = ReadOptions::default();
        let e = error_of("e.tsv", b"", &d);
        assert!(e.ends_with("e.tsv: file is empty"), "{e}");
        let e = error_of("h.tsv", b"sentence\tlabel\n", &d);
        assert!(e.ends_with("h.tsv: no data rows"), "{e}");
        let e = error_of(
            "c.csv",
            b"text,label\na,1\n",
            &ReadOptions {
                text_column: Some("body".into()),
                ..Default::default()
            },
        );
        assert!(
            e.contains("no column \"body\" (columns: text, label)"),
            "{e}"
        );
        let e = error_of("g.csv", b"foo,bar\na,1\n", &d);
        assert!(e.contains("pass --text-column"), "{e}");
        let e = error_of("r.csv", b"text,label\na,1\nb,0,extra\n", &d);
        assert!(
            e.contains("r.csv:3: row has 3 fields, the header has 2"),
            "{e}"
        );
        let e = error_of("u.tsv", b"sentence\tlabel\nok\t1\nbad \xff\xfe\t0\n", &d);
        assert!(e.contains("u.tsv:3: invalid UTF-8"), "{e}");
        let e = error_of(
            "u.jsonl",
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"\xff\", \"label\": 1}\n",
            &d,
        );
        assert!(e.contains("u.jsonl:2: invalid UTF-8"), "{e}");
        let e = error_of(
            "m.jsonl",
            b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n",
            &d,
        );
        assert!(e.contains("m.jsonl:2: missing field \"label\""), "{e}");
        let e = error_of("j.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{oops\n", &d);
        assert!(e.contains("j.jsonl:2: invalid JSON"), "{e}");
        let e = error_of("t.tsv", b"sentence\tlabel\n  \t1\n", &d);
        assert!(e.contains("t.tsv:2: field \"sentence\" is empty"), "{e}");
        let e = error_of("l.tsv", b"sentence\tlabel\nfine\t\n", &d);
        assert!(e.contains("l.tsv:2: field \"label\" is empty"), "{e}");
        let e = error_of("x.txt", b"a\n", &d);
        assert!(e.contains("unknown file type"), "{e}");
        let missing = read_dataset(Path::new("/no/such/file.tsv"), &d)
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("/no/such/file.tsv:"), "{missing}");
    }

    #[test]
    fn skip_bad_rows_counts_and_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "s.csv",
            b"text,label\na,1\nb,0,extra\n,1\nc,0\n",
        );
        let ds = read_dataset(
            &p,
            &ReadOptions {
                skip_bad_rows: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.skipped.len(), 2);
        assert!(ds.skipped[0].contains("s.csv:3"), "{:?}", ds.skipped);
    }

    #[test]
    fn unknown_dev_label_is_an_error_with_its_line() {
        let ds = Dataset {
            examples: vec![
                Example {
                    rationale: None,
                    text: "a".into(),
                    label: "pos".into(),
                    line: 2,
                },
                Example {
                    rationale: None,
                    text: "b".into(),
                    label: "meh".into(),
                    line: 3,
                },
            ],
            skipped: vec![],
            path: PathBuf::from("dev.csv"),
        };
        let e = label_ids(&ds, &["neg".into(), "pos".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "dev.csv:3: unknown label \"meh\" (the training labels are: neg, pos)"
        );
    }

    #[test]
    fn stratified_split_is_seeded_and_keeps_class_ratios() {
        let examples: Vec<Example> = (0..100)
            .map(|i| Example {
                rationale: None,
                text: format!("t{i}"),
                label: if i % 4 == 0 { "a" } else { "b" }.into(),
                line: i + 2,
            })
            .collect();
        let (train, dev) = stratified_split(examples.clone(), 0.2, 7);
        assert_eq!(dev.len(), 20);
        assert_eq!(dev.iter().filter(|e| e.label == "a").count(), 5);
        assert_eq!(train.len(), 80);
        let (_, dev2) = stratified_split(examples.clone(), 0.2, 7);
        assert_eq!(dev, dev2);
        let (_, dev3) = stratified_split(examples, 0.2, 8);
        assert_ne!(dev, dev3);
    }

    #[test]
    fn token_lists_filters_and_rationales_from_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "h.jsonl",
            "{\"tokens\": [\"you\", \"are\", \"vile\"], \"label\": \"hate\", \"split\": \"val\", \"r\": [0, 0.5, 1]}\n\
             {\"tokens\": [\"hello\"], \"label\": \"normal\", \"split\": \"test\", \"r\": [0]}\n\
             {\"tokens\": [\"hi\", \"all\"], \"label\": \"normal\", \"split\": \"val\", \"r\": [0, 0]}\n"
                .as_bytes(),
        );
        let opts = ReadOptions {
            filter: Some(("split".into(), "val".into())),
            rationale_field: Some("r".into()),
            ..ReadOptions::default()
        };
        let ds = read_dataset(&p, &opts).unwrap();
        assert_eq!(ds.examples.len(), 2);
        assert_eq!(ds.examples[0].text, "you are vile");
        let r = ds.examples[0].rationale.as_ref().unwrap();
        assert_eq!(r.spans, vec![(0, 3), (4, 7), (8, 12)]);
        assert_eq!(r.values, vec![0.0, 0.5, 1.0]);
        assert_eq!(
            ds.examples[1].rationale, None,
            "all-zero rationale: unsupervised"
        );
        let bad =
            "{\"tokens\": [\"a\", \"b\"], \"label\": \"x\", \"split\": \"val\", \"r\": [1]}\n";
        let e = error_of("b.jsonl", bad.as_bytes(), &opts);
        assert!(
            e.contains("b.jsonl:1: field \"r\" has 1 values but the text has 2 words"),
            "{e}"
        );
        let e = error_of("c.tsv", b"text\tlabel\na\tb\n", &opts);
        assert!(e.contains("--where applies to JSONL files only"), "{e}");
    }

    #[test]
    fn multi_label_files_split_labels_and_accept_json_lists() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ReadOptions {
            label_separator: Some("|".into()),
            ..Default::default()
        };
        let p = write(dir.path(), "m.jsonl", b"{\"text\": \"a\", \"label\": [\"x\", \"y\"]}\n{\"text\": \"b\", \"label\": []}\n{\"text\": \"c\", \"label\": \"z|x\"}\n");
        let ds = read_dataset(&p, &opts).unwrap();
        let labels = multi_label_set(&ds.examples, "|");
        assert_eq!(labels, vec!["x", "y", "z"]);
        assert_eq!(
            label_id_sets(&ds, &labels, "|").unwrap(),
            vec![vec![0, 1], vec![], vec![2, 0]]
        );
        let e = read_dataset(&p, &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.jsonl:1: field \"label\" is a list: pass --multi-label"),
            "{e}"
        );
        let bad = Dataset {
            examples: vec![Example {
                rationale: None,
                text: "t".into(),
                label: "x|w".into(),
                line: 4,
            }],
            skipped: vec![],
            path: "d.tsv".into(),
        };
        let e = label_id_sets(&bad, &labels, "|").unwrap_err().to_string();
        assert!(e.starts_with("d.tsv:4: unknown label \"w\""), "{e}");
    }

    #[test]
    fn preprocessing_is_opt_in() {
        let p = Preprocess::default();
        assert_eq!(p.apply("The Movie"), "The Movie");
        let p = Preprocess {
            lowercase: true,
            remove_stop_words: true,
        };
        assert_eq!(p.apply("The movie is NOT good"), "movie not good");
    }
}
