//! Which attention heads matter, and what removing the rest costs (Michel, Levy & Neubig 2019,
//! "Are Sixteen Heads Really Better than One?", <https://arxiv.org/abs/1905.10650>).
//!
//! A head's importance is the expected absolute gradient of the loss with respect to a gate ξ_h
//! that scales its attention (the head mask, all ones): `I_h = E |∂L/∂ξ_h|`, accumulated per batch
//! as HF's `run_prune_bertology.py` does, then normalised by the ℓ2 norm of its layer's scores, as
//! Michel et al. recommend so layers compare. Heads are pruned in ascending importance computed
//! once (the paper's §4 protocol), every layer keeping at least one head.
use attune_core::checkpoint::LoadedModel;
use attune_core::infer::{argmax, cross_entropy};
use attune_core::{length_sorted_batches, ForwardOptions, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use tokenizers::Encoding;

use crate::trainer::{Observer, TrainError};

type Result<T> = std::result::Result<T, TrainError>;

fn check_single_label(model: &LoadedModel) -> Result<()> {
    if model.config.problem_type == Some(attune_core::ProblemType::MultiLabelClassification) {
        return Err(TrainError::Config(
            "head importance is defined here for single-label classifiers".into(),
        ));
    }
    Ok(())
}

/// Layer-normalised importance `[layer][original head]` of every head on `labels`. Heads the
/// model no longer has score 0.
pub fn head_importance(
    model: &LoadedModel,
    encodings: &[Encoding],
    labels: &[u32],
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<Vec<f64>>> {
    let raw = gate_gradients(model, encodings, labels, batch_size, obs)?;
    Ok(raw
        .iter()
        .map(|layer| {
            let norm = layer.iter().map(|v| v * v).sum::<f64>().sqrt();
            layer.iter().map(|v| v / (norm + 1e-20)).collect()
        })
        .collect())
}

/// `Σ_batches |∂L_batch/∂ξ_h|` `[layer][original head]`, where `L_batch` is the summed
/// cross-entropy of a batch and ξ the head gates at 1: importance before normalisation.
pub fn gate_gradients(
    model: &LoadedModel,
    encodings: &[Encoding],
    labels: &[u32],
    batch_size: usize,
    obs: &mut dyn Observer,
) -> Result<Vec<Vec<f64>>> {
    check_single_label(model)?;
    if encodings.len() != labels.len() || encodings.is_empty() {
        return Err(TrainError::Config(format!(
            "head importance needs one label per text and at least one text ({} texts, {} labels)",
            encodings.len(),
            labels.len()
        )));
    }
    let cfg = model.model.config();
    let (layers, heads) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let device = model.model.device().clone();
    let gate = candle_core::Var::ones((layers, heads), candle_core::DType::F32, &device)?;
    let mut total = vec![0f64; layers * heads];
    obs.phase("head importance", encodings.len());
    for chunk in length_sorted_batches(encodings, batch_size) {
        let batch = model.tokenizer.collate_at(encodings, &chunk, &device)?;
        let targets = Tensor::new(
            chunk.iter().map(|&i| labels[i]).collect::<Vec<u32>>(),
            &device,
        )?;
        let out = model.model.forward(
            &batch,
            &ForwardOptions {
                head_mask: Some(gate.as_tensor().clone()),
                ..ForwardOptions::default()
            },
        )?;
        let loss = (cross_entropy(&out.logits, &targets, None)? * chunk.len() as f64)?;
        let grads = loss.backward()?;
        let grad = grads
            .get(gate.as_tensor())
            .ok_or_else(|| TrainError::Config("no gradient reached the head gates".into()))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (t, g) in total.iter_mut().zip(grad) {
            *t += f64::from(g.abs());
        }
        obs.advance(chunk.len());
    }
    Ok(total.chunks(heads).map(<[f64]>::to_vec).collect())
}

/// Heads in the order they are removed: ascending `scores` among the heads the model has, never
/// the last head of a layer. `scores` is `[layer][original head]`.
pub fn prune_order(scores: &[Vec<f64>], kept: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(usize, usize)> = kept
        .iter()
        .enumerate()
        .flat_map(|(l, hs)| hs.iter().map(move |&h| (l, h)))
        .collect();
    candidates.sort_by(|a, b| scores[a.0][a.1].total_cmp(&scores[b.0][b.1]));
    constrained(candidates, kept)
}

/// `candidates` in the given order, skipping any head that would empty its layer.
fn constrained(candidates: Vec<(usize, usize)>, kept: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut left: Vec<usize> = kept.iter().map(Vec::len).collect();
    candidates
        .into_iter()
        .filter(|&(l, _)| {
            if left[l] > 1 {
                left[l] -= 1;
                true
            } else {
                false
            }
        })
        .collect()
}

/// A seeded random removal order under the same one-head-per-layer rule: the baseline that
/// shows whether importance ranks heads better than chance.
pub fn random_order(kept: &[Vec<usize>], seed: u64) -> Vec<(usize, usize)> {
    let mut candidates: Vec<(usize, usize)> = kept
        .iter()
        .enumerate()
        .flat_map(|(l, hs)| hs.iter().map(move |&h| (l, h)))
        .collect();
    candidates.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(seed));
    constrained(candidates, kept)
}

/// Head mask `[layers, heads]` with the given heads silenced.
pub fn mask_without(
    layers: usize,
    heads: usize,
    removed: &[(usize, usize)],
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut mask = vec![1f32; layers * heads];
    for &(l, h) in removed {
        mask[l * heads + h] = 0.0;
    }
    Ok(Tensor::from_vec(mask, (layers, heads), device)?)
}

/// Accuracy on `labels` with `head_mask` applied.
pub fn masked_accuracy(
    model: &LoadedModel,
    encodings: &[Encoding],
    labels: &[u32],
    head_mask: &Tensor,
    batch_size: usize,
) -> Result<f64> {
    check_single_label(model)?;
    let device = model.model.device().clone();
    let mut correct = 0usize;
    for chunk in length_sorted_batches(encodings, batch_size) {
        let batch = model.tokenizer.collate_at(encodings, &chunk, &device)?;
        let out = model.model.forward(
            &batch,
            &ForwardOptions {
                head_mask: Some(head_mask.clone()),
                ..ForwardOptions::default()
            },
        )?;
        let logits = out.logits.to_vec2::<f32>()?;
        correct += chunk
            .iter()
            .zip(&logits)
            .filter(|(&i, row)| argmax(row) as u32 == labels[i])
            .count();
    }
    Ok(correct as f64 / encodings.len().max(1) as f64)
}

/// One point of a pruning curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// Fraction of all heads removed.
    pub fraction: f64,
    /// Heads removed.
    pub removed: usize,
    /// Accuracy with the `removed` least important heads silenced.
    pub accuracy: f64,
    /// Accuracy with the same number of heads silenced in a random order.
    pub random_accuracy: f64,
}

