//! Batched inference for classifiers: sorts texts by length so each batch pads little, runs
//! them without gradient tracking, and returns probabilities in input order.
use candle_core::D;

use crate::checkpoint::LoadedModel;
use crate::error::Result;
use crate::model::ForwardOptions;

impl LoadedModel {
    /// Class probabilities for each text (softmax or sigmoid per the config), in input order.
    pub fn classify(
        &self,
        texts: &[&str],
        max_len: usize,
        batch_size: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let encodings = self.tokenizer.encode(texts, max_len)?;
        let batches = crate::tokenizer::length_sorted_batches(&encodings, batch_size);
        let mut encodings: Vec<Option<tokenizers::Encoding>> =
            encodings.into_iter().map(Some).collect();
        let mut probs = vec![Vec::new(); texts.len()];
        for chunk in &batches {
            let batch_encodings = chunk
                .iter()
                .map(|&i| encodings[i].take().expect("each text is batched once"))
                .collect();
            let batch = self
                .tokenizer
                .collate(batch_encodings, self.model.device())?;
            let out = self.model.forward(&batch, &ForwardOptions::default())?;
            let p = self.model.probabilities(&out.logits)?.to_vec2::<f32>()?;
            for (&i, row) in chunk.iter().zip(p) {
                probs[i] = row;
            }
        }
        Ok(probs)
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Mean cross-entropy of `targets` under `logits` `[batch, classes]`, each example weighted by
/// `class_weights[target]` when given (PyTorch's `CrossEntropyLoss(weight=...)`: the weighted sum
/// divided by the sum of the weights).
pub fn cross_entropy(
    logits: &candle_core::Tensor,
    targets: &candle_core::Tensor,
    class_weights: Option<&candle_core::Tensor>,
) -> candle_core::Result<candle_core::Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?;
    match class_weights {
        None => picked.mean_all(),
        Some(w) => {
            let per_example = w.index_select(targets, 0)?;
            (picked * &per_example)?
                .sum_all()?
                .broadcast_div(&per_example.sum_all()?)
        }
    }
}

/// Mean binary cross-entropy with logits for multi-label targets `[batch, classes]` in {0, 1}.
pub fn binary_cross_entropy_with_logits(
    logits: &candle_core::Tensor,
    targets: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    // max(x, 0) - x·y + log(1 + exp(-|x|)): stable for large |x|.
    let relu = logits.relu()?;
    let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    ((relu - (logits * targets)?)? + soft)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn weighted_cross_entropy_matches_pytorch_definition() {
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap();
        let nll = |a: f32, b: f32, t: usize| {
            let lse = (a.exp() + b.exp()).ln();
            lse - if t == 0 { a } else { b }
        };
        let l = [nll(2.0, 0.0, 0), nll(0.0, 1.0, 1), nll(1.0, 1.0, 0)];
        let plain = cross_entropy(&logits, &targets, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((plain - l.iter().sum::<f32>() / 3.0).abs() < 1e-6);
        let w = Tensor::new(&[1.0f32, 3.0], &Device::Cpu).unwrap();
        let weighted = cross_entropy(&logits, &targets, Some(&w))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((weighted - (l[0] + 3.0 * l[1] + l[2]) / 5.0).abs() < 1e-6);
    }

    #[test]
    fn bce_with_logits_is_stable_and_correct() {
        let logits = Tensor::new(&[[0.0f32, 100.0, -100.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[1.0f32, 1.0, 0.0]], &Device::Cpu).unwrap();
        let loss = binary_cross_entropy_with_logits(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((loss - std::f32::consts::LN_2 / 3.0).abs() < 1e-6, "{loss}");
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
    }
}
