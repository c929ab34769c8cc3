//! Classification metrics: accuracy, per-class precision/recall/F1, macro-F1 and the confusion
//! matrix, with sklearn's conventions (a class with no predictions has precision 0; macro-F1 is
//! the unweighted mean over all classes).
use serde::{Deserialize, Serialize};

/// Scores of one class.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassScores {
    /// Class name.
    pub label: String,
    /// TP / (TP + FP), 0 when nothing was predicted as this class.
    pub precision: f64,
    /// TP / (TP + FN), 0 when the class does not occur.
    pub recall: f64,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f64,
    /// Number of true examples of the class.
    pub support: usize,
}

/// Everything `eval.json` reports.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evaluation {
    /// Number of examples.
    pub n: usize,
    /// Fraction predicted correctly (multi-label: exact match of the whole label set).
    pub accuracy: f64,
    /// Unweighted mean F1 over classes.
    pub macro_f1: f64,
    /// Mean loss of the true labels (cross-entropy, or binary cross-entropy for multi-label).
    pub loss: Option<f64>,
    /// Multi-label only: F1 over all (text, label) decisions pooled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_f1: Option<f64>,
    /// Per-class scores, in label order.
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]` counts (empty for multi-label, where it is undefined).
    pub confusion: Vec<Vec<usize>>,
    /// Class names in index order.
    pub labels: Vec<String>,
}

fn prf(tp: usize, fp: usize, fn_: usize) -> (f64, f64, f64) {
    let precision = if tp + fp == 0 {
        0.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let recall = if tp + fn_ == 0 {
        0.0
    } else {
        tp as f64 / (tp + fn_) as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    (precision, recall, f1)
}

/// Multi-label metrics from gold and predicted label-id sets (sklearn's conventions:
/// `accuracy_score` is subset accuracy, `f1_score(average="macro"|"micro")`).
pub fn evaluate_multilabel(
    gold: &[Vec<u32>],
    predicted: &[Vec<u32>],
    labels: &[String],
    loss: Option<f64>,
) -> Evaluation {
    let k = labels.len();
    let (mut tp, mut fp, mut fn_) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut exact = 0usize;
    for (g, p) in gold.iter().zip(predicted) {
        let mut gs = g.clone();
        let mut ps = p.clone();
        gs.sort_unstable();
        ps.sort_unstable();
        exact += usize::from(gs == ps);
        for c in 0..k as u32 {
            match (gs.binary_search(&c).is_ok(), ps.binary_search(&c).is_ok()) {
                (true, true) => tp[c as usize] += 1,
                (false, true) => fp[c as usize] += 1,
                (true, false) => fn_[c as usize] += 1,
                (false, false) => {}
            }
        }
    }
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let (precision, recall, f1) = prf(tp[c], fp[c], fn_[c]);
            ClassScores {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support: tp[c] + fn_[c],
            }
        })
        .collect();
    let (_, _, micro) = prf(tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    Evaluation {
        n: gold.len(),
        accuracy: if gold.is_empty() {
            0.0
        } else {
            exact as f64 / gold.len() as f64
        },
        macro_f1: if k == 0 {
            0.0
        } else {
            per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64
        },
        loss,
        micro_f1: Some(micro),
        per_class,
        confusion: Vec::new(),
        labels: labels.to_vec(),
    }
}

/// Computes the metrics from gold and predicted ids.
pub fn evaluate(
    gold: &[u32],
    predicted: &[u32],
    labels: &[String],
    loss: Option<f64>,
) -> Evaluation {
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(predicted) {
        confusion[g as usize][p as usize] += 1;
    }
    let n = gold.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c: usize = (0..k).map(|r| confusion[r][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted_c == 0 {
                0.0
            } else {
                tp / predicted_c as f64
            };
            let recall = if support == 0 {
                0.0
            } else {
                tp / support as f64
            };
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                label: labels[c].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let macro_f1 = if k == 0 {
        0.0
    } else {
        per_class.iter().map(|c| c.f1).sum::<f64>() / k as f64
    };
    Evaluation {
        n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        macro_f1,
        loss,
        micro_f1: None,
        per_class,
        confusion,
        labels: labels.to_vec(),
    }
}

impl Evaluation {
    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let width = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(5)
            .clamp(5, 40);
        let mut out = format!(
            "{:<width$}  {:>9}  {:>6}  {:>6}  {:>7}\n",
            "label", "precision", "recall", "f1", "support"
        );
        for c in &self.per_class {
            out += &format!(
                "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}\n",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        let accuracy = if self.micro_f1.is_some() {
            "exact-match accuracy"
        } else {
            "accuracy"
        };
        out += &format!(
            "\n{accuracy} {:.4}   macro-F1 {:.4}   n {}",
            self.accuracy, self.macro_f1, self.n
        );
        if let Some(micro) = self.micro_f1 {
            out += &format!("   micro-F1 {micro:.4}");
        }
        if let Some(loss) = self.loss {
            out += &format!("   loss {loss:.4}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand; sklearn gives the same (`f1_score(average=...)`, `accuracy_score`).
    #[test]
    fn multilabel_scores_match_hand_computation() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let gold = vec![vec![0, 1], vec![2], vec![], vec![1]];
        let pred = vec![vec![1, 0], vec![1], vec![], vec![1, 2]];
        let e = evaluate_multilabel(&gold, &pred, &labels, None);
        assert!((e.accuracy - 0.5).abs() < 1e-12);
        // a: tp1 → F1 1; b: tp2 fp1 → P 2/3 R 1 F1 0.8; c: fp1 fn1 → 0.
        assert!((e.per_class[0].f1 - 1.0).abs() < 1e-12);
        assert!((e.per_class[1].f1 - 0.8).abs() < 1e-12);
        assert_eq!(e.per_class[2].f1, 0.0);
        assert!((e.macro_f1 - 1.8 / 3.0).abs() < 1e-12);
        // micro: tp 3, fp 2, fn 1 → P 0.6, R 0.75, F1 2/3.
        assert!((e.micro_f1.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!(e.confusion.is_empty());
    }

    /// Values worked out by hand (and equal to sklearn's `classification_report`).
    #[test]
    fn matches_hand_computed_scores() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let gold = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 0, 1];
        let e = evaluate(&gold, &pred, &labels, None);
        assert_eq!(
            e.confusion,
            vec![vec![2, 1, 0], vec![1, 1, 0], vec![0, 1, 0]]
        );
        assert!((e.accuracy - 0.5).abs() < 1e-12);
        let a = &e.per_class[0];
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &e.per_class[1];
        assert!((b.precision - 1.0 / 3.0).abs() < 1e-12 && (b.recall - 0.5).abs() < 1e-12);
        assert!((b.f1 - 0.4).abs() < 1e-12);
        assert_eq!(e.per_class[2].f1, 0.0);
        assert!((e.macro_f1 - (2.0 / 3.0 + 0.4) / 3.0).abs() < 1e-12);
    }
}
