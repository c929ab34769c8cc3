//! Model-driven explanations on tiny random-weight models: each method checked against an
//! independent computation (finite differences, a separately tokenised shorter text, IG's
//! completeness axiom, explaining texts one by one).
use attune_core::{ForwardOptions, Tensor};
use attune_explain::explainer::{parse_methods, ExplainConfig, Explainer, Method};
use attune_test::{load_frozen, write_tiny_model, TOY_SENTENCES};

fn tiny(dir: &std::path::Path) -> attune_core::checkpoint::LoadedModel {
    // A large init scale makes attention and predictions far from uniform, so attributions are
    // not all close to zero.
    write_tiny_model(dir, &["neg", "pos", "neutral"], 3, 0.4);
    load_frozen(dir)
}

fn config(methods: &str) -> ExplainConfig {
    ExplainConfig {
        methods: parse_methods(methods).unwrap(),
        ..ExplainConfig::default()
    }
}

#[test]
fn every_method_gives_one_score_per_word() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let explainer = Explainer::new(&model, config("all")).unwrap();
    let out = explainer
        .explain(&["great acting !", "the movie was un ##fun"])
        .unwrap();
    assert_eq!(out[0].words, vec!["great", "acting", "!"]);
    assert_eq!(out[0].word_spans[1], (6, 12));
    for e in &out {
        assert_eq!(e.scores.len(), Method::ALL.len());
        for (method, scores) in &e.scores {
            assert_eq!(scores.len(), e.words.len(), "{method}");
            assert!(scores.iter().all(|s| s.is_finite()), "{method}");
        }
        let p: f32 = e.probs.iter().sum();
        assert!((p - 1.0).abs() < 1e-5);
    }
}

#[test]
fn batching_does_not_change_scores() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let explainer = Explainer::new(
        &model,
        config("raw,rollout,flow,saliency,grad_input,occlusion"),
    )
    .unwrap();
    let together = explainer.explain(TOY_SENTENCES).unwrap();
    for (text, joint) in TOY_SENTENCES.iter().zip(&together) {
        let alone = &explainer.explain(&[text]).unwrap()[0];
        assert_eq!(alone.text, joint.text);
        for (method, scores) in &alone.scores {
            for (a, b) in scores.iter().zip(&joint.scores[method]) {
                assert!((a - b).abs() < 1e-5, "{method} on {text:?}: {a} vs {b}");
            }
        }
    }
}

/// Gradient × input for token i is the directional derivative of p along e_i:
/// `(p(e + h·e_i) − p(e − h·e_i)) / 2h`, computed here with plain forward passes.
#[test]
fn grad_input_matches_finite_differences() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let text = "the plot was boring";
    let explainer = Explainer::new(&model, config("grad_input")).unwrap();
    let e = &explainer.explain(&[text]).unwrap()[0];
    let batch = model
        .tokenizer
        .batch(&[text], 128, model.model.device())
        .unwrap();
    let embeds = model.model.word_embeddings(&batch.input_ids).unwrap();
    let p = |scale_token: usize, step: f64| -> f64 {
        let n = batch.lengths[0];
        let mut factors = vec![1f32; n];
        factors[scale_token] += step as f32;
        let f = Tensor::from_vec(factors, (1, n, 1), embeds.device()).unwrap();
        let moved = embeds.broadcast_mul(&f).unwrap();
        let logits = model
            .model
            .forward_embeds(
                &moved,
                &batch.token_type_ids,
                &batch.attention_mask,
                &ForwardOptions::default(),
            )
            .unwrap()
            .logits;
        let probs = model
            .model
            .probabilities(&logits)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        f64::from(probs[0][e.target])
    };
    let h = 1e-2;
    // Words are single tokens here: word w is token w + 1 (after [CLS]).
    for (w, &score) in e.scores[&Method::GradInput].iter().enumerate() {
        let numeric = (p(w + 1, h) - p(w + 1, -h)) / (2.0 * h);
        assert!(
            (numeric - score).abs() < 2e-3 + 0.02 * score.abs(),
            "word {w}: analytic {score} vs finite difference {numeric}"
        );
    }
    assert!(
        e.scores[&Method::GradInput].iter().any(|s| s.abs() > 1e-3),
        "non-trivial gradients"
    );
}

/// Occlusion of a word equals p(text) − p(text written without that word), the latter
/// tokenised and run separately.
#[test]
fn occlusion_equals_running_the_shorter_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    let words = ["this", "film", "is", "not", "fun"];
    let explainer = Explainer::new(&model, config("occlusion")).unwrap();
    let e = &explainer.explain(&[&words.join(" ")]).unwrap()[0];
    for w in 0..words.len() {
        let shorter: Vec<&str> = words
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != w)
            .map(|(_, s)| *s)
            .collect();
        let p = model.classify(&[&shorter.join(" ")], 128, 1).unwrap()[0][e.target];
        let want = f64::from(e.probs[e.target]) - f64::from(p);
        assert!(
            (e.scores[&Method::Occlusion][w] - want).abs() < 1e-5,
            "word {w}"
        );
    }
}

#[test]
fn integrated_gradients_is_complete_with_50_steps() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    for baseline in ["pad", "mask", "zero"] {
        let mut cfg = config("ig");
        cfg.baseline = baseline.parse().unwrap();
        cfg.batch_size = 16; // 50 steps over 4 passes
        let explainer = Explainer::new(&model, cfg).unwrap();
        for e in explainer.explain(TOY_SENTENCES).unwrap() {
            let c = e.completeness.unwrap();
            assert!(
                c.delta.abs() > 1e-3,
                "{baseline}: the baseline must change the output"
            );
            assert!(
                c.relative_gap() < 0.05,
                "{baseline} on {:?}: Σattr {} vs Δp {}",
                e.text,
                c.attribution_sum,
                c.delta
            );
            let words: f64 = e.scores[&Method::Ig].iter().sum();
            // Special tokens keep their embeddings in the baseline: all attribution is on words.
            assert!((words - c.attribution_sum).abs() < 1e-6);
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    assert_eq!(
        parse_methods("raw,attention").unwrap_err().to_string(),
        "method: unknown method `attention` (known: raw, rollout, flow, saliency, grad_input, ig, occlusion)"
    );
    let mut cfg = config("raw");
    cfg.layer = Some(9);
    assert_eq!(
        Explainer::new(&model, cfg).unwrap_err().to_string(),
        "layer 9 is out of range (there are 2)"
    );
    let mut cfg = config("raw");
    cfg.target = Some(3);
    assert!(Explainer::new(&model, cfg).is_err());
}

/// Raw attention alone reads only its layer; with rollout it reads all layers. Both paths must
/// give the same scores, for the last layer and for a chosen one.
#[test]
fn raw_attention_is_the_same_whether_or_not_other_layers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny(dir.path());
    for layer in [None, Some(0)] {
        let run = |methods: &str| {
            let mut cfg = config(methods);
            cfg.layer = layer;
            Explainer::new(&model, cfg)
                .unwrap()
                .explain(TOY_SENTENCES)
                .unwrap()
        };
        for (alone, with) in run("raw").iter().zip(run("raw,rollout")) {
            assert_eq!(alone.scores[&Method::Raw], with.scores[&Method::Raw]);
        }
    }
}
