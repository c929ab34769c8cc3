//! Numerical parity with PyTorch `transformers` on the real all-MiniLM-L6-v2 (needs
//! `./scripts/setup-model`). Reference values come from `tools/make_parity_fixture.py`.
use std::collections::HashMap;
use std::path::Path;

use attune_core::checkpoint::{self, LoadOptions};
use attune_core::{Device, ForwardOptions, Tensor};
use attune_test::{max_abs_diff, real_model_dir};

const TOL: f64 = 1e-4;

struct Fixture {
    max_len: usize,
    texts: Vec<String>,
    ids: Vec<Vec<u32>>,
    tensors: HashMap<String, Tensor>,
}

fn fixture() -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("minilm_parity.json")).unwrap())
            .unwrap();
    let sentences = meta["sentences"].as_array().unwrap();
    Fixture {
        max_len: meta["max_len"].as_u64().unwrap() as usize,
        texts: sentences
            .iter()
            .map(|s| s["text"].as_str().unwrap().to_string())
            .collect(),
        ids: sentences
            .iter()
            .map(|s| {
                s["input_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect(),
        tensors: candle_core::safetensors::load(
            dir.join("minilm_parity.safetensors"),
            &Device::Cpu,
        )
        .unwrap(),
    }
}

/// The real base model plus the reference's randomly initialised classifier, as a model dir.
fn model_with_reference_head(fx: &Fixture, dir: &Path) {
    let base = real_model_dir();
    let mut weights =
        checkpoint::load_weights(&base.join("model.safetensors"), &Device::Cpu).unwrap();
    weights.insert(
        "classifier.weight".into(),
        fx.tensors["classifier.weight"].clone(),
    );
    weights.insert(
        "classifier.bias".into(),
        fx.tensors["classifier.bias"].clone(),
    );
    candle_core::safetensors::save(&weights, dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap()).unwrap();
    config["id2label"] = serde_json::json!({"0": "a", "1": "b", "2": "c"});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(base.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

#[test]
fn real_model_tokenizer_matches_transformers() {
    let fx = fixture();
    let m = checkpoint::load(
        &real_model_dir(),
        &LoadOptions {
            labels: Some(vec!["x".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    let texts: Vec<&str> = fx.texts.iter().map(String::as_str).collect();
    let encodings = m.tokenizer.encode(&texts, fx.max_len).unwrap();
    for ((text, enc), expected) in fx.texts.iter().zip(&encodings).zip(&fx.ids) {
        assert_eq!(enc.get_ids(), expected.as_slice(), "token ids of {text:?}");
    }
    // vocab.txt route gives the same ids as tokenizer.json.
    let from_vocab =
        attune_core::TextTokenizer::from_vocab(&real_model_dir().join("vocab.txt"), true).unwrap();
    for (text, expected) in fx.texts.iter().zip(&fx.ids) {
        let enc = from_vocab.encode(&[text], fx.max_len).unwrap();
        assert_eq!(
            enc[0].get_ids(),
            expected.as_slice(),
            "vocab.txt ids of {text:?}"
        );
    }
}

#[test]
fn real_model_matches_transformers_within_1e_4() {
    let fx = fixture();
    assert!(fx.texts.len() >= 20);
    let dir = tempfile::tempdir().unwrap();
    model_with_reference_head(&fx, dir.path());
    let m = checkpoint::load(dir.path(), &LoadOptions::default()).unwrap();
    // All sentences in one padded batch: parity must hold with padding too.
    let texts: Vec<&str> = fx.texts.iter().map(String::as_str).collect();
    let batch = m.tokenizer.batch(&texts, fx.max_len, &Device::Cpu).unwrap();
    let opts = ForwardOptions {
        output_attentions: true,
        output_hidden_states: true,
        ..Default::default()
    };
    let out = m.model.forward(&batch, &opts).unwrap();
    let mut compared = 0;
    let mut worst = 0f64;
    let mut check = |ours: &Tensor, expected: &Tensor, what: String| {
        let diff = max_abs_diff(ours, expected);
        assert!(diff <= TOL, "{what}: max abs diff {diff:e} exceeds {TOL:e}");
        worst = worst.max(diff);
        compared += 1;
    };
    for (i, &len) in batch.lengths.iter().enumerate() {
        assert_eq!(len, fx.ids[i].len());
        let logits = out.logits.get(i).unwrap();
        check(
            &logits,
            &fx.tensors[&format!("s{i}.logits")],
            format!("logits of {i}"),
        );
        for (layer, h) in out.hidden_states.iter().enumerate() {
            if let Some(expected) = fx.tensors.get(&format!("s{i}.hidden.{layer}")) {
                let ours = h.get(i).unwrap().narrow(0, 0, len).unwrap();
                check(&ours, expected, format!("hidden {layer} of sentence {i}"));
            }
        }
        for (layer, a) in out.attentions.iter().enumerate() {
            let ours = a
                .get(i)
                .unwrap()
                .narrow(1, 0, len)
                .unwrap()
                .narrow(2, 0, len)
                .unwrap();
            let expected = &fx.tensors[&format!("s{i}.attn.{layer}")];
            check(
                &ours,
                expected,
                format!("attention {layer} of sentence {i}"),
            );
        }
    }
    // Reported for the record (`cargo test -- --nocapture`); the bound is asserted above.
    eprintln!("parity: {compared} tensors, worst max-abs difference {worst:e}");
    assert!(compared > 20 * 8, "compared only {compared} tensors");
}
