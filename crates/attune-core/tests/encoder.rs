//! Behaviour of the encoder on tiny random-weight models: shapes, masking, LoRA, gradients,
//! checkpoint round trips.
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_core::lora::LoraConfig;
use attune_core::{DType, Device, ForwardOptions, Tensor};
use attune_test::{assert_close, load_frozen, load_with_mode, write_tiny_model, TOY_SENTENCES};

/// Rewrites a model directory's `config.json` through `edit`.
fn edit_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

fn all_outputs() -> ForwardOptions {
    ForwardOptions {
        output_attentions: true,
        output_hidden_states: true,
        ..ForwardOptions::default()
    }
}

#[test]
fn attentions_and_hidden_states_have_hf_shapes_and_respect_padding() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_tiny_model(dir.path(), &["neg", "pos"], 1, 0.5);
    let m = load_frozen(dir.path());
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let out = m.model.forward(&batch, &all_outputs()).unwrap();
    let (b, s) = batch.input_ids.dims2().unwrap();
    assert_eq!(out.logits.dims(), &[b, 2]);
    assert_eq!(out.attentions.len(), cfg.num_hidden_layers);
    assert_eq!(out.hidden_states.len(), cfg.num_hidden_layers + 1);
    for att in &out.attentions {
        assert_eq!(att.dims(), &[b, cfg.num_attention_heads, s, s]);
        let rows = att
            .sum(3)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            rows.iter().all(|r| (r - 1.0).abs() < 1e-5),
            "rows must sum to 1"
        );
    }
    // Padded key positions receive no attention.
    let probs = out.attentions[0].to_dtype(DType::F64).unwrap();
    for (row, &len) in batch.lengths.iter().enumerate() {
        if len < s {
            let pad_mass = probs
                .get(row)
                .unwrap()
                .narrow(2, len, s - len)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(pad_mass < 1e-12, "padding got attention {pad_mass}");
        }
    }
}

#[test]
fn padding_does_not_change_results() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 2, 0.5);
    let m = load_frozen(dir.path());
    let dev = Device::Cpu;
    let together = m.tokenizer.batch(TOY_SENTENCES, 32, &dev).unwrap();
    let together = m.model.forward(&together, &all_outputs()).unwrap();
    for (i, text) in TOY_SENTENCES.iter().enumerate() {
        let alone = m.tokenizer.batch(&[text], 32, &dev).unwrap();
        let n = alone.lengths[0];
        let alone = m.model.forward(&alone, &all_outputs()).unwrap();
        let row = together.logits.get(i).unwrap();
        assert_close(&row, &alone.logits.get(0).unwrap(), 1e-5, "logits");
        let att_together = together.attentions[1]
            .get(i)
            .unwrap()
            .narrow(1, 0, n)
            .unwrap()
            .narrow(2, 0, n)
            .unwrap();
        assert_close(
            &att_together,
            &alone.attentions[1].get(0).unwrap(),
            1e-5,
            "attention",
        );
    }
}

#[test]
fn head_mask_of_ones_changes_nothing_and_zero_silences_heads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_tiny_model(dir.path(), &["neg", "pos"], 3, 0.5);
    let m = load_frozen(dir.path());
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let plain = m.model.forward(&batch, &ForwardOptions::default()).unwrap();
    let shape = (cfg.num_hidden_layers, cfg.num_attention_heads);
    let ones = ForwardOptions {
        head_mask: Some(Tensor::ones(shape, DType::F32, &Device::Cpu).unwrap()),
        ..ForwardOptions::default()
    };
    let with_ones = m.model.forward(&batch, &ones).unwrap();
    assert_close(&plain.logits, &with_ones.logits, 0.0, "all-ones head mask");
    let zeros = ForwardOptions {
        head_mask: Some(Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()),
        ..ForwardOptions::default()
    };
    let silenced = m.model.forward(&batch, &zeros).unwrap();
    let diff = attune_test::max_abs_diff(&plain.logits, &silenced.logits);
    assert!(
        diff > 1e-4,
        "silencing every head must change the output (diff {diff})"
    );
}

fn lora_config() -> LoraConfig {
    LoraConfig::new(
        4,
        8.0,
        0.0,
        vec!["query".into(), "value".into(), "dense".into()],
    )
}

