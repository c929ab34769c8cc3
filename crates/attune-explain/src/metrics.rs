//! How far model importance is from human importance: rank correlation with reading times,
//! plausibility against rationales, faithfulness, and bootstrap confidence intervals.
//!
//! Each function takes one text's word-level scores; averaging over texts (and the interval
//! around the average) is [`summarize`]'s job, so every metric is a per-text mean.
use crate::ExplainError;

/// Spearman's ρ between `scores` and `human` for one sentence: Pearson correlation of the
/// ranks, ties given their average rank (scipy's `spearmanr`). Hollenstein & Beinborn 2021
/// ("Relative Importance in Sentence Processing", ACL, §4) compute it per sentence against
/// relative fixation and average over sentences. Their per-sentence normalisations (max- or
/// softmax-normalising model scores, dividing reading times by the sentence total) are strictly
/// increasing maps, which leave ranks and therefore ρ unchanged, so none is applied here.
///
/// `None` when either side is constant (ρ undefined); callers count such sentences as skipped.
pub fn spearman(scores: &[f64], human: &[f64]) -> Result<Option<f64>, ExplainError> {
    check_len("human scores", human.len(), scores.len())?;
    if scores.len() < 2 {
        return Ok(None);
    }
    Ok(pearson(&ranks(scores), &ranks(human)))
}

fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| cmp_scores(values[a], values[b]));
    let mut out = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Ranks start..end (0-based) share their mean, 1-based.
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// Indices of the `k` highest scores; among equal scores the earlier word wins, so results do
/// not depend on sort stability.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| cmp_scores(scores[b], scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

fn rationale_size(rationale: &[bool]) -> Result<usize, ExplainError> {
    let k = rationale.iter().filter(|&&r| r).count();
    if k == 0 {
        return Err(ExplainError::Empty(
            "rationale (no word is marked; plausibility is undefined)",
        ));
    }
    Ok(k)
}

/// Token-level F1 (DeYoung et al. 2020, ERASER, §4.1, with hard predictions from soft scores
/// as in HateXplain, Mathew et al. 2021, §5): the model's rationale is its top-`k` words, `k` the
/// number of words people marked; `P = |model ∩ human| / k`, `R = |model ∩ human| / k`, hence
/// `F1 = |model ∩ human| / k`.
pub fn token_f1(scores: &[f64], rationale: &[bool]) -> Result<f64, ExplainError> {
    check_len("rationale", rationale.len(), scores.len())?;
    let k = rationale_size(rationale)?;
    let hits = top_k(scores, k).iter().filter(|&&i| rationale[i]).count();
    Ok(hits as f64 / k as f64)
}

/// Contiguous runs of `true` as half-open `[start, end)` spans.
fn spans(mask: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &m) in mask.iter().chain(std::iter::once(&false)).enumerate() {
        match (m, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// IOU F1 (DeYoung et al. 2020, ERASER, §4.1): the model's rationale (top-`k` words, as in
/// [`token_f1`]) and the human one are cut into contiguous spans; a predicted span is a hit when
/// its intersection-over-union with some human span is ≥ 0.5. `P = hits / predicted spans`,
/// `R = hits / human spans` (ERASER's `partial_match_score`), F1 per text.
pub fn iou_f1(scores: &[f64], rationale: &[bool]) -> Result<f64, ExplainError> {
    check_len("rationale", rationale.len(), scores.len())?;
    let k = rationale_size(rationale)?;
    let mut predicted = vec![false; scores.len()];
    for i in top_k(scores, k) {
        predicted[i] = true;
    }
    let (pred, gold) = (spans(&predicted), spans(rationale));
    let hits = pred
        .iter()
        .filter(|&&(ps, pe)| {
            gold.iter().any(|&(gs, ge)| {
                let inter = pe.min(ge).saturating_sub(ps.max(gs));
                let union = pe.max(ge) - ps.min(gs);
                inter as f64 / union as f64 >= 0.5
            })
        })
        .count() as f64;
    let (p, r) = (hits / pred.len() as f64, hits / gold.len() as f64);
    Ok(if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    })
}

/// Area under the precision–recall curve of `scores` against the 0/1 human rationale (DeYoung et
/// al. 2020, ERASER, §4.1, soft scoring), as average precision: `Σ_n (R_n − R_{n−1}) · P_n` over
/// the distinct score thresholds from high to low (scikit-learn's `average_precision_score`;
/// tied scores enter together).
pub fn auprc(scores: &[f64], rationale: &[bool]) -> Result<f64, ExplainError> {
    check_len("rationale", rationale.len(), scores.len())?;
    let positives = rationale_size(rationale)? as f64;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| cmp_scores(scores[b], scores[a]));
    let (mut tp, mut seen, mut prev_recall, mut ap) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            tp += f64::from(u8::from(rationale[order[j]]));
            seen += 1.0;
            j += 1;
        }
        let recall = tp / positives;
        ap += (recall - prev_recall) * (tp / seen);
        prev_recall = recall;
        i = j;
    }
    Ok(ap)
}

/// The fractions of a text's words that ERASER's AOPC faithfulness metrics remove or keep
/// (DeYoung et al. 2020, §4.2: bins of 1, 5, 10, 20 and 50 %).
pub const AOPC_FRACTIONS: [f64; 5] = [0.01, 0.05, 0.10, 0.20, 0.50];

/// Number of words in the top-`fraction` bin of a text of `words` words: rounded up, at least
/// one, so that short texts still lose (or keep) a word in every bin.
pub fn bin_size(words: usize, fraction: f64) -> usize {
    ((words as f64 * fraction).ceil() as usize).clamp(1, words.max(1))
}

