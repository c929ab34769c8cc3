//! Human attention: eye-tracking relative fixation and rationales, read from JSONL, and the
//! alignment of the people's words with the words the model saw.
//!
//! Human word lists rarely match a model tokenizer's words: gaze corpora lower-case and strip
//! punctuation ("dont"), BERT's pre-tokenizer splits "don't" into three words, rationale corpora
//! keep placeholders like `<user>`. Alignment therefore works on characters: both sides are
//! reduced to lower-case letters and digits, matched (exactly when the streams agree, by longest
//! common subsequence when they do not), and each model word goes to the human word that shares
//! most of its characters. Model words made only of punctuation carry no letters and are left
//! out; human words that receive no model word are reported as unaligned, never guessed.
use std::io::BufRead;
use std::path::Path;

use crate::ExplainError;

/// What people gave for one text.
#[derive(Debug, Clone, PartialEq)]
pub enum HumanSignal {
    /// Relative fixation per word (Hollenstein & Beinborn 2021: a word's total reading time over
    /// the sentence's, averaged over readers).
    Fixation(Vec<f64>),
    /// 0/1 per word: the words marked as justifying the label.
    Rationale(Vec<bool>),
}

/// One text with its human attention.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanRecord {
    /// `id` field, else `line N`.
    pub id: String,
    /// The people's words.
    pub tokens: Vec<String>,
    /// The text shown to the model: `text` when given, else the tokens joined by spaces.
    pub text: String,
    /// Gold label when the file has one.
    pub label: Option<String>,
    /// `split` field when present (HateXplain has `val` and `test`).
    pub split: Option<String>,
    /// Fixation or rationale, one value per token.
    pub signal: HumanSignal,
}

impl HumanRecord {
    /// Whether people marked at least one word (only then is plausibility defined).
    pub fn has_rationale(&self) -> bool {
        matches!(&self.signal, HumanSignal::Rationale(r) if r.iter().any(|&x| x))
    }
}

