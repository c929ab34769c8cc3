//! Head importance against central finite differences of the loss with respect to each head's
//! gate, and the pruning curve's bookkeeping.
use attune_core::infer::cross_entropy;
use attune_core::{Device, ForwardOptions, Tensor};
use attune_test::{load_frozen, write_tiny_model, TOY_SENTENCES};
use attune_train::prune::{gate_gradients, head_importance, mask_without, pruning_curve};
use attune_train::trainer::Silent;

fn summed_loss(m: &attune_core::checkpoint::LoadedModel, gates: &[f32], labels: &[u32]) -> f64 {
    let cfg = m.model.config();
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(
        gates.to_vec(),
        (cfg.num_hidden_layers, cfg.num_attention_heads),
        &Device::Cpu,
    )
    .unwrap();
    let out = m
        .model
        .forward(
            &batch,
            &ForwardOptions {
                head_mask: Some(mask),
                ..ForwardOptions::default()
            },
        )
        .unwrap();
    let targets = Tensor::new(labels, &Device::Cpu).unwrap();
    let mean = cross_entropy(&out.logits, &targets, None)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    f64::from(mean) * labels.len() as f64
}

#[test]
fn gate_gradients_match_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_tiny_model(dir.path(), &["neg", "pos"], 21, 0.4);
    let m = load_frozen(dir.path());
    let labels = [1u32, 0, 0, 1];
    let encodings = m.tokenizer.encode(TOY_SENTENCES, 32).unwrap();
    // One batch holding every text: the accumulated |gradient| is |∂L/∂ξ| of the summed loss.
    let grads = gate_gradients(&m, &encodings, &labels, 32, &mut Silent).unwrap();
    let n = cfg.num_hidden_layers * cfg.num_attention_heads;
    let eps = 1e-2f32;
    for index in 0..n {
        let mut up = vec![1f32; n];
        let mut down = vec![1f32; n];
        up[index] += eps;
        down[index] -= eps;
        let numeric = (summed_loss(&m, &up, &labels) - summed_loss(&m, &down, &labels))
            / (2.0 * f64::from(eps));
        let analytic = grads[index / cfg.num_attention_heads][index % cfg.num_attention_heads];
        assert!(
            (analytic - numeric.abs()).abs() <= 2e-3 + 0.02 * numeric.abs(),
            "gate {index}: |dL/dxi| {analytic} vs finite difference {numeric}"
        );
    }
    // Normalised importance: unit ℓ2 norm per layer.
    let importance = head_importance(&m, &encodings, &labels, 2, &mut Silent).unwrap();
    for layer in &importance {
        let norm: f64 = layer.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-9, "{norm}");
    }
}

#[test]
fn curve_starts_at_full_accuracy_and_counts_heads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_tiny_model(dir.path(), &["neg", "pos"], 22, 0.4);
    let m = load_frozen(dir.path());
    let labels = [1u32, 0, 0, 1];
    let encodings = m.tokenizer.encode(TOY_SENTENCES, 32).unwrap();
    let scores = head_importance(&m, &encodings, &labels, 4, &mut Silent).unwrap();
    let curve = pruning_curve(
        &m,
        &encodings,
        &labels,
        &scores,
        &[0.0, 0.5, 1.0],
        4,
        1,
        &mut Silent,
    )
    .unwrap();
    let all_ones = mask_without(
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        &[],
        &Device::Cpu,
    )
    .unwrap();
    let full = attune_train::prune::masked_accuracy(&m, &encodings, &labels, &all_ones, 4).unwrap();
    assert!((curve[0].accuracy - full).abs() < 1e-12 && curve[0].removed == 0);
    assert_eq!(
        curve[1].removed,
        cfg.num_hidden_layers * cfg.num_attention_heads / 2
    );
    // "All heads" is capped: every layer keeps one.
    assert_eq!(
        curve[2].removed,
        cfg.num_hidden_layers * (cfg.num_attention_heads - 1)
    );
}
