//! Head pruning: removing a head's weights must compute exactly what silencing it with a head
//! mask computes, survive a save/load round trip in HF's `pruned_heads` layout, and change
//! nothing when no head is removed.
use std::collections::BTreeMap;

use attune_core::quant::WeightFormat;
use attune_core::{Device, ForwardOptions, Tensor};
use attune_test::{load_frozen, max_abs_diff, write_tiny_model, TOY_SENTENCES};

fn run(
    m: &attune_core::checkpoint::LoadedModel,
    head_mask: Option<Tensor>,
) -> (Tensor, Vec<Tensor>) {
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let out = m
        .model
        .forward(
            &batch,
            &ForwardOptions {
                output_attentions: true,
                head_mask,
                ..ForwardOptions::default()
            },
        )
        .unwrap();
    (out.logits, out.attentions)
}

fn tiny() -> (tempfile::TempDir, attune_core::BertConfig) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_tiny_model(dir.path(), &["neg", "pos"], 11, 0.3);
    (dir, cfg)
}

#[test]
fn pruning_no_head_changes_nothing() {
    let (dir, cfg) = tiny();
    let original = load_frozen(dir.path());
    let mut pruned = load_frozen(dir.path());
    let empty: BTreeMap<usize, Vec<usize>> =
        (0..cfg.num_hidden_layers).map(|l| (l, vec![])).collect();
    pruned.prune_heads(&empty).unwrap();
    assert!(pruned.config.pruned_heads.is_empty());
    let (a, _) = run(&original, None);
    let (b, _) = run(&pruned, None);
    // The same weights and the same operations: identical, not merely close.
    assert!(max_abs_diff(&a, &b) <= 0.0);
}

#[test]
fn removing_heads_equals_masking_them() {
    let (dir, cfg) = tiny();
    assert!(
        cfg.num_attention_heads >= 2,
        "the tiny model needs two heads per layer"
    );
    let remove: BTreeMap<usize, Vec<usize>> = BTreeMap::from([(0, vec![1]), (1, vec![0])]);
    let mut mask = vec![vec![1f32; cfg.num_attention_heads]; cfg.num_hidden_layers];
    for (&layer, heads) in &remove {
        for &h in heads {
            mask[layer][h] = 0.0;
        }
    }
    let mask = Tensor::new(mask, &Device::Cpu).unwrap();
    let original = load_frozen(dir.path());
    let (masked_logits, masked_attn) = run(&original, Some(mask.clone()));
    let mut pruned = load_frozen(dir.path());
    pruned.prune_heads(&remove).unwrap();
    assert_eq!(pruned.model.heads()[0], vec![0, 2, 3]);
    assert_eq!(pruned.model.heads()[1], vec![1, 2, 3]);
    let (logits, attn) = run(&pruned, None);
    let diff = max_abs_diff(&logits, &masked_logits);
    assert!(diff < 1e-5, "pruned vs masked logits differ by {diff}");
    // The kept heads' attention maps are the masked model's maps for those heads.
    let kept_ids = Tensor::new(&[0u32, 2, 3], &Device::Cpu).unwrap();
    let kept = masked_attn[0].index_select(&kept_ids, 1).unwrap();
    assert!(max_abs_diff(&attn[0], &kept) < 1e-6);
    // A head mask in original indices still applies to the pruned model.
    let (again, _) = run(&pruned, Some(mask));
    assert!(max_abs_diff(&again, &logits) < 1e-6);
}

#[test]
fn pruned_model_saves_in_hf_layout_and_reloads() {
    let (dir, cfg) = tiny();
    let remove = BTreeMap::from([(1, vec![1])]);
    let mut pruned = load_frozen(dir.path());
    pruned.prune_heads(&remove).unwrap();
    let (before, _) = run(&pruned, None);
    let saved = tempfile::tempdir().unwrap();
    pruned.save(saved.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(saved.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["pruned_heads"], serde_json::json!({"1": [1]}));
    let weights =
        candle_core::safetensors::load(saved.path().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let query = &weights["bert.encoder.layer.1.attention.self.query.weight"];
    let width = (cfg.num_attention_heads - 1) * cfg.head_dim();
    assert_eq!(query.dims(), &[width, cfg.hidden_size]);
    let output = &weights["bert.encoder.layer.1.attention.output.dense.weight"];
    assert_eq!(output.dims(), &[cfg.hidden_size, width]);
    let reloaded = load_frozen(saved.path());
    let (after, _) = run(&reloaded, None);
    assert!(max_abs_diff(&before, &after) < 1e-6);
    // Pruned, then quantised: both reductions compose.
    let mut both = load_frozen(saved.path());
    both.quantize(WeightFormat::Int8).unwrap();
    let (q, _) = run(&both, None);
    assert!(max_abs_diff(&q, &before) < 0.05);
}

#[test]
fn a_layer_keeps_at_least_one_head() {
    let (dir, cfg) = tiny();
    let mut m = load_frozen(dir.path());
    let all = BTreeMap::from([(0, (0..cfg.num_attention_heads).collect::<Vec<_>>())]);
    let err = m.prune_heads(&all).unwrap_err().to_string();
    assert!(err.contains("at least one"), "{err}");
    let mut q = load_frozen(dir.path());
    q.quantize(WeightFormat::Int8).unwrap();
    let err = q
        .prune_heads(&BTreeMap::from([(0, vec![0])]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("prune the f32 model"), "{err}");
}
