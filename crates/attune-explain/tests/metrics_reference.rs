//! Alignment metrics against values computed independently by scipy and scikit-learn
//! (`tools/make_metric_fixture.py`, committed output in `tests/fixtures/metrics.json`).
use attune_explain::metrics::{auprc, iou_f1, spearman, token_f1};

/// Both sides compute in f64 from the same inputs; differences are summation order only.
const TOLERANCE: f64 = 1e-9;

#[test]
fn metrics_match_scipy_and_sklearn() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics.json"),
    )
    .unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    for (i, case) in cases.iter().enumerate() {
        let scores = floats(&case["scores"]);
        let human = floats(&case["human"]);
        let rationale: Vec<bool> = case["rationale"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap() == 1)
            .collect();
        let rho = spearman(&scores, &human).unwrap();
        match case["spearman"].as_f64() {
            Some(want) => assert!(
                (rho.unwrap() - want).abs() < TOLERANCE,
                "case {i}: spearman"
            ),
            None => assert_eq!(rho, None, "case {i}: spearman undefined"),
        }
        for (name, got) in [
            ("auprc", auprc(&scores, &rationale).unwrap()),
            ("token_f1", token_f1(&scores, &rationale).unwrap()),
            ("iou_f1", iou_f1(&scores, &rationale).unwrap()),
        ] {
            let want = case[name].as_f64().unwrap();
            assert!(
                (got - want).abs() < TOLERANCE,
                "case {i}: {name} {got} vs {want}"
            );
        }
    }
}
