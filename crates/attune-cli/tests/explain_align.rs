//! End-to-end tests of `attune explain` and `attune align` on a tiny random-weight model.

use attune_test::write_tiny_model;

mod common;
use common::{attune, attune_with_stdin, stderr};

fn tiny_model(dir: &std::path::Path) -> String {
    let model = dir.join("model");
    write_tiny_model(&model, &["neg", "pos"], 5, 0.4);
    model.to_str().unwrap().to_owned()
}

#[test]
fn explain_json_has_one_score_per_word_for_each_method() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let html = dir.path().join("page.html");
    let o = attune(&[
        "explain",
        "--model",
        &model,
        "--json",
        "--methods",
        "raw,rollout,flow,ig",
        "--html",
        html.to_str().unwrap(),
        "the movie was good",
        "awful !",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["text"], "awful !");
    assert_eq!(lines[1]["words"], serde_json::json!(["awful", "!"]));
    for line in &lines {
        let words = line["words"].as_array().unwrap().len();
        let scores = line["scores"].as_object().unwrap();
        assert_eq!(
            scores.keys().collect::<Vec<_>>(),
            ["raw", "rollout", "flow", "ig"]
        );
        assert!(scores
            .values()
            .all(|s| s.as_array().unwrap().len() == words));
        assert!(["neg", "pos"].contains(&line["label"].as_str().unwrap()));
        assert!(line["ig_completeness"]["relative_gap"].as_f64().unwrap() < 0.05);
    }
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.contains("the movie was good") && page.contains("rollout"));
}

#[test]
fn explain_reads_stdin_and_prints_a_plain_heatmap_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let o = attune_with_stdin(
        &["explain", "--model", &model, "--methods", "occlusion"],
        "great acting\n\nboring plot\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains('\x1b'), "no colour codes in a pipe");
    assert!(text.contains("great acting\n") && text.contains("boring plot\n"));
    assert_eq!(text.matches("occlusion  ").count(), 2);
}

