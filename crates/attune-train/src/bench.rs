//! Throughput measurements behind `attune bench`: fixed-shape batches (padded to the sequence
//! length, as a reference run with `padding="max_length"` would), warm-up, then the median of
//! several timed repeats. Benchmarks are commands, never timed tests.
use std::time::Instant;

use attune_core::checkpoint::LoadedModel;
use attune_core::infer::cross_entropy;
use attune_core::{ForwardOptions, Tensor};
use serde::Serialize;

use crate::optim::{training_forward, AdamW, AdamWConfig};
use crate::trainer::TrainError;

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured (`infer`, `infer+attentions`, `train`).
    pub task: String,
    /// Texts per batch.
    pub batch: usize,
    /// Tokens per text.
    pub seq: usize,
    /// Median throughput over the repeats.
    pub sentences_per_s: f64,
    /// Every repeat's throughput.
    pub repeats: Vec<f64>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn fixed_batch(
    model: &LoadedModel,
    texts: &[String],
    batch: usize,
    seq: usize,
    offset: usize,
) -> Result<attune_core::Batch, TrainError> {
    let chosen: Vec<&str> = (0..batch)
        .map(|i| texts[(offset + i) % texts.len()].as_str())
        .collect();
    let enc = model.tokenizer.encode(&chosen, seq)?;
    Ok(model
        .tokenizer
        .collate_padded(enc, seq, model.model.device())?)
}

/// Inference throughput at a fixed shape, with or without attention capture.
pub fn inference(
    model: &LoadedModel,
    texts: &[String],
    batch: usize,
    seq: usize,
    repeats: usize,
    capture_attentions: bool,
) -> Result<Measurement, TrainError> {
    let opts = if capture_attentions {
        ForwardOptions::with_attentions()
    } else {
        ForwardOptions::default()
    };
    let batches: Vec<_> = (0..4)
        .map(|i| fixed_batch(model, texts, batch, seq, i * batch))
        .collect::<Result<_, _>>()?;
    model
        .model
        .forward(&batches[0], &opts)?
        .logits
        .to_vec2::<f32>()?;
    let mut results = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        for b in &batches {
            model.model.forward(b, &opts)?.logits.to_vec2::<f32>()?;
        }
        results.push((batches.len() * batch) as f64 / start.elapsed().as_secs_f64());
    }
    Ok(Measurement {
        task: if capture_attentions {
            "infer+attentions"
        } else {
            "infer"
        }
        .into(),
        batch,
        seq,
        sentences_per_s: median(&mut results.clone()),
        repeats: results,
    })
}

/// Training-step throughput (forward, backward, clipping, AdamW) at a fixed shape.
pub fn training(
    model: &LoadedModel,
    texts: &[String],
    batch: usize,
    seq: usize,
    repeats: usize,
) -> Result<Measurement, TrainError> {
    let mut optimizer = AdamW::new(model.params.trainable_vars(), AdamWConfig::default())?;
    let opts = ForwardOptions {
        train: true,
        ..ForwardOptions::default()
    };
    let k = model.labels.len() as u32;
    let mut step = |offset: usize| -> Result<(), TrainError> {
        let b = fixed_batch(model, texts, batch, seq, offset)?;
        let targets: Vec<u32> = (0..batch as u32).map(|i| i % k).collect();
        let targets = Tensor::from_vec(targets, batch, model.model.device())?;
        let (out, lookup) = training_forward(model, &b, &opts)?;
        let loss = cross_entropy(&out.logits, &targets, None)?;
        let grads = loss.backward()?;
        let rows = match &lookup {
            Some(lookup) => lookup.gradients(&grads)?,
            None => Vec::new(),
        };
        optimizer.step(&grads, &rows, 1e-5, Some(1.0))?;
        Ok(())
    };
    step(0)?;
    let steps_per_repeat = 3;
    let mut results = Vec::with_capacity(repeats);
    for r in 0..repeats {
        let start = Instant::now();
        for s in 0..steps_per_repeat {
            step((r * steps_per_repeat + s + 1) * batch)?;
        }
        results.push((steps_per_repeat * batch) as f64 / start.elapsed().as_secs_f64());
    }
    Ok(Measurement {
        task: "train".into(),
        batch,
        seq,
        sentences_per_s: median(&mut results.clone()),
        repeats: results,
    })
}

/// Real-traffic throughput: every text at its real length (up to `max_len`), classified in
/// batches of `batch` the way `attune predict` and the server do (sorted by length, so each
/// batch pads little).
pub fn traffic(
    model: &LoadedModel,
    texts: &[String],
    batch: usize,
    max_len: usize,
    repeats: usize,
) -> Result<Measurement, TrainError> {
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.classify(&texts, max_len, batch)?;
    let mut results = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        model.classify(&texts, max_len, batch)?;
        results.push(texts.len() as f64 / start.elapsed().as_secs_f64());
    }
    Ok(Measurement {
        task: "traffic".into(),
        batch,
        seq: 0,
        sentences_per_s: median(&mut results.clone()),
        repeats: results,
    })
}