#[test]
fn lora_merge_equals_unmerged_forward() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 4, 0.5);
    let mut m = load_with_mode(dir.path(), TrainMode::Lora(lora_config()), DType::F32);
    // A fresh adapter has B = 0; give every B random values so the adapter matters.
    let rng = attune_core::params::SharedRng::new(9);
    for (name, var) in m.params.trainable_vars() {
        if name.contains("lora_B") {
            let noise = rng.normal(var.elem_count(), 0.0, 0.3);
            var.set(&Tensor::from_vec(noise, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    assert!(m.model.has_unmerged_lora());
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let unmerged = m.model.forward(&batch, &all_outputs()).unwrap();
    m.model.merge_lora().unwrap();
    assert!(!m.model.has_unmerged_lora());
    let merged = m.model.forward(&batch, &all_outputs()).unwrap();
    assert_close(&unmerged.logits, &merged.logits, 1e-5, "merged logits");
    for (a, b) in unmerged.attentions.iter().zip(&merged.attentions) {
        assert_close(a, b, 1e-5, "merged attention");
    }
}

#[test]
fn lora_trains_only_adapters_and_head() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 5, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Lora(lora_config()), DType::F32);
    let names: Vec<String> = m
        .params
        .trainable_vars()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.contains("lora_") || n.starts_with("classifier.")),
        "{names:?}"
    );
    // 2 layers × (query, value, attention.output.dense, intermediate.dense, output.dense) + pooler
    // = 11 adapted layers × (A, B) + classifier weight and bias.
    assert_eq!(names.len(), 11 * 2 + 2, "{names:?}");
}

/// Every parameter must receive a non-zero gradient in full fine-tuning: candle's own LayerNorm
/// has no backward, which silently leaves only the head training.
#[test]
fn every_parameter_gets_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos", "mixed"], 6, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Full, DType::F32);
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let out = m.model.forward(&batch, &ForwardOptions::default()).unwrap();
    let targets = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&out.logits, &targets).unwrap();
    let grads = loss.backward().unwrap();
    let vars = m.params.trainable_vars();
    assert!(vars.len() > 30);
    for (name, var) in vars {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = grad
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // Only the rows of embeddings for tokens in the batch get gradient; the sum is still > 0.
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{name}: gradient norm² {norm}"
        );
    }
}

/// The last layer computes only the [CLS] row unless its hidden states are asked for (with
/// attention maps still for every row when those are); logits, maps and every parameter's
/// gradient — of a loss on the logits and the last layer's maps — must equal those of the full
/// last layer (asked for through `output_hidden_states`), up to float reassociation.
#[test]
fn last_layer_on_cls_only_gives_the_full_layers_logits_maps_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos", "mixed"], 2, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Full, DType::F32);
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let targets = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
    let run = |output_attentions: bool, output_hidden_states: bool| {
        let opts = ForwardOptions {
            output_attentions,
            output_hidden_states,
            ..ForwardOptions::default()
        };
        let out = m.model.forward(&batch, &opts).unwrap();
        let mut loss = candle_nn::loss::cross_entropy(&out.logits, &targets).unwrap();
        if let Some(last) = out.attentions.last() {
            loss = (loss + last.sqr().unwrap().mean_all().unwrap()).unwrap();
        }
        let grads = loss.backward().unwrap();
        (out, grads)
    };
    let (b, s) = batch.input_ids.dims2().unwrap();
    for with_maps in [false, true] {
        let (cls, cls_grads) = run(with_maps, false);
        let (full, full_grads) = run(with_maps, true);
        assert_eq!(cls.last_hidden.dims()[..2], [b, 1]);
        assert_eq!(full.last_hidden.dims()[..2], [b, s]);
        assert_close(&cls.logits, &full.logits, 1e-5, "logits");
        assert_close(
            &cls.last_hidden.squeeze(1).unwrap(),
            &full
                .last_hidden
                .narrow(1, 0, 1)
                .unwrap()
                .squeeze(1)
                .unwrap(),
            1e-5,
            "[CLS] row of the last layer",
        );
        assert_eq!(cls.attentions.len(), full.attentions.len());
        for (a, f) in cls.attentions.iter().zip(&full.attentions) {
            assert_close(a, f, 1e-6, "attention maps");
        }
        for (name, var) in m.params.trainable_vars() {
            let (Some(a), Some(f)) = (
                cls_grads.get(var.as_tensor()),
                full_grads.get(var.as_tensor()),
            ) else {
                panic!("{name}: gradient missing on one path");
            };
            assert_close(a, f, 1e-5, &format!("{name} (maps: {with_maps})"));
        }
    }
}

