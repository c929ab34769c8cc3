//! The training loop on a tiny random model: early stopping, best-checkpoint keeping, class
//! weights.
use attune_core::checkpoint::{self, LoadOptions, TrainMode};
use attune_core::ForwardOptions;
use attune_test::write_tiny_model;
use attune_train::data::Rationale;
use attune_train::trainer::{
    attention_loss, attention_target, train, ClassWeights, Gold, LabelledTexts, Silent, TrainConfig,
};

fn toy(n: usize) -> LabelledTexts {
    let pos = ["the movie was very good", "great acting !", "fun plot"];
    let neg = ["the movie was very bad", "awful acting !", "boring plot"];
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let (text, label) = if i % 2 == 0 {
            (pos[i % 3], 1)
        } else {
            (neg[i % 3], 0)
        };
        texts.push(text.to_string());
        labels.push(label);
    }
    LabelledTexts {
        texts,
        gold: Gold::Single(labels),
        rationales: Vec::new(),
    }
}

fn load(dir: &std::path::Path) -> checkpoint::LoadedModel {
    let opts = LoadOptions {
        labels: Some(vec!["neg".into(), "pos".into()]),
        mode: TrainMode::Full,
        seed: 1,
        ..Default::default()
    };
    checkpoint::load(dir, &opts).unwrap()
}

#[test]
fn early_stopping_ends_the_run_when_dev_stops_improving() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 1, 0.02);
    let model = load(&dir.path().join("base"));
    // A learning rate too small to change any prediction: dev never improves after the first
    // evaluation, so patience 2 stops the run after the third.
    let cfg = TrainConfig {
        epochs: 50,
        batch_size: 4,
        lr: 1e-12,
        eval_every: Some(1),
        patience: Some(2),
        ..Default::default()
    };
    let run = dir.path().join("run");
    let summary = train(
        &model,
        &toy(8),
        &toy(8),
        &cfg,
        &run,
        serde_json::json!({}),
        &mut Silent,
    )
    .unwrap();
    assert!(summary.stopped_early);
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.best_step, 1, "the first evaluation is the kept one");
    let evals = std::fs::read_to_string(run.join("evals.jsonl")).unwrap();
    let kept: Vec<bool> = evals
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["best"]
                .as_bool()
                .unwrap()
        })
        .collect();
    assert_eq!(kept, vec![true, false, false]);
}

#[test]
fn balanced_class_weights_train_and_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 2, 0.02);
    let model = load(&dir.path().join("base"));
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 4,
        lr: 1e-3,
        class_weights: ClassWeights::Balanced,
        ..Default::default()
    };
    let run = dir.path().join("run");
    train(
        &model,
        &toy(12),
        &toy(4),
        &cfg,
        &run,
        serde_json::json!({"note": "x"}),
        &mut Silent,
    )
    .unwrap();
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("train_config.json")).unwrap())
            .unwrap();
    assert_eq!(recorded["class_weights"], "balanced");
    assert_eq!(recorded["labels"], serde_json::json!(["neg", "pos"]));
    assert_eq!(recorded["note"], "x");
}

#[test]
fn invalid_settings_are_rejected_before_work_starts() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 3, 0.02);
    let model = load(&dir.path().join("base"));
    let cfg = TrainConfig {
        warmup_ratio: 1.5,
        ..Default::default()
    };
    let err = train(
        &model,
        &toy(4),
        &toy(4),
        &cfg,
        &dir.path().join("run"),
        serde_json::json!({}),
        &mut Silent,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "--warmup-ratio must be in [0, 1)");
    assert!(
        !dir.path().join("run").exists(),
        "nothing is written for a rejected run"
    );
}

#[test]
fn multi_label_training_fits_label_sets() {
    let dir = tempfile::tempdir().unwrap();
    // Weights at std 0.2: at BERT's 0.02 the tiny encoder's pooled states start nearly equal
    // and 150 steps do not separate four texts.
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 4, 0.2);
    let opts = LoadOptions {
        labels: Some(vec!["acting".into(), "plot".into(), "positive".into()]),
        mode: TrainMode::Full,
        problem_type: Some(attune_core::ProblemType::MultiLabelClassification),
        seed: 2,
        ..Default::default()
    };
    let model = checkpoint::load(&dir.path().join("base"), &opts).unwrap();
    let texts = [
        "great acting !",
        "boring plot",
        "fun plot and great acting",
        "the movie was very bad",
    ];
    let sets = vec![vec![0, 2], vec![1], vec![0, 1, 2], vec![]];
    let data = LabelledTexts {
        texts: texts.iter().map(|t| t.to_string()).collect(),
        gold: Gold::Multi(sets),
        rationales: Vec::new(),
    };
    let cfg = TrainConfig {
        epochs: 150,
        batch_size: 4,
        lr: 5e-3,
        warmup_ratio: 0.0,
        ..Default::default()
    };
    let run = dir.path().join("run");
    let summary = train(
        &model,
        &data,
        &data,
        &cfg,
        &run,
        serde_json::json!({}),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(
        summary.best.accuracy, 1.0,
        "every label set reproduced: {:?}",
        summary.best
    );
    assert!(summary.best.micro_f1.is_some());
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["problem_type"], "multi_label_classification");
    assert!(
        !run.join("confusion_matrix.png").exists(),
        "no confusion matrix for multi-label"
    );
}

