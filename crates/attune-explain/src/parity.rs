//! Explanation parity: does a changed model (quantised, pruned) still look where the original
//! looked? Accuracy alone cannot tell — two models can agree on every label while attending to
//! different words, and then every explanation shown to a user would silently change.
//!
//! For each text and method, the Spearman correlation between the two models' word scores;
//! summarised per method as mean, median and minimum over texts (texts with fewer than two words
//! or constant scores have no correlation and are counted apart).
use std::collections::BTreeMap;

use crate::explainer::{Explanation, Method};
use crate::metrics::spearman;
use crate::ExplainError;

/// Agreement of one method's word scores between two models.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodParity {
    /// Mean Spearman ρ over texts.
    pub mean: f64,
    /// Median ρ.
    pub median: f64,
    /// Lowest ρ: the text whose explanation changed most.
    pub min: f64,
    /// Texts with a defined ρ.
    pub texts: usize,
    /// Texts without one (under two words, or constant scores).
    pub undefined: usize,
}

/// Per-method parity of `changed` against `original` (the same texts, in the same order).
pub fn explanation_parity(
    original: &[Explanation],
    changed: &[Explanation],
) -> Result<BTreeMap<Method, MethodParity>, ExplainError> {
    if original.len() != changed.len() {
        return Err(ExplainError::LengthMismatch {
            what: "changed model's explanations",
            got: changed.len(),
            expected: original.len(),
        });
    }
    let mut rhos: BTreeMap<Method, (Vec<f64>, usize)> = BTreeMap::new();
    for (index, (a, b)) in original.iter().zip(changed).enumerate() {
        if a.text != b.text {
            return Err(ExplainError::Input {
                location: format!("text {index}"),
                message: "the two explanation lists are not of the same texts".into(),
            });
        }
        for (method, scores) in &a.scores {
            let Some(other) = b.scores.get(method) else {
                continue;
            };
            let entry = rhos.entry(*method).or_default();
            match spearman(scores, other)? {
                Some(rho) => entry.0.push(rho),
                None => entry.1 += 1,
            }
        }
    }
    Ok(rhos
        .into_iter()
        .filter(|(_, (values, _))| !values.is_empty())
        .map(|(method, (mut values, undefined))| {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let median = if n % 2 == 1 {
                values[n / 2]
            } else {
                (values[n / 2 - 1] + values[n / 2]) / 2.0
            };
            let parity = MethodParity {
                mean: values.iter().sum::<f64>() / n as f64,
                median,
                min: values[0],
                texts: n,
                undefined,
            };
            (method, parity)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explanation(text: &str, method: Method, scores: Vec<f64>) -> Explanation {
        Explanation {
            text: text.into(),
            predicted: 0,
            target: 0,
            probs: vec![1.0],
            words: scores.iter().map(|_| "w".to_string()).collect(),
            word_spans: Vec::new(),
            scores: BTreeMap::from([(method, scores)]),
            completeness: None,
            truncated: false,
            token_ids: Vec::new(),
            token_words: Vec::new(),
        }
    }

    #[test]
    fn identical_scores_have_parity_one_and_reversed_minus_one() {
        let a = vec![
            explanation("x", Method::Raw, vec![0.1, 0.5, 0.2]),
            explanation("y", Method::Raw, vec![0.3, 0.1, 0.9, 0.4]),
            explanation("z", Method::Raw, vec![0.7]),
        ];
        let mut b = a.clone();
        let parity = explanation_parity(&a, &b).unwrap();
        let raw = &parity[&Method::Raw];
        assert!((raw.mean - 1.0).abs() < 1e-12 && (raw.min - 1.0).abs() < 1e-12);
        assert_eq!((raw.texts, raw.undefined), (2, 1));
        // Reverse the second text's ranking: ρ = −1 there, mean 0, median 0.
        b[1].scores.insert(Method::Raw, vec![0.4, 0.9, 0.1, 0.3]);
        let raw = explanation_parity(&a, &b).unwrap()[&Method::Raw].clone();
        assert!((raw.min + 1.0).abs() < 1e-12, "{raw:?}");
        assert!(
            raw.mean.abs() < 1e-12 && raw.median.abs() < 1e-12,
            "{raw:?}"
        );
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let a = vec![explanation("x", Method::Raw, vec![0.1, 0.5])];
        let b = vec![explanation("other", Method::Raw, vec![0.1, 0.5])];
        assert!(matches!(
            explanation_parity(&a, &b),
            Err(ExplainError::Input { .. })
        ));
        assert!(matches!(
            explanation_parity(&a, &[]),
            Err(ExplainError::LengthMismatch { .. })
        ));
    }
}
