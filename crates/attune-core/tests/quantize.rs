//! Quantised encoders (int8, bf16) against the f32 model they were made from: outputs within
//! tolerances derived from the formats' precision, exact save/load round trips, gradients for
//! explanations, and refusals where quantisation does not apply.
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_core::quant::{PackedWeight, WeightFormat};
use attune_core::{Device, ForwardOptions, Tensor};
use attune_test::{load_frozen, max_abs_diff, real_model_dir, write_tiny_model, TOY_SENTENCES};

const FORMATS: [WeightFormat; 2] = [WeightFormat::Int8, WeightFormat::Bf16];

fn probabilities_and_attentions(
    m: &checkpoint::LoadedModel,
    texts: &[&str],
) -> (Tensor, Vec<Tensor>) {
    let batch = m.tokenizer.batch(texts, 32, &Device::Cpu).unwrap();
    let out = m
        .model
        .forward(&batch, &ForwardOptions::with_attentions())
        .unwrap();
    (m.model.probabilities(&out.logits).unwrap(), out.attentions)
}

#[test]
fn quantised_tiny_model_tracks_f32() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos", "mixed"], 3, 0.2);
    let reference = load_frozen(dir.path());
    let (probs, attentions) = probabilities_and_attentions(&reference, TOY_SENTENCES);
    for format in FORMATS {
        let mut m = load_frozen(dir.path());
        m.quantize(format).unwrap();
        assert_eq!(m.model.weight_format(), format);
        assert!(m
            .model
            .dense_layers()
            .iter()
            .all(|l| l.packed_weight().is_some_and(|p| p.format() == format)));
        let (q_probs, q_attentions) = probabilities_and_attentions(&m, TOY_SENTENCES);
        // 8-bit steps of ~1/255 of each row's range, through two layers: a few 1e-3.
        let tol = 0.02;
        let diff = max_abs_diff(&probs, &q_probs);
        assert!(diff < tol, "{format}: probabilities differ by {diff}");
        for (layer, (a, b)) in attentions.iter().zip(&q_attentions).enumerate() {
            let diff = max_abs_diff(a, b);
            assert!(
                diff < tol,
                "{format}: layer {layer} attention differs by {diff}"
            );
        }
        // And it is a different computation, not the f32 path under another name.
        assert!(
            max_abs_diff(&probs, &q_probs) > 0.0,
            "{format} changed nothing"
        );
    }
}

#[test]
fn saved_quantised_model_reloads_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 5, 0.2);
    for format in FORMATS {
        let mut m = load_frozen(dir.path());
        m.quantize(format).unwrap();
        let saved = tempfile::tempdir().unwrap();
        m.save(saved.path()).unwrap();
        let again = load_frozen(saved.path());
        assert_eq!(again.model.weight_format(), format);
        for (a, b) in m
            .model
            .dense_layers()
            .iter()
            .zip(again.model.dense_layers())
        {
            match (a.packed_weight().unwrap(), b.packed_weight().unwrap()) {
                (PackedWeight::Int8(x), PackedWeight::Int8(y)) => {
                    assert_eq!(x.quantized(), y.quantized(), "{}", a.name());
                    for (s, t) in x.scales().iter().zip(y.scales()) {
                        assert!(
                            (s - t).abs() <= 1e-9 * s.abs(),
                            "{}: scale {s} vs {t}",
                            a.name()
                        );
                    }
                }
                (PackedWeight::Bf16(x), PackedWeight::Bf16(y)) => {
                    assert_eq!(x.to_bf16(), y.to_bf16(), "{}", a.name())
                }
                _ => panic!("{}: format changed on reload", a.name()),
            }
        }
        let (p, _) = probabilities_and_attentions(&m, TOY_SENTENCES);
        let (q, _) = probabilities_and_attentions(&again, TOY_SENTENCES);
        let diff = max_abs_diff(&p, &q);
        assert!(diff < 1e-6, "{format}: reloaded model differs by {diff}");
        // The weights file holds int8 / bf16, not f32: dense layers are ~all of a tiny model's
        // parameters beside the embeddings, so the file must shrink.
        let size = |d: &std::path::Path| {
            std::fs::metadata(d.join("model.safetensors"))
                .unwrap()
                .len()
        };
        assert!(
            size(saved.path()) < size(dir.path()),
            "{format}: file did not shrink"
        );
    }
}