#[test]
fn explain_and_align_reject_bad_input_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let o = attune(&["explain", "--model", &model, "--methods", "raw,lime", "fun"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown method `lime` (known: raw, rollout, flow, saliency, grad_input, ig, occlusion)"),
        "{}",
        stderr(&o)
    );
    let o = attune(&["explain", "--model", &model, "--target", "meh", "fun"]);
    assert!(
        stderr(&o).contains("--target: unknown label `meh` (labels: neg, pos)"),
        "{}",
        stderr(&o)
    );
    let human = dir.path().join("h.jsonl");
    std::fs::write(&human, "{\"tokens\":[\"a\",\"b\"],\"rationale\":[1]}\n").unwrap();
    let o = attune(&[
        "align",
        "--model",
        &model,
        "--human",
        human.to_str().unwrap(),
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("h.jsonl:1: field `rationale` has 1 values but `tokens` has 2 words"),
        "{}",
        stderr(&o)
    );
}

fn align_json(
    dir: &std::path::Path,
    model: &str,
    lines: &[&str],
    extra: &[&str],
) -> serde_json::Value {
    let human = dir.join("human.jsonl");
    std::fs::write(&human, lines.join("\n") + "\n").unwrap();
    let out = dir.join("align");
    let freq = dir.join("freq.tsv");
    let mut args = vec![
        "align",
        "--model",
        model,
        "--human",
        human.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--methods",
        "raw,rollout,saliency,occlusion",
        "--word-frequencies",
        freq.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    std::fs::write(&freq, "the\t7.7\nmovie\t5.0\nwas\t6.5\n").unwrap();
    let o = attune(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("align.png").is_file() && out.join("texts.jsonl").is_file());
    serde_json::from_str(&std::fs::read_to_string(out.join("align.json")).unwrap()).unwrap()
}

#[test]
fn align_on_gaze_reports_spearman_with_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let report = align_json(
        dir.path(),
        &model,
        &[
            r#"{"id":"s1","tokens":["the","movie","was","very","good"],"relfix":[0.1,0.3,0.1,0.2,0.3]}"#,
            r#"{"id":"s2","tokens":["this","film","is","not","fun"],"relfix":[0.15,0.3,0.05,0.2,0.3]}"#,
            r#"{"id":"s3","tokens":["awful"],"relfix":[1.0]}"#,
            r#"{"id":"s4","tokens":["the","plot","was","boring"],"relfix":[0.1,0.4,0.1,0.4]}"#,
        ],
        &[],
    );
    // The one-word sentence is skipped everywhere; for word frequency also s2, none of whose
    // words is in the frequency file (constant scores: ρ undefined).
    for (method, n) in [
        ("raw", 3),
        ("rollout", 3),
        ("saliency", 3),
        ("occlusion", 3),
        ("word_length", 3),
        ("word_frequency", 2),
    ] {
        let s = &report[method]["spearman"];
        assert_eq!(s["n"], n, "{method}");
        let (lo, mean, hi) = (
            s["ci_low"].as_f64().unwrap(),
            s["mean"].as_f64().unwrap(),
            s["ci_high"].as_f64().unwrap(),
        );
        assert!(
            lo <= mean && mean <= hi && (-1.0..=1.0).contains(&mean),
            "{method}"
        );
    }
    assert!(report["raw"]["comprehensiveness"]["n"] == 3);
    // Word length vs fixation, by hand: s1 lengths [3,5,3,4,4] vs [0.1,0.3,0.1,0.2,0.3] → ρ = 0.917;
    // s2 [4,4,2,3,3] vs [0.15,0.3,0.05,0.2,0.3] → 0.433; s4 [3,4,3,6] vs [0.1,0.4,0.1,0.4] → 0.943
    // (scipy.stats.spearmanr).
    let mean = report["word_length"]["spearman"]["mean"].as_f64().unwrap();
    assert!(
        (mean - (0.916_667 + 0.432_590 + 0.942_809) / 3.0).abs() < 1e-3,
        "{mean}"
    );
}

#[test]
fn align_on_rationales_reports_plausibility_and_faithfulness() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let report = align_json(
        dir.path(),
        &model,
        &[
            r#"{"tokens":["the","movie","was","awful"],"rationale":[0,0,0,1],"label":"neg","split":"test"}"#,
            r#"{"tokens":["great","acting","!"],"rationale":[1,0,0],"label":"pos","split":"test"}"#,
            r#"{"tokens":["the","plot"],"rationale":[0,0],"label":"pos","split":"test"}"#,
            r#"{"tokens":["fun"],"rationale":[1],"label":"pos","split":"val"}"#,
        ],
        &["--split", "test"],
    );
    for method in ["raw", "occlusion", "word_length"] {
        for metric in ["token_f1", "iou_f1", "auprc"] {
            assert_eq!(
                report[method][metric]["n"], 2,
                "{method} {metric}: posts without rationale skipped"
            );
            let v = report[method][metric]["mean"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v));
        }
    }
    assert!(report["saliency"]["sufficiency"]["n"] == 2);
    // Word length marks the longest word: "awful" (tie with "movie" broken by position: movie
    // first → miss) and "acting" (miss): token F1 = 0 for both.
    assert_eq!(report["word_length"]["token_f1"]["mean"], 0.0);
}

#[test]
fn a_base_model_is_explained_by_attention_only() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let config_path = std::path::Path::new(&model).join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let object = config.as_object_mut().unwrap();
    object.remove("id2label");
    object.remove("label2id");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let o = attune(&[
        "explain",
        "--model",
        &model,
        "--json",
        "--methods",
        "raw,rollout,flow",
        "great acting",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(line["scores"]["flow"].as_array().unwrap().len(), 2);
    let o = attune(&[
        "explain",
        "--model",
        &model,
        "--methods",
        "rollout,saliency",
        "great acting",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "a base model without a classification head; `saliency` explains a prediction"
        ),
        "{}",
        stderr(&o)
    );
}