/// Word spans of a space-joined text, with 1.0 on the words listed in `marked`.
fn rationale(text: &str, marked: &[&str]) -> Rationale {
    let mut spans = Vec::new();
    let mut values = Vec::new();
    let mut pos = 0;
    for w in text.split(' ') {
        spans.push((pos, pos + w.len()));
        values.push(if marked.contains(&w) { 1.0 } else { 0.0 });
        pos += w.len() + 1;
    }
    Rationale { spans, values }
}

#[test]
fn attention_target_spreads_a_word_value_over_its_pieces() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 1, 0.02);
    let model = load(&dir.path().join("base"));
    // [CLS] the plot was un ##fun [SEP]: "unfun" is one word of two pieces.
    let text = "the plot was unfun";
    let enc = &model.tokenizer.encode(&[text], 32).unwrap()[0];
    assert_eq!(enc.len(), 7);
    let target = attention_target(enc, &rationale(text, &["unfun"]), 10.0);
    let e10 = 10f64.exp();
    let (hot, cold) = (e10 / (2.0 * e10 + 5.0), 1.0 / (2.0 * e10 + 5.0));
    let want = [cold, cold, cold, cold, hot, hot, cold];
    for (t, w) in target.iter().zip(want) {
        assert!((f64::from(*t) - w).abs() < 1e-6, "{target:?}");
    }
}

/// With the auxiliary loss on, the last layer's CLS attention ends much closer to the human
/// rationale than after the same training without it.
#[test]
fn attention_supervision_pulls_attention_toward_rationales() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 1, 0.02);
    let mut data = toy(24);
    data.rationales = data
        .texts
        .iter()
        .map(|t| {
            let sentiment = ["good", "great", "fun", "bad", "awful", "boring"];
            let marked: Vec<&str> = t.split(' ').filter(|w| sentiment.contains(w)).collect();
            Some(rationale(t, &marked))
        })
        .collect();
    let attention_ce = |weight: f64| -> f64 {
        let model = load(&dir.path().join("base"));
        let cfg = TrainConfig {
            epochs: 30,
            batch_size: 8,
            lr: 3e-3,
            warmup_ratio: 0.0,
            attention_loss_weight: weight,
            ..Default::default()
        };
        train(
            &model,
            &data,
            &toy(8),
            &cfg,
            &dir.path().join(format!("run-{weight}")),
            serde_json::json!({}),
            &mut Silent,
        )
        .unwrap();
        let refs: Vec<&str> = data.texts.iter().map(String::as_str).collect();
        let batch = model
            .tokenizer
            .batch(&refs, 32, model.model.device())
            .unwrap();
        let out = model
            .model
            .forward(&batch, &ForwardOptions::with_attentions())
            .unwrap();
        let seq = batch.lengths.iter().copied().max().unwrap();
        let mut targets = vec![0f32; refs.len() * seq];
        for (row, (enc, r)) in batch.encodings.iter().zip(&data.rationales).enumerate() {
            let t = attention_target(enc, r.as_ref().unwrap(), 10.0);
            targets[row * seq..row * seq + t.len()].copy_from_slice(&t);
        }
        let targets =
            attune_core::Tensor::from_vec(targets, (refs.len(), seq), model.model.device())
                .unwrap();
        attention_loss(out.attentions.last().unwrap(), &targets, refs.len())
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .into()
    };
    let (without, with) = (attention_ce(0.0), attention_ce(5.0));
    assert!(
        with < 0.5 * without,
        "attention cross-entropy with supervision {with} vs without {without}"
    );
}

#[test]
fn attention_supervision_needs_rationales() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(&dir.path().join("base"), &["a", "b"], 1, 0.02);
    let model = load(&dir.path().join("base"));
    let cfg = TrainConfig {
        attention_loss_weight: 1.0,
        ..Default::default()
    };
    let e = train(
        &model,
        &toy(8),
        &toy(8),
        &cfg,
        &dir.path().join("r"),
        serde_json::json!({}),
        &mut Silent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--attention-loss-weight needs human rationales"),
        "{e}"
    );
}