#[test]
fn gradients_reach_the_input_through_quantised_layers() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 7, 0.2);
    let gradient = |m: &checkpoint::LoadedModel| -> Vec<f32> {
        let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
        let embeds = m.model.word_embeddings(&batch.input_ids).unwrap();
        let var = candle_core::Var::from_tensor(&embeds).unwrap();
        let out = m
            .model
            .forward_embeds(
                var.as_tensor(),
                &batch.token_type_ids,
                &batch.attention_mask,
                &ForwardOptions::default(),
            )
            .unwrap();
        let grads = out
            .logits
            .narrow(1, 1, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let reference = gradient(&load_frozen(dir.path()));
    for format in FORMATS {
        let mut m = load_frozen(dir.path());
        m.quantize(format).unwrap();
        let g = gradient(&m);
        let dot: f64 = g
            .iter()
            .zip(&reference)
            .map(|(a, b)| f64::from(a * b))
            .sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
        let cosine = dot / (norm(&g) * norm(&reference));
        assert!(cosine > 0.98, "{format}: gradient cosine with f32 {cosine}");
    }
}

#[test]
fn quantised_models_are_for_inference_only() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 9, 0.2);
    let mut m = load_frozen(dir.path());
    m.quantize(WeightFormat::Int8).unwrap();
    let saved = tempfile::tempdir().unwrap();
    m.save(saved.path()).unwrap();
    let err = checkpoint::load(
        saved.path(),
        &LoadOptions {
            mode: TrainMode::Full,
            ..LoadOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("for inference"), "{err}");
}

#[test]
fn int8_encoder_on_real_weights_stays_close_to_f32() {
    // all-MiniLM-L6-v2's own weights and activations (outliers included), not random ones.
    let dir = real_model_dir();
    let opts = LoadOptions {
        labels: Some(vec!["a".into(), "b".into()]),
        ..LoadOptions::default()
    };
    let texts = [
        "the movie was a triumph of style over substance",
        "customers report that the card payment did not go through",
        "shares fell 4 % after the quarterly report",
    ];
    let hidden = |m: &checkpoint::LoadedModel| -> Vec<Vec<f32>> {
        let batch = m.tokenizer.batch(&texts, 64, &Device::Cpu).unwrap();
        let out = m.model.forward(&batch, &ForwardOptions::default()).unwrap();
        out.last_hidden.get_on_dim(1, 0).unwrap().to_vec2().unwrap()
    };
    let reference = hidden(&checkpoint::load(&dir, &opts).unwrap());
    for format in FORMATS {
        let mut m = checkpoint::load(&dir, &opts).unwrap();
        m.quantize(format).unwrap();
        for (text, (a, b)) in texts.iter().zip(reference.iter().zip(hidden(&m))) {
            let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cosine = dot / (norm(a) * norm(&b));
            // Six layers of 8-bit rounding keep the [CLS] state's direction to within ~1 %.
            let floor = if format == WeightFormat::Int8 {
                0.99
            } else {
                0.995
            };
            assert!(cosine > floor, "{format} {text:?}: cosine {cosine}");
        }
    }
}

#[test]
fn int8_product_on_real_weights_and_activations_is_within_its_bound() {
    // The kernel's worst-case bound (see attune-kernels' tests), here on all-MiniLM-L6-v2's
    // feed-forward weight of layer 0 and the real hidden states that enter it.
    let dir = real_model_dir();
    let weights = checkpoint::load_weights(&dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let w = &weights["bert.encoder.layer.0.intermediate.dense.weight"];
    let (n, k) = w.dims2().unwrap();
    let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    let opts = LoadOptions {
        labels: Some(vec!["a".into(), "b".into()]),
        ..LoadOptions::default()
    };
    let m = checkpoint::load(&dir, &opts).unwrap();
    let batch = m
        .tokenizer
        .batch(
            &[
                "the service at the branch was slow",
                "shares rallied on strong guidance",
            ],
            32,
            &Device::Cpu,
        )
        .unwrap();
    let out = m
        .model
        .forward(
            &batch,
            &ForwardOptions {
                output_hidden_states: true,
                ..ForwardOptions::default()
            },
        )
        .unwrap();
    // Real activations: layer 0's output (what layer 1's dense layers read), with BERT's
    // outlier dimensions; the weight is a real 384 → 1536 projection.
    let x = out.hidden_states[1].flatten_to(1).unwrap();
    let rows = x.dim(0).unwrap();
    let x: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let weight = attune_kernels::Int8Matrix::quantize(&w, n, k).unwrap();
    let quantized = attune_kernels::quantize_rows(&x, rows, k).unwrap();
    let mut got = vec![0f32; rows * n];
    attune_kernels::int8_linear(
        &x,
        rows,
        &weight,
        None,
        &mut got,
        attune_kernels::Backend::best_int8(),
    )
    .unwrap();
    let mut worst = 0f64;
    for r in 0..rows {
        let (_, x_scale, _) = quantized.row(r);
        for c in 0..n {
            let (xr, wc) = (&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]);
            let exact: f64 = xr
                .iter()
                .zip(wc)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let w_scale = weight.scales()[c];
            let bound: f64 = xr
                .iter()
                .zip(wc)
                .map(|(a, b)| {
                    f64::from(a.abs() * w_scale / 2.0 + (b.abs() + w_scale / 2.0) * x_scale / 2.0)
                })
                .sum::<f64>()
                + 1e-5 * exact.abs()
                + 1e-6;
            let err = (f64::from(got[r * n + c]) - exact).abs();
            assert!(
                err <= bound,
                "row {r} col {c}: error {err} above bound {bound}"
            );
            worst = worst.max(err / bound);
        }
    }
    // Typical errors sit far inside the worst case.
    eprintln!("largest error: {worst:.3} of its bound");
    assert!(worst < 0.5, "largest error reaches {worst} of its bound");
}
