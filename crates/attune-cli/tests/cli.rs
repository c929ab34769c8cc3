//! End-to-end tests of the `attune` binary on a tiny random-weight model.
use std::path::{Path, PathBuf};

use attune_test::write_tiny_model;

mod common;
use common::{attune, attune_with_stdin, stderr};

/// 32 texts over the toy vocabulary whose label is decided by one sentiment word.
fn write_toy_dataset(path: &Path) {
    let pos = ["good", "great", "fun"];
    let neg = ["bad", "awful", "boring"];
    let frames = [
        "the movie was very {}",
        "this film is {}",
        "{} acting",
        "really {} plot",
        "it was so {} !",
        "the plot is {} and the acting is {}",
    ];
    let mut rows = vec!["sentence\tlabel".to_string()];
    for i in 0..32 {
        let (word, label) = if i % 2 == 0 {
            (pos[i % 3], "pos")
        } else {
            (neg[i % 3], "neg")
        };
        rows.push(format!(
            "{}\t{label}",
            frames[i % frames.len()].replace("{}", word)
        ));
    }
    std::fs::write(path, rows.join("\n") + "\n").unwrap();
}

/// A tiny random model and the toy dataset in a temporary directory.
struct Toy {
    dir: tempfile::TempDir,
    model: PathBuf,
    data: PathBuf,
}

impl Toy {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("base");
        write_tiny_model(&model, &["x", "y"], seed, 0.02);
        let data = dir.path().join("toy.tsv");
        write_toy_dataset(&data);
        Self { dir, model, data }
    }

    /// `attune train` on the toy data into `<dir>/<name>`, with `extra` arguments; asserts success.
    fn train(&self, name: &str, extra: &[&str]) -> PathBuf {
        let run = self.dir.path().join(name);
        let mut args = vec![
            "train",
            "--model",
            self.model.to_str().unwrap(),
            "--train",
            self.data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = attune(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        run
    }
}

#[test]
fn overfits_32_examples_then_eval_and_predict_agree() {
    let toy = Toy::new(1);
    let data = &toy.data;
    let run = toy.train(
        "run",
        &[
            "--dev",
            data.to_str().unwrap(),
            "--epochs",
            "40",
            "--batch-size",
            "8",
            "--lr",
            "3e-3",
            "--warmup-ratio",
            "0.05",
            "--max-len",
            "16",
            "--seed",
            "3",
        ],
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "train_config.json",
        "metrics.jsonl",
        "evals.jsonl",
        "eval.json",
        "training_curves.png",
        "confusion_matrix.png",
    ] {
        assert!(run.join(file).is_file(), "run directory lacks {file}");
    }
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        eval["accuracy"].as_f64().unwrap(),
        1.0,
        "training accuracy must reach 100 %: {eval}"
    );
    let steps = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(steps.lines().next().unwrap()).unwrap();
    for key in ["step", "loss", "lr", "sentences_per_s", "grad_norm"] {
        assert!(first.get(key).is_some(), "metrics.jsonl lacks {key}");
    }
    assert_eq!(steps.lines().count(), 40 * 4);

    let o = attune(&[
        "eval",
        "--model",
        run.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("accuracy 1.0000"));
    assert!(run.join("eval-toy/eval.json").is_file());

    // Two training sentences (rows 1 and 2): the model fits its training set, so their labels
    // are known; an unseen sentence's would not be.
    let o = attune(&[
        "predict",
        "--model",
        run.to_str().unwrap(),
        "the movie was very good",
        "this film is awful",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "the movie was very good");
    assert_eq!(lines[0]["label"], "pos");
    assert_eq!(lines[1]["label"], "neg");
    let p = &lines[0]["probs"];
    let total = p["pos"].as_f64().unwrap() + p["neg"].as_f64().unwrap();
    assert!((total - 1.0).abs() < 1e-5);
    assert!((lines[0]["score"].as_f64().unwrap() - p["pos"].as_f64().unwrap()).abs() < 1e-9);

    // stdin, in order, across chunk boundaries.
    let texts: Vec<String> = (0..7)
        .map(|i| {
            if i % 2 == 0 {
                format!("{} good", "the ".repeat(i))
            } else {
                "boring".into()
            }
        })
        .collect();
    let o = attune_with_stdin(
        &[
            "predict",
            "--model",
            run.to_str().unwrap(),
            "--chunk",
            "3",
            "--batch-size",
            "2",
        ],
        &(texts.join("\n") + "\n"),
    );
    let got: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        got.iter()
            .map(|v| v["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        texts
    );
}

#[test]
fn same_seed_gives_same_metrics() {
    let toy = Toy::new(2);
    let run_once = |name: &str, seed: &str| -> String {
        let run = toy.train(
            name,
            &[
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--lr",
                "1e-3",
                "--seed",
                seed,
                "--dev-fraction",
                "0.25",
            ],
        );
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {}", v["loss"], v["grad_norm"])
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let a = run_once("a", "5");
    let b = run_once("b", "5");
    let c = run_once("c", "6");
    assert_eq!(a, b, "same seed, different losses");
    assert_ne!(a, c, "different seeds should differ");
}

#[test]
fn lora_run_saves_peft_layout_and_predicts() {
    let toy = Toy::new(4);
    let data = toy.data.to_str().unwrap();
    let run = toy.train(
        "run",
        &[
            "--dev", data, "--lora", "--lora-r", "4", "--epochs", "2", "--lr", "5e-3",
        ],
    );
    assert!(
        run.join("adapter_config.json").is_file()
            && run.join("adapter_model.safetensors").is_file()
    );
    assert!(!run.join("model.safetensors").exists());
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["target_modules"], serde_json::json!(["query", "value"]));
    let o = attune(&["predict", "--model", run.to_str().unwrap(), "fun"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_inputs_are_one_line_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("base");
    write_tiny_model(&model, &["x", "y"], 5, 0.02);
    let m = model.to_str().unwrap();
    let out = dir.path().join("run");
    let o = out.to_str().unwrap();
    let check = |args: &[&str], expected: &str| {
        let r = attune(args);
        assert!(!r.status.success(), "{args:?} should fail");
        let err = stderr(&r);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one-line error expected: {err}"
        );
    };
    let write = |name: &str, content: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    };
    let missing = dir.path().join("nope.tsv");
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            missing.to_str().unwrap(),
            "--out",
            o,
        ],
        "nope.tsv",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &write("empty.tsv", b""),
            "--out",
            o,
        ],
        "empty.tsv: file is empty",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &write("cols.csv", b"body,label\nx,1\n"),
            "--out",
            o,
        ],
        "pass --text-column",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &write("ragged.csv", b"text,label\na,1\nb,0,z\n"),
            "--out",
            o,
        ],
        "ragged.csv:3: row has 3 fields",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &write("utf.tsv", b"sentence\tlabel\nfine\t1\n\xff\xfe\t0\n"),
            "--out",
            o,
        ],
        "utf.tsv:3: invalid UTF-8",
    );
    let train = write(
        "ok.tsv",
        b"sentence\tlabel\ngood\tpos\nbad\tneg\nfun\tpos\nawful\tneg\n",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &train,
            "--dev",
            &write("dev.tsv", b"sentence\tlabel\ngood\tmeh\n"),
            "--out",
            o,
        ],
        "dev.tsv:2: unknown label \"meh\"",
    );
    check(
        &[
            "train",
            "--model",
            m,
            "--train",
            &train,
            "--text-column",
            "body",
            "--out",
            o,
        ],
        "no column \"body\"",
    );
    let empty_dir = dir.path().join("empty_model");
    std::fs::create_dir(&empty_dir).unwrap();
    std::fs::copy(model.join("config.json"), empty_dir.join("config.json")).unwrap();
    check(
        &[
            "train",
            "--model",
            empty_dir.to_str().unwrap(),
            "--train",
            &train,
            "--out",
            o,
        ],
        "no model.safetensors",
    );
    let corrupt = dir.path().join("corrupt_model");
    std::fs::create_dir(&corrupt).unwrap();
    for f in ["config.json", "vocab.txt"] {
        std::fs::copy(model.join(f), corrupt.join(f)).unwrap();
    }
    std::fs::write(corrupt.join("model.safetensors"), b"garbage").unwrap();
    check(
        &[
            "train",
            "--model",
            corrupt.to_str().unwrap(),
            "--train",
            &train,
            "--out",
            o,
        ],
        "cannot read safetensors",
    );
    let bad_cfg = dir.path().join("bad_cfg");
    std::fs::create_dir(&bad_cfg).unwrap();
    std::fs::write(bad_cfg.join("config.json"), br#"{"vocab_size": 30, "hidden_size": 10, "num_hidden_layers": 1, "num_attention_heads": 3, "intermediate_size": 8}"#).unwrap();
    check(
        &[
            "train",
            "--model",
            bad_cfg.to_str().unwrap(),
            "--train",
            &train,
            "--out",
            o,
        ],
        "not divisible by num_attention_heads 3",
    );
    check(
        &[
            "train", "--model", m, "--train", &train, "--out", o, "--epochs", "0",
        ],
        "--epochs must be at least 1",
    );
    check(
        &[
            "predict",
            "--model",
            dir.path().join("missing").to_str().unwrap(),
            "hello",
        ],
        "does not exist",
    );
}

