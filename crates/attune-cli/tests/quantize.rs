//! `attune quantize` and `attune prune` end to end. Quantisation runs on the real model (needs `scripts/setup-model` and the shared
//! SST-2 data): a short fine-tune, int8 and bf16 copies, and `eval`'s comparison against the
//! f32 model — prediction agreement on the whole dev set and explanation parity.
use std::path::{Path, PathBuf};

use attune_test::{real_model_dir, write_tiny_model};

mod common;
use common::{attune, stderr};

fn sst2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/sst2")
}

fn read_comparison(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("comparison.json")).expect("comparison.json");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn quantised_models_agree_with_f32_on_sst2_dev() {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("f32");
    let base = real_model_dir();
    let train = sst2().join("train.tsv");
    let o = attune(&[
        "train",
        "--model",
        base.to_str().unwrap(),
        "--train",
        train.to_str().unwrap(),
        "--limit",
        "1000",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-len",
        "64",
        "--lr",
        "5e-5",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dev = sst2().join("dev.tsv");
    for dtype in ["int8", "bf16"] {
        let out = work.path().join(dtype);
        let o = attune(&[
            "quantize",
            "--model",
            run.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--dtype",
            dtype,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let eval_dir = out.join("eval");
        let o = attune(&[
            "eval",
            "--model",
            out.to_str().unwrap(),
            "--data",
            dev.to_str().unwrap(),
            "--out",
            eval_dir.to_str().unwrap(),
            "--parity-texts",
            "100",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let c = read_comparison(&eval_dir);
        assert_eq!(c["format"], dtype);
        assert_eq!(c["baseline_format"], "f32");
        assert_eq!(c["texts"], 872);
        let agreement = c["agreement"].as_f64().unwrap();
        assert!(agreement >= 0.99, "{dtype}: agreement {agreement}");
        // Where the model looks must survive quantisation too: attention maps nearly identical,
        // gradients (which amplify small changes) still strongly rank-correlated.
        let raw = c["explanation_parity"]["raw"]["mean"].as_f64().unwrap();
        let saliency = c["explanation_parity"]["saliency"]["mean"]
            .as_f64()
            .unwrap();
        assert!(raw > 0.95, "{dtype}: raw attention parity {raw}");
        assert!(saliency > 0.8, "{dtype}: saliency parity {saliency}");
        // The quantised directory is a model like any other: it predicts and explains.
        let o = attune(&[
            "predict",
            "--model",
            out.to_str().unwrap(),
            "a gorgeous, witty film",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = attune(&[
            "explain",
            "--model",
            out.to_str().unwrap(),
            "--methods",
            "raw,saliency",
            "--json",
            "a gorgeous, witty film",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(line["scores"]["saliency"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn quantize_rejects_bad_requests_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("tiny");
    write_tiny_model(&model, &["a", "b"], 1, 0.02);
    let m = model.to_str().unwrap();
    let out = work.path().join("q");
    let o = attune(&[
        "quantize",
        "--model",
        m,
        "--out",
        out.to_str().unwrap(),
        "--dtype",
        "fp8",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown weight format \"fp8\""),
        "{}",
        stderr(&o)
    );
    let o = attune(&["quantize", "--model", m, "--out", m]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--out must differ"), "{}", stderr(&o));
    // Training on top of a quantised model is refused.
    let o = attune(&["quantize", "--model", m, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let data = work.path().join("d.tsv");
    std::fs::write(&data, "sentence\tlabel\nthe movie\ta\nthe plot\tb\n").unwrap();
    let o = attune(&[
        "train",
        "--model",
        out.to_str().unwrap(),
        "--train",
        data.to_str().unwrap(),
        "--out",
        work.path().join("r").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("for inference"), "{}", stderr(&o));
}

#[test]
fn prune_writes_curve_report_and_a_loadable_model() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("tiny");
    write_tiny_model(&model, &["neg", "pos"], 3, 0.3);
    let data = work.path().join("d.tsv");
    let rows: Vec<String> = (0..24)
        .map(|i| {
            let (text, label) = if i % 2 == 0 {
                ("the movie was very good", "pos")
            } else {
                ("the plot was boring and bad", "neg")
            };
            format!("{text} {i}\t{label}")
        })
        .collect();
    std::fs::write(&data, format!("sentence\tlabel\n{}\n", rows.join("\n"))).unwrap();
    let out = work.path().join("pruned");
    let o = attune(&[
        "prune",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--fraction",
        "0.25",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("prune_curve.png").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prune.json")).unwrap()).unwrap();
    // The tiny model has 2 layers × 4 heads: a quarter is 2 heads, recorded in the config.
    let pruned: usize = report["pruned_heads"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    assert_eq!(pruned, 2);
    assert_eq!(report["curve"].as_array().unwrap().len(), 10);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["pruned_heads"], report["pruned_heads"]);
    let o = attune(&[
        "predict",
        "--model",
        out.to_str().unwrap(),
        "the movie was good",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = attune(&[
        "prune",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--fraction",
        "1.5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--fraction 1.5 must be in [0, 1)"),
        "{}",
        stderr(&o)
    );
}
