//! From subword-token scores to word scores, so explanations line up with human word lists.
//!
//! Rule (Hollenstein & Beinborn 2021, who sum the scores of a word's pieces): the score of a word
//! is the **sum** of the scores of its subword tokens; special tokens (`[CLS]`, `[SEP]`, padding:
//! tokens without a word id) are excluded. Summing keeps a word's share of the total whatever
//! the tokenizer's segmentation; a mean would favour words split into many low-scoring pieces
//! less than their total attention warrants.
use crate::ExplainError;

/// Number of words covered by `word_ids`: one past the largest word id (0 without words).
pub fn word_count(word_ids: &[Option<u32>]) -> usize {
    word_ids
        .iter()
        .flatten()
        .map(|&w| w as usize + 1)
        .max()
        .unwrap_or(0)
}

/// Sums token scores per word. `word_ids[t]` is the word of token `t` (`None` for special
/// tokens), as `tokenizers::Encoding::get_word_ids` gives it; words are numbered from 0 in text
/// order. Returns one score per word, `0..=max word id`.
pub fn aggregate_to_words(
    scores: &[f64],
    word_ids: &[Option<u32>],
) -> Result<Vec<f64>, ExplainError> {
    if scores.len() != word_ids.len() {
        return Err(ExplainError::LengthMismatch {
            what: "scores",
            got: scores.len(),
            expected: word_ids.len(),
        });
    }
    let mut out = vec![0.0; word_count(word_ids)];
    for (score, word) in scores.iter().zip(word_ids) {
        if let Some(w) = word {
            out[*w as usize] += score;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_pieces_and_drops_special_tokens() {
        // [CLS] un ##fun movie [SEP] [PAD]
        let ids = [None, Some(0), Some(0), Some(1), None, None];
        let scores = [0.5, 0.1, 0.2, 0.15, 0.05, 0.0];
        let words = aggregate_to_words(&scores, &ids).unwrap();
        assert_eq!(words.len(), 2);
        assert!((words[0] - 0.3).abs() < 1e-12 && (words[1] - 0.15).abs() < 1e-12);
    }

    #[test]
    fn no_words_and_mismatched_lengths() {
        assert!(aggregate_to_words(&[1.0, 1.0], &[None, None])
            .unwrap()
            .is_empty());
        let e = aggregate_to_words(&[1.0], &[None, Some(0)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "length mismatch: scores has 1 entries, expected 2"
        );
    }
}