/// Accuracy as heads are removed in importance order and in random order, at `fractions` of all
/// heads (each capped at what the one-head-per-layer rule allows).
pub fn pruning_curve(
    model: &LoadedModel,
    encodings: &[Encoding],
    labels: &[u32],
    scores: &[Vec<f64>],
    fractions: &[f64],
    batch_size: usize,
    seed: u64,
    obs: &mut dyn Observer,
) -> Result<Vec<CurvePoint>> {
    let cfg = model.model.config();
    let (layers, heads) = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let kept = model.model.heads();
    let by_importance = prune_order(scores, &kept);
    let by_chance = random_order(&kept, seed);
    let device = model.model.device().clone();
    obs.phase("pruning curve", fractions.len());
    let mut points = Vec::with_capacity(fractions.len());
    for &fraction in fractions {
        let removed =
            ((fraction * (layers * heads) as f64).round() as usize).min(by_importance.len());
        let accuracy = |order: &[(usize, usize)]| -> Result<f64> {
            let mask = mask_without(layers, heads, &order[..removed], &device)?;
            masked_accuracy(model, encodings, labels, &mask, batch_size)
        };
        points.push(CurvePoint {
            fraction: removed as f64 / (layers * heads) as f64,
            removed,
            accuracy: accuracy(&by_importance)?,
            random_accuracy: accuracy(&by_chance)?,
        });
        obs.advance(1);
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_ascending_and_keeps_a_head_per_layer() {
        let scores = vec![vec![0.1, 0.9, 0.5], vec![0.05, 0.02, 0.8]];
        let kept = vec![vec![0, 1, 2], vec![0, 1, 2]];
        let order = prune_order(&scores, &kept);
        assert_eq!(order, vec![(1, 1), (1, 0), (0, 0), (0, 2)]);
        // Already-pruned heads are not candidates.
        let order = prune_order(&scores, &[vec![1, 2], vec![2]]);
        assert_eq!(order, vec![(0, 2)]);
        let random = random_order(&kept, 3);
        assert_eq!(random.len(), 4);
        for layer in 0..2 {
            assert_eq!(random.iter().filter(|(l, _)| *l == layer).count(), 2);
        }
    }
}