#[test]
fn multi_label_train_eval_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("base");
    write_tiny_model(&model, &["x", "y"], 6, 0.2);
    let data = dir.path().join("multi.jsonl");
    std::fs::write(
        &data,
        "{\"text\": \"great acting !\", \"label\": [\"acting\", \"positive\"]}\n\
         {\"text\": \"boring plot\", \"label\": [\"plot\"]}\n\
         {\"text\": \"fun plot and great acting\", \"label\": \"acting|plot|positive\"}\n\
         {\"text\": \"the movie was very bad\", \"label\": []}\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let (m, d, r) = (
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        run.to_str().unwrap(),
    );
    let o = attune(&[
        "train",
        "--model",
        m,
        "--train",
        d,
        "--dev",
        d,
        "--out",
        r,
        "--multi-label",
        "--epochs",
        "150",
        "--batch-size",
        "4",
        "--lr",
        "5e-3",
        "--warmup-ratio",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = attune(&["eval", "--model", r, "--data", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("exact-match accuracy 1.0000") && out.contains("micro-F1"),
        "{out}"
    );
    let o = attune(&[
        "predict",
        "--model",
        r,
        "fun plot and great acting",
        "the movie was very bad",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["labels"],
        serde_json::json!(["acting", "plot", "positive"])
    );
    assert_eq!(lines[1]["labels"], serde_json::json!([]));
    let p = &lines[0]["probs"];
    assert!(
        p["plot"].as_f64().unwrap() + p["acting"].as_f64().unwrap() > 1.0,
        "sigmoid, not softmax: {p}"
    );
}