/// The gradient of a loss on the attention maps, checked against central finite differences
/// in f64 (the f64 path runs the composed candle ops; the fused f32 kernels are checked against
/// them in `ops.rs`).
#[test]
fn attention_gradient_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 7, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Full, DType::F64);
    let batch = m
        .tokenizer
        .batch(&TOY_SENTENCES[..2], 32, &Device::Cpu)
        .unwrap();
    let loss_of = || -> Tensor {
        let out = m
            .model
            .forward(&batch, &ForwardOptions::with_attentions())
            .unwrap();
        // Attention-supervision-like loss: -log of the last layer's CLS attention on token 1.
        let last = out.attentions.last().unwrap();
        let cls_row = last.narrow(2, 0, 1).unwrap().mean(1).unwrap();
        cls_row
            .narrow(2, 1, 1)
            .unwrap()
            .log()
            .unwrap()
            .neg()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let loss = loss_of();
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    for (name, var) in m.params.trainable_vars() {
        if !(name.contains("layer.0.attention.self.query.weight")
            || name.contains("layer.1.attention.self.key.bias")
            || name.contains("embeddings.LayerNorm.weight")
            || name.contains("layer.0.output.dense.weight"))
        {
            continue;
        }
        let grad = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let original = var
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for &i in &[0usize, 3, 7] {
            let eps = 1e-5;
            let mut plus = original.clone();
            plus[i] += eps;
            var.set(&Tensor::from_vec(plus, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lp = loss_of().to_scalar::<f64>().unwrap();
            let mut minus = original.clone();
            minus[i] -= eps;
            var.set(&Tensor::from_vec(minus, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lm = loss_of().to_scalar::<f64>().unwrap();
            var.set(&Tensor::from_vec(original.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let numeric = (lp - lm) / (2.0 * eps);
            let err = (numeric - grad[i]).abs();
            assert!(
                err <= 1e-6 + 1e-4 * numeric.abs(),
                "{name}[{i}]: analytic {} vs numeric {numeric}",
                grad[i]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
}

#[test]
fn full_model_save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 8, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Full, DType::F32);
    let out_dir = tempfile::tempdir().unwrap();
    m.save(out_dir.path()).unwrap();
    let back = load_frozen(out_dir.path());
    assert_eq!(back.labels, vec!["neg", "pos"]);
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let a = m.model.forward(&batch, &ForwardOptions::default()).unwrap();
    let b = back
        .model
        .forward(&batch, &ForwardOptions::default())
        .unwrap();
    assert_close(&a.logits, &b.logits, 1e-6, "reloaded logits");
    let saved =
        candle_core::safetensors::load(out_dir.path().join("model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(saved.contains_key("bert.encoder.layer.0.attention.self.query.weight"));
    assert!(saved.contains_key("classifier.weight"));
}

#[test]
fn lora_save_load_round_trip_uses_peft_names() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 10, 0.5);
    let m = load_with_mode(dir.path(), TrainMode::Lora(lora_config()), DType::F32);
    let rng = attune_core::params::SharedRng::new(3);
    for (name, var) in m.params.trainable_vars() {
        if name.contains("lora_B") {
            let noise = rng.normal(var.elem_count(), 0.0, 0.3);
            var.set(&Tensor::from_vec(noise, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let out_dir = tempfile::tempdir().unwrap();
    m.save(out_dir.path()).unwrap();
    let saved = candle_core::safetensors::load(
        out_dir.path().join("adapter_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(saved
        .contains_key("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight"));
    assert!(saved.contains_key("base_model.model.classifier.weight"));
    assert!(!saved
        .keys()
        .any(|k| k.ends_with("query.weight") && !k.contains("lora")));
    let mut back = load_frozen(out_dir.path());
    assert!(back.lora.is_some());
    let batch = m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let a = m.model.forward(&batch, &ForwardOptions::default()).unwrap();
    let b = back
        .model
        .forward(&batch, &ForwardOptions::default())
        .unwrap();
    assert_close(&a.logits, &b.logits, 1e-6, "reloaded LoRA logits");
    back.model.merge_lora().unwrap();
    let c = back
        .model
        .forward(&batch, &ForwardOptions::default())
        .unwrap();
    assert_close(&a.logits, &c.logits, 1e-5, "merged LoRA logits");
}

#[test]
fn bad_model_directories_give_errors_naming_the_problem() {
    let opts = LoadOptions::default();
    let err = |dir: &std::path::Path| checkpoint::load(dir, &opts).unwrap_err().to_string();

    let missing = err(std::path::Path::new("/nonexistent/model"));
    assert!(
        missing.contains("/nonexistent/model") && missing.contains("does not exist"),
        "{missing}"
    );

    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 11, 0.02);
    let weights = dir.path().join("model.safetensors");

    std::fs::rename(&weights, dir.path().join("pytorch_model.bin")).unwrap();
    let msg = err(dir.path());
    assert!(
        msg.contains("pytorch_model.bin") && msg.contains("convert"),
        "{msg}"
    );

    std::fs::remove_file(dir.path().join("pytorch_model.bin")).unwrap();
    let msg = err(dir.path());
    assert!(msg.contains("no model.safetensors"), "{msg}");

    std::fs::write(&weights, b"this is not a safetensors file").unwrap();
    let msg = err(dir.path());
    assert!(
        msg.contains("model.safetensors") && msg.contains("cannot read safetensors"),
        "{msg}"
    );

    edit_config(dir.path(), |c| {
        c["num_attention_heads"] = serde_json::json!(5);
    });
    let msg = err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("not divisible by num_attention_heads 5"),
        "{msg}"
    );

    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": 16").unwrap();
    let msg = err(dir.path());
    assert!(
        msg.contains("config.json") && msg.contains("invalid JSON"),
        "{msg}"
    );
}

#[test]
fn weights_that_do_not_fit_the_config_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 12, 0.02);
    edit_config(dir.path(), |c| {
        c["intermediate_size"] = serde_json::json!(48);
    });
    let msg = checkpoint::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("intermediate.dense.weight") && msg.contains("shape"),
        "{msg}"
    );
}

#[test]
fn base_model_without_labels_needs_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 13, 0.02);
    edit_config(dir.path(), |c| {
        c.as_object_mut().unwrap().remove("id2label");
    });
    let msg = checkpoint::load(dir.path(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no id2label"), "{msg}");
    let opts = LoadOptions {
        labels: Some(vec!["a".into(), "b".into(), "c".into()]),
        ..LoadOptions::default()
    };
    let m = checkpoint::load(dir.path(), &opts).unwrap();
    assert_eq!(m.model.num_labels(), 3);
}

#[test]
fn dropout_is_active_in_training_only_and_follows_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 14, 0.5);
    let batch_of =
        |m: &checkpoint::LoadedModel| m.tokenizer.batch(TOY_SENTENCES, 32, &Device::Cpu).unwrap();
    let train = ForwardOptions {
        train: true,
        ..ForwardOptions::default()
    };
    let a = load_with_mode(dir.path(), TrainMode::Full, DType::F32);
    let batch = batch_of(&a);
    let eval1 = a
        .model
        .forward(&batch, &ForwardOptions::default())
        .unwrap()
        .logits;
    let eval2 = a
        .model
        .forward(&batch, &ForwardOptions::default())
        .unwrap()
        .logits;
    assert_close(&eval1, &eval2, 0.0, "evaluation is deterministic");
    let t1 = a.model.forward(&batch, &train).unwrap().logits;
    let t2 = a.model.forward(&batch, &train).unwrap().logits;
    assert!(
        attune_test::max_abs_diff(&t1, &t2) > 1e-4,
        "dropout must change successive training passes"
    );
    assert!(
        attune_test::max_abs_diff(&t1, &eval1) > 1e-4,
        "dropout must be off in evaluation"
    );
    // A fresh model with the same seed draws the same masks.
    let b = load_with_mode(dir.path(), TrainMode::Full, DType::F32);
    let u1 = b.model.forward(&batch, &train).unwrap().logits;
    assert_close(&t1, &u1, 0.0, "same seed, same dropout masks");
}

#[test]
fn mean_pooling_head_skips_the_pooler_and_ignores_padding() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path(), &["neg", "pos"], 15, 0.5);
    let opts = LoadOptions {
        pooling: Some(attune_core::Pooling::Mean),
        ..LoadOptions::default()
    };
    let mean = checkpoint::load(dir.path(), &opts).unwrap();
    let cls = load_frozen(dir.path());
    let names: Vec<String> = mean
        .params
        .named_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!names.iter().any(|n| n.contains("pooler")), "{names:?}");
    let dev = Device::Cpu;
    let together = mean.tokenizer.batch(TOY_SENTENCES, 32, &dev).unwrap();
    let together = mean
        .model
        .forward(&together, &ForwardOptions::default())
        .unwrap()
        .logits;
    let via_cls = cls.tokenizer.batch(TOY_SENTENCES, 32, &dev).unwrap();
    let via_cls = cls
        .model
        .forward(&via_cls, &ForwardOptions::default())
        .unwrap()
        .logits;
    assert!(
        attune_test::max_abs_diff(&together, &via_cls) > 1e-4,
        "pooling must matter"
    );
    for (i, text) in TOY_SENTENCES.iter().enumerate() {
        let alone = mean.tokenizer.batch(&[text], 32, &dev).unwrap();
        let alone = mean
            .model
            .forward(&alone, &ForwardOptions::default())
            .unwrap()
            .logits;
        assert_close(
            &together.get(i).unwrap(),
            &alone.get(0).unwrap(),
            1e-5,
            "mean-pooled logits",
        );
    }
}
