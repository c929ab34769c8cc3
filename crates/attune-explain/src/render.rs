//! Showing explanations: JSON records, an ANSI-coloured terminal heatmap and a self-contained
//! HTML page. Colours are scaled per method and text by the largest absolute score, because
//! methods live on unrelated scales (probabilities, gradient norms, flows); red marks evidence
//! for the explained class, blue evidence against it (only signed methods have any).
use std::fmt::Write as _;

use crate::explainer::{Explanation, Method};

/// The JSON record of one explanation: `{"text", "label", "probs", "words", "scores":
/// {"<method>": [one float per word]}}`, plus `target`, `truncated` and, for integrated
/// gradients, `ig_completeness` (`attribution_sum`, `delta`, `relative_gap`).
pub fn to_json(e: &Explanation, labels: &[String]) -> serde_json::Value {
    let probs: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .zip(&e.probs)
        .map(|(l, &p)| (l.clone(), serde_json::json!(p)))
        .collect();
    let scores: serde_json::Map<String, serde_json::Value> = e
        .scores
        .iter()
        .map(|(m, s)| (m.name().to_owned(), serde_json::json!(s)))
        .collect();
    let mut value = serde_json::json!({
        "text": e.text,
        "label": labels.get(e.predicted),
        "target": labels.get(e.target),
        "probs": probs,
        "words": e.words,
        "scores": scores,
        "truncated": e.truncated,
    });
    if let Some(c) = e.completeness {
        value["ig_completeness"] = serde_json::json!({
            "attribution_sum": c.attribution_sum,
            "delta": c.delta,
            "relative_gap": c.relative_gap(),
        });
    }
    value
}

/// Scores divided by their largest magnitude (all zeros stay zeros).
fn scaled(scores: &[f64]) -> Vec<f64> {
    let max = scores.iter().fold(0.0f64, |m, s| m.max(s.abs()));
    scores
        .iter()
        .map(|s| if max > 0.0 { s / max } else { 0.0 })
        .collect()
}

/// Background colour for a scaled score in [-1, 1]: white to red for positive, white to blue
/// for negative.
fn colour(v: f64) -> (u8, u8, u8) {
    let t = v.abs().clamp(0.0, 1.0);
    let fade = (255.0 * (1.0 - 0.75 * t)) as u8;
    if v >= 0.0 {
        (255, fade, fade)
    } else {
        (fade, fade, 255)
    }
}

/// A terminal heatmap: one line per method with each word on a coloured background. Without
/// colour (`colour = false`, for pipes and `NO_COLOR`), each word is followed by its scaled
/// score in brackets instead.
pub fn to_terminal(e: &Explanation, labels: &[String], colour_on: bool) -> String {
    let mut out = String::new();
    let label = labels.get(e.predicted).map_or("?", String::as_str);
    let _ = writeln!(
        out,
        "{}\n  → {label} ({:.3}){}",
        e.text,
        e.probs.get(e.predicted).copied().unwrap_or(f32::NAN),
        if e.target == e.predicted {
            String::new()
        } else {
            format!(
                ", explaining {}",
                labels.get(e.target).map_or("?", String::as_str)
            )
        }
    );
    let width = e.scores.keys().map(|m| m.name().len()).max().unwrap_or(0);
    for (method, scores) in &e.scores {
        let _ = write!(out, "  {:width$}  ", method.name());
        for (word, v) in e.words.iter().zip(scaled(scores)) {
            if colour_on {
                let (r, g, b) = colour(v);
                let _ = write!(out, "\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{word}\x1b[0m ");
            } else {
                let _ = write!(out, "{word}[{v:+.2}] ");
            }
        }
        out.push('\n');
    }
    if let Some(c) = e.completeness {
        let _ = writeln!(
            out,
            "  ig completeness: Σ attributions {:.4} vs Δp {:.4} (gap {:.1} %)",
            c.attribution_sum,
            c.delta,
            100.0 * c.relative_gap()
        );
    }
    if e.truncated {
        let _ = writeln!(out, "  (text truncated: later words have no scores)");
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page (no scripts, no external assets) with each text shaded per
/// method; hovering a word shows its raw score.
pub fn to_html(explanations: &[Explanation], labels: &[String], methods: &[Method]) -> String {
    let mut page = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>attune explanations</title><style>\
         body{font:15px/1.6 system-ui,sans-serif;margin:2em;max-width:70em}\
         section{border-bottom:1px solid #ddd;padding:.8em 0}\
         table{border-collapse:collapse}td{padding:.15em .6em;vertical-align:top}\
         td.m{color:#555;font:13px monospace;white-space:nowrap}\
         span.w{padding:.05em .2em;margin:0 .05em;border-radius:3px}\
         .p{color:#333}</style></head><body>\n<h1>Where the model looks</h1>\n\
         <p>Each row shades the words by one method, scaled by that row's largest magnitude: \
         red supports the explained class, blue speaks against it.</p>\n",
    );
    for e in explanations {
        let label = labels.get(e.predicted).map_or("?", String::as_str);
        let _ = write!(
            page,
            "<section><p><b>{}</b></p><p class=\"p\">prediction: <b>{}</b> ({:.3})</p><table>",
            escape(&e.text),
            escape(label),
            e.probs.get(e.predicted).copied().unwrap_or(f32::NAN)
        );
        for method in methods {
            let Some(scores) = e.scores.get(method) else {
                continue;
            };
            let _ = write!(page, "<tr><td class=\"m\">{}</td><td>", method.name());
            for ((word, v), raw) in e.words.iter().zip(scaled(scores)).zip(scores) {
                let (r, g, b) = colour(v);
                let _ = write!(
                    page,
                    "<span class=\"w\" style=\"background:rgb({r},{g},{b})\" title=\"{raw:.4}\">{}</span>",
                    escape(word)
                );
            }
            page.push_str("</td></tr>");
        }
        page.push_str("</table></section>\n");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sample() -> Explanation {
        Explanation {
            text: "not <b>good</b>".into(),
            predicted: 0,
            target: 0,
            probs: vec![0.8, 0.2],
            words: vec!["not".into(), "<b>good</b>".into()],
            word_spans: vec![(0, 3), (4, 15)],
            scores: BTreeMap::from([(Method::Occlusion, vec![0.4, -0.2])]),
            completeness: None,
            truncated: false,
            token_ids: vec![],
            token_words: vec![],
        }
    }

    #[test]
    fn json_has_the_documented_shape() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let v = to_json(&sample(), &labels);
        assert_eq!(v["label"], "neg");
        assert_eq!(v["words"][1], "<b>good</b>");
        assert_eq!(v["scores"]["occlusion"][1], -0.2);
        assert!((v["probs"]["pos"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    }

    #[test]
    fn terminal_without_colour_shows_scaled_scores() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let text = to_terminal(&sample(), &labels, false);
        assert!(
            text.contains("occlusion  not[+1.00] <b>good</b>[-0.50]"),
            "{text}"
        );
        assert!(to_terminal(&sample(), &labels, true)
            .contains("\x1b[48;2;255;63;63m\x1b[38;2;0;0;0mnot"));
    }

    #[test]
    fn html_escapes_text_and_shades_words() {
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let page = to_html(&[sample()], &labels, &[Method::Occlusion, Method::Raw]);
        assert!(page.contains("&lt;b&gt;good&lt;/b&gt;"));
        assert!(!page.contains("<b>good</b>"));
        assert!(page.contains("background:rgb(255,63,63)"));
        assert!(page.contains("background:rgb(159,159,255)"));
    }
}