/// AOPC comprehensiveness (DeYoung et al. 2020, ERASER, §4.2): the mean over the bins of
/// `p_j(x) − p_j(x \ r_k)`, where `r_k` are the top-k% words and `j` the class being explained.
/// `without_top[b]` holds `p_j(x \ r_k)` for bin `b` of [`AOPC_FRACTIONS`]. Higher: the words
/// the method picked matter to the model.
pub fn comprehensiveness(full: f64, without_top: &[f64]) -> Result<f64, ExplainError> {
    aopc(full, without_top, "probabilities without the top words")
}

/// AOPC sufficiency (DeYoung et al. 2020, ERASER, §4.2): the mean over the bins of
/// `p_j(x) − p_j(r_k)`, the model run on the top-k% words alone. Lower: those words suffice.
pub fn sufficiency(full: f64, only_top: &[f64]) -> Result<f64, ExplainError> {
    aopc(full, only_top, "probabilities with only the top words")
}

fn aopc(full: f64, reduced: &[f64], what: &'static str) -> Result<f64, ExplainError> {
    check_len(what, reduced.len(), AOPC_FRACTIONS.len())?;
    Ok(reduced.iter().map(|p| full - p).sum::<f64>() / reduced.len() as f64)
}

/// A mean over texts with its bootstrap 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Mean over texts.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub ci_low: f64,
    /// 97.5th percentile of the bootstrap means.
    pub ci_high: f64,
    /// Number of texts.
    pub n: usize,
    /// Standard deviation over texts (per-sentence spread is large for gaze; show it).
    pub sd: f64,
}

/// Bootstrap resamples behind every interval: enough for stable 2.5/97.5 percentiles.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// Mean, standard deviation and percentile-bootstrap 95 % interval (Efron & Tibshirani 1993:
/// resample the texts with replacement [`BOOTSTRAP_RESAMPLES`] times, take the 2.5th and 97.5th
/// percentiles of the resampled means). Seeded, so reports are reproducible.
pub fn summarize(values: &[f64], seed: u64) -> Result<Summary, ExplainError> {
    if values.is_empty() {
        return Err(ExplainError::Empty("no values to average"));
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = if n > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    // SplitMix64: a tiny, well-mixed generator is all resampling indices needs.
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            (0..n)
                .map(|_| values[(next() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Ok(Summary {
        mean,
        ci_low: at(0.025),
        ci_high: at(0.975),
        n,
        sd,
    })
}

/// Total order in which `-0.0 == 0.0` (as in scipy and scikit-learn); `total_cmp` alone
/// would rank `-0.0` below `0.0` and break ties that people consider ties.
fn cmp_scores(a: f64, b: f64) -> std::cmp::Ordering {
    (a + 0.0).total_cmp(&(b + 0.0))
}

fn check_len(what: &'static str, got: usize, expected: usize) -> Result<(), ExplainError> {
    if got != expected {
        return Err(ExplainError::LengthMismatch {
            what,
            got,
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
    }

    #[test]
    fn spearman_is_undefined_for_constant_input() {
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[0.1, 0.2, 0.3]).unwrap(), None);
        assert_eq!(spearman(&[1.0], &[0.1]).unwrap(), None);
    }

    #[test]
    fn iou_matches_overlapping_spans_only() {
        // Human span [1, 4); model top-3 = {1, 2, 5}: spans [1, 3) (IOU 2/3, hit) and [5, 6) (miss).
        let rationale = [false, true, true, true, false, false];
        let scores = [0.0, 0.9, 0.8, 0.1, 0.0, 0.7];
        // P = 1/2, R = 1/1 → F1 = 2/3.
        assert!((iou_f1(&scores, &rationale).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((token_f1(&scores, &rationale).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            token_f1(&[0.1, 0.2], &[false, false])
                .unwrap_err()
                .to_string(),
            "empty input: rationale (no word is marked; plausibility is undefined)"
        );
        assert_eq!(
            auprc(&[0.1, 0.2, 0.3], &[true, false])
                .unwrap_err()
                .to_string(),
            "length mismatch: rationale has 2 entries, expected 3"
        );
        assert!(comprehensiveness(0.9, &[0.1, 0.2]).is_err());
        assert!(summarize(&[], 1).is_err());
    }

    #[test]
    fn aopc_bins_and_means() {
        assert_eq!(bin_size(10, 0.01), 1);
        assert_eq!(bin_size(10, 0.5), 5);
        assert_eq!(bin_size(3, 0.5), 2);
        let c = comprehensiveness(0.9, &[0.8, 0.7, 0.6, 0.5, 0.4]).unwrap();
        assert!((c - 0.3).abs() < 1e-12);
        let s = sufficiency(0.9, &[0.9, 0.9, 0.9, 0.9, 1.0]).unwrap();
        assert!((s + 0.02).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_with_the_normal_width() {
        // 400 values from a fixed, uneven pattern: the percentile interval should be close to
        // mean ± 1.96·sd/√n (central limit theorem) and contain the mean.
        let values: Vec<f64> = (0..400).map(|i| ((i * 37 % 101) as f64).sqrt()).collect();
        let s = summarize(&values, 42).unwrap();
        let half = 1.96 * s.sd / (values.len() as f64).sqrt();
        assert!(s.ci_low < s.mean && s.mean < s.ci_high);
        for (got, want) in [(s.mean - s.ci_low, half), (s.ci_high - s.mean, half)] {
            assert!((got / want - 1.0).abs() < 0.2, "{got} vs normal {want}");
        }
        assert_eq!(summarize(&values, 42).unwrap(), s, "seeded");
        let one = summarize(&[0.5], 1).unwrap();
        assert!((one.ci_low - 0.5).abs() < 1e-12 && (one.ci_high - 0.5).abs() < 1e-12);
    }
}
