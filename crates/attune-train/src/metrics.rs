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
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// Unweighted mean F1 over classes.
    pub macro_f1: f64,
    /// Mean cross-entropy of the true labels (when probabilities were given).
    pub loss: Option<f64>,
    /// Per-class scores, in label order.
    pub per_class: Vec<ClassScores>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Class names in index order.
    pub labels: Vec<String>,
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
        out += &format!(
            "\naccuracy {:.4}   macro-F1 {:.4}   n {}",
            self.accuracy, self.macro_f1, self.n
        );
        if let Some(loss) = self.loss {
            out += &format!("   loss {loss:.4}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
