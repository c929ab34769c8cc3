//! Test support for attune (dev-dependency only): tiny random-weight BERT models written to disk
//! in HF layout, a toy vocabulary, and tolerance matchers for tensors.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::Path;

use attune_core::checkpoint::{self, LoadOptions, LoadedModel, TrainMode};
use attune_core::config::BertConfig;
use attune_core::model::BertClassifier;
use attune_core::params::ParamStore;
use candle_core::{DType, Device, Tensor};

/// Words of the toy vocabulary (after the special tokens).
pub const TOY_WORDS: &[&str] = &[
    "the", "a", "movie", "film", "plot", "acting", "was", "is", "very", "not", "good", "great",
    "fun", "bad", "awful", "boring", "and", "but", "it", "this", "really", "so", ".", ",", "!",
    "##s", "##ing", "##ly", "un", "##fun",
];

/// Writes `vocab.txt` with BERT's special tokens followed by [`TOY_WORDS`]; returns its size.
pub fn write_toy_vocab(dir: &Path) -> usize {
    let mut lines = vec!["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
    lines.extend_from_slice(TOY_WORDS);
    std::fs::write(dir.join("vocab.txt"), lines.join("\n") + "\n").expect("write vocab.txt");
    lines.len()
}

/// Builds a tiny BERT classifier with random weights in `dir` (config.json, model.safetensors,
/// vocab.txt). `init_std` sets the scale of the random weights: 0.02 mirrors BERT's init, larger
/// values give sharper attention for tests that need non-uniform maps. LayerNorm weights are
/// perturbed away from 1/0 so their gradients are not trivially symmetric.
pub fn write_tiny_model(dir: &Path, labels: &[&str], seed: u64, init_std: f64) -> BertConfig {
    std::fs::create_dir_all(dir).expect("create model dir");
    let vocab = write_toy_vocab(dir);
    let mut config = BertConfig::tiny(vocab);
    config.initializer_range = init_std;
    config.set_labels(&labels.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("serialize config"),
    )
    .expect("write config.json");
    let store = ParamStore::new(HashMap::new(), std::sync::Arc::new(|_: &str| false), seed);
    let vb = store.var_builder(DType::F32, &Device::Cpu);
    BertClassifier::load(vb, &config, labels.len(), None, &store.rng()).expect("build tiny model");
    let rng = store.rng();
    let tensors: HashMap<String, Tensor> = store
        .named_tensors()
        .into_iter()
        .map(|(name, t)| {
            let t = if name.contains("LayerNorm") {
                let noise = rng.normal(t.elem_count(), 0.0, 0.1);
                let noise = Tensor::from_vec(noise, t.shape(), t.device()).expect("noise");
                (t + noise).expect("perturb")
            } else {
                t
            };
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).expect("save weights");
    config
}

/// Loads a model directory for inference on the CPU in f32.
pub fn load_frozen(dir: &Path) -> LoadedModel {
    checkpoint::load(dir, &LoadOptions::default()).expect("load model")
}

/// Loads a model directory with the given training mode.
pub fn load_with_mode(dir: &Path, mode: TrainMode, dtype: DType) -> LoadedModel {
    let opts = LoadOptions {
        mode,
        dtype,
        ..LoadOptions::default()
    };
    checkpoint::load(dir, &opts).expect("load model")
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a.to_dtype(DType::F64).expect("cast") - b.to_dtype(DType::F64).expect("cast"))
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flatten")
        .max(0)
        .expect("max")
        .to_scalar::<f64>()
        .expect("scalar")
}

/// Asserts `max |a - b| <= tol`, printing the difference when it fails.
#[track_caller]
pub fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    let diff = max_abs_diff(a, b);
    assert!(diff <= tol, "{what}: max abs diff {diff:e} exceeds {tol:e}");
}

/// Sentences over the toy vocabulary, of varied lengths.
pub const TOY_SENTENCES: &[&str] = &[
    "the movie was very good",
    "awful",
    "this film is not fun and the plot was boring , really boring",
    "great acting !",
];

/// The real all-MiniLM-L6-v2 directory that `scripts/setup-model` installs. Tests that need it
/// call this and fail with instructions when it is missing (CI runs the setup first).
pub fn real_model_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "this test needs the real model: run ./scripts/setup-model (looked in {})",
        dir.display()
    );
    dir
}