/// Reads a JSONL file of human attention. Each line is an object with `tokens` (or `words`),
/// and either `relfix` (gaze: `../shared/data/gaze/**/…_relfix.jsonl`) or `rationale` (0/1 per
/// token: `../shared/data/rationales/**`); optional `id`, `text`, `label`, `split`. Blank lines
/// are skipped. Every problem is reported with the file and line.
pub fn read_human(path: &Path) -> Result<Vec<HumanRecord>, ExplainError> {
    let where_ = |line: usize| format!("{}:{line}", path.display());
    let file = std::fs::File::open(path).map_err(|e| ExplainError::Input {
        location: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut records = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|e| ExplainError::Input {
            location: where_(number),
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            parse_record(&line, number).map_err(|message| ExplainError::Input {
                location: where_(number),
                message,
            })?,
        );
    }
    if records.is_empty() {
        return Err(ExplainError::Input {
            location: path.display().to_string(),
            message: "no records".into(),
        });
    }
    Ok(records)
}

fn parse_record(line: &str, number: usize) -> Result<HumanRecord, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let object = value.as_object().ok_or("expected a JSON object")?;
    let tokens_field = ["tokens", "words"]
        .into_iter()
        .find(|k| object.contains_key(*k))
        .ok_or("missing field `tokens` (the people's words)")?;
    let tokens: Vec<String> = object[tokens_field]
        .as_array()
        .ok_or(format!("field `{tokens_field}` must be a list of strings"))?
        .iter()
        .map(|t| t.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or(format!("field `{tokens_field}` must be a list of strings"))?;
    if tokens.is_empty() {
        return Err(format!("field `{tokens_field}` is empty"));
    }
    let numbers = |field: &str| -> Result<Vec<f64>, String> {
        let list = object[field]
            .as_array()
            .ok_or(format!("field `{field}` must be a list of numbers"))?;
        let values: Vec<f64> = list
            .iter()
            .map(serde_json::Value::as_f64)
            .collect::<Option<_>>()
            .ok_or(format!("field `{field}` must be a list of numbers"))?;
        if values.len() != tokens.len() {
            return Err(format!(
                "field `{field}` has {} values but `{tokens_field}` has {} words",
                values.len(),
                tokens.len()
            ));
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(format!(
                "field `{field}` value {} (word {}) must be a finite number ≥ 0",
                values[bad],
                bad + 1
            ));
        }
        Ok(values)
    };
    let signal = if let Some(field) = ["relfix", "relFix"]
        .into_iter()
        .find(|k| object.contains_key(*k))
    {
        HumanSignal::Fixation(numbers(field)?)
    } else if object.contains_key("rationale") {
        let values = numbers("rationale")?;
        if let Some(bad) = values.iter().position(|&v| v != 0.0 && v != 1.0) {
            return Err(format!(
                "field `rationale` value {} (word {}) must be 0 or 1",
                values[bad],
                bad + 1
            ));
        }
        HumanSignal::Rationale(values.iter().map(|&v| v == 1.0).collect())
    } else {
        return Err("missing human attention: expected field `relfix` or `rationale`".into());
    };
    let string = |field: &str| {
        object
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(HumanRecord {
        id: string("id").unwrap_or_else(|| format!("line {number}")),
        text: string("text").unwrap_or_else(|| tokens.join(" ")),
        tokens,
        label: string("label"),
        split: string("split"),
        signal,
    })
}

/// Where each model word went.
#[derive(Debug, Clone, PartialEq)]
pub struct WordAlignment {
    /// For each model word, the human word it belongs to (`None`: punctuation or no match).
    pub human_of_model: Vec<Option<usize>>,
    /// Human words that no model word maps to (e.g. cut off by truncation).
    pub unaligned_human: Vec<usize>,
}

fn normalised(words: &[&str]) -> (Vec<char>, Vec<usize>) {
    let mut chars = Vec::new();
    let mut owner = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for c in word.chars().filter(|c| c.is_alphanumeric()) {
            for lower in c.to_lowercase() {
                chars.push(lower);
                owner.push(w);
            }
        }
    }
    (chars, owner)
}

/// Pairs of matched positions of a longest common subsequence of `a` and `b`.
fn lcs_pairs(a: &[char], b: &[char]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    let mut table = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            table[at(i, j)] = if a[i] == b[j] {
                table[at(i + 1, j + 1)] + 1
            } else {
                table[at(i + 1, j)].max(table[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut pairs) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if table[at(i + 1, j)] >= table[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Aligns the model's words with the people's (see the module documentation for the rule).
pub fn align_words(model_words: &[&str], human_words: &[&str]) -> WordAlignment {
    let (model_chars, model_owner) = normalised(model_words);
    let (human_chars, human_owner) = normalised(human_words);
    let pairs: Vec<(usize, usize)> = if model_chars == human_chars {
        (0..model_chars.len()).map(|i| (i, i)).collect()
    } else {
        lcs_pairs(&model_chars, &human_chars)
    };
    let mut shared = vec![std::collections::BTreeMap::<usize, usize>::new(); model_words.len()];
    for (i, j) in pairs {
        *shared[model_owner[i]].entry(human_owner[j]).or_default() += 1;
    }
    let human_of_model: Vec<Option<usize>> = shared
        .iter()
        .map(|counts| {
            counts
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(&h, _)| h)
        })
        .collect();
    let mut covered = vec![false; human_words.len()];
    for h in human_of_model.iter().flatten() {
        covered[*h] = true;
    }
    WordAlignment {
        human_of_model,
        unaligned_human: (0..human_words.len()).filter(|&h| !covered[h]).collect(),
    }
}

/// Model word scores carried over to the human words: the sum over the model words aligned to
/// each (the same sum rule as subword → word aggregation); `None` for unaligned human words.
pub fn scores_for_human_words(
    model_scores: &[f64],
    alignment: &WordAlignment,
    human_words: usize,
) -> Result<Vec<Option<f64>>, ExplainError> {
    if model_scores.len() != alignment.human_of_model.len() {
        return Err(ExplainError::LengthMismatch {
            what: "model word scores",
            got: model_scores.len(),
            expected: alignment.human_of_model.len(),
        });
    }
    let mut out: Vec<Option<f64>> = vec![None; human_words];
    for (score, human) in model_scores.iter().zip(&alignment.human_of_model) {
        if let Some(h) = human {
            *out.get_mut(*h).ok_or(ExplainError::OutOfRange {
                what: "human word",
                index: *h,
                count: human_words,
            })? = Some(out[*h].unwrap_or(0.0) + score);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_words_align_one_to_one() {
        let a = align_words(&["the", "cat"], &["the", "cat"]);
        assert_eq!(a.human_of_model, vec![Some(0), Some(1)]);
        assert!(a.unaligned_human.is_empty());
    }

    #[test]
    fn case_punctuation_and_split_words() {
        // BERT splits "Don't" into three words; the gaze corpus wrote "dont".
        let model = ["Don", "'", "t", "stop", ",", "ok", "?"];
        let human = ["dont", "stop", "ok"];
        let a = align_words(&model, &human);
        assert_eq!(
            a.human_of_model,
            vec![Some(0), None, Some(0), Some(1), None, Some(2), None]
        );
        let scores = scores_for_human_words(&[0.2, 0.1, 0.3, 0.4, 0.0, 0.5, 0.0], &a, 3).unwrap();
        assert_eq!(scores.len(), 3);
        assert!((scores[0].unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_human_word_split_differently_and_a_missing_tail() {
        // The human side joins "New York"; the model text was truncated before "city".
        let model = ["new", "york", "is", "big"];
        let human = ["newyork", "is", "big", "city"];
        let a = align_words(&model, &human);
        assert_eq!(a.human_of_model, vec![Some(0), Some(0), Some(1), Some(2)]);
        assert_eq!(a.unaligned_human, vec![3]);
        let scores = scores_for_human_words(&[1.0, 2.0, 3.0, 4.0], &a, 4).unwrap();
        assert_eq!(scores[3], None);
        assert!((scores[0].unwrap() - 3.0).abs() < 1e-12);
    }

    #[test]
    fn placeholders_and_accents_fall_back_to_subsequence_matching() {
        let model = ["<", "user", ">", "café", "crème"];
        let human = ["<user>", "cafe", "crème"];
        let a = align_words(&model, &human);
        // "café" shares "caf" with "cafe": aligned despite the accent.
        assert_eq!(
            a.human_of_model,
            vec![None, Some(0), None, Some(1), Some(2)]
        );
        assert!(a.unaligned_human.is_empty());
    }

    fn parse(line: &str) -> Result<HumanRecord, String> {
        parse_record(line, 7)
    }

    #[test]
    fn records_of_both_kinds() {
        let g = parse(r#"{"id":"z1","tokens":["a","b"],"relfix":[0.25,0.75]}"#).unwrap();
        assert_eq!(g.signal, HumanSignal::Fixation(vec![0.25, 0.75]));
        assert_eq!(g.text, "a b");
        let r =
            parse(r#"{"tokens":["a","b"],"rationale":[0,1],"label":"x","split":"test"}"#).unwrap();
        assert!(r.has_rationale());
        assert_eq!(r.id, "line 7");
        assert_eq!(r.split.as_deref(), Some("test"));
    }

    #[test]
    fn bad_records_say_which_field() {
        for (line, message) in [
            (
                r#"{"tokens":["a","b"],"relfix":[0.5]}"#,
                "field `relfix` has 1 values but `tokens` has 2 words",
            ),
            (
                r#"{"tokens":["a"],"rationale":[2]}"#,
                "field `rationale` value 2 (word 1) must be 0 or 1",
            ),
            (
                r#"{"tokens":["a"]}"#,
                "missing human attention: expected field `relfix` or `rationale`",
            ),
            (
                r#"{"relfix":[1]}"#,
                "missing field `tokens` (the people's words)",
            ),
            (r#"{"tokens":[],"relfix":[]}"#, "field `tokens` is empty"),
            (
                r#"{"tokens":["a"],"relfix":[-1]}"#,
                "field `relfix` value -1 (word 1) must be a finite number ≥ 0",
            ),
            ("[1]", "expected a JSON object"),
        ] {
            assert_eq!(parse(line).unwrap_err(), message);
        }
        assert!(parse("{").unwrap_err().starts_with("invalid JSON"));
    }

    #[test]
    fn file_errors_carry_path_and_line() {
        let dir = std::env::temp_dir().join(format!("attune-human-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        std::fs::write(
            &path,
            "{\"tokens\":[\"a\"],\"relfix\":[1]}\n\n{\"tokens\":[\"a\"],\"relfix\":[1,2]}\n",
        )
        .unwrap();
        let e = read_human(&path).unwrap_err().to_string();
        assert!(e.contains("h.jsonl:3: field `relfix` has 2 values"), "{e}");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_human(&path)
            .unwrap_err()
            .to_string()
            .ends_with("no records"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
