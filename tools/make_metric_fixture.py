"""Reference values for attune-explain's alignment metrics, computed independently.

Spearman rho by scipy.stats.spearmanr (average ranks for ties), AUPRC by
sklearn.metrics.average_precision_score, token F1 by sklearn.metrics.f1_score on the top-k
mask, IOU F1 by a direct transcription of ERASER's span matching (DeYoung et al. 2020,
`rationale_benchmark/metrics.py`: a predicted span is a hit when its best IOU with a gold span
is >= 0.5; precision = hits / predicted spans, recall = hits / gold spans).

Run once; the output is committed:
    python3 tools/make_metric_fixture.py > crates/attune-explain/tests/fixtures/metrics.json
"""
import json

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, f1_score


def top_k_mask(scores, k):
    # Stable order: among equal scores the earlier token wins (as attune does).
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    mask = [0] * len(scores)
    for i in order[:k]:
        mask[i] = 1
    return mask


def spans(mask):
    out, start = [], None
    for i, v in enumerate(list(mask) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def iou_f1(pred_mask, gold_mask, threshold=0.5):
    pred, gold = spans(pred_mask), spans(gold_mask)
    hits = 0
    for ps, pe in pred:
        best = 0.0
        for gs, ge in gold:
            inter = max(0, min(pe, ge) - max(ps, gs))
            union = max(pe, ge) - min(ps, gs)
            best = max(best, inter / union)
        hits += best >= threshold
    p = hits / len(pred) if pred else 0.0
    r = hits / len(gold) if gold else 0.0
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


rng = np.random.default_rng(7)
cases = []
for case in range(40):
    n = int(rng.integers(4, 30))
    scores = rng.normal(size=n)
    if case % 4 == 0:  # ties
        scores = np.round(scores, 0)
    human = rng.random(n)
    if case % 5 == 0:
        human = np.round(human * 3) / 3
    rationale = (rng.random(n) < 0.3).astype(int)
    if rationale.sum() == 0:
        rationale[int(rng.integers(0, n))] = 1
    k = int(rationale.sum())
    pred = top_k_mask(list(scores), k)
    rho = spearmanr(scores, human).statistic
    cases.append({
        "scores": [float(x) for x in scores],
        "human": [float(x) for x in human],
        "rationale": [int(x) for x in rationale],
        "spearman": None if np.isnan(rho) else float(rho),
        "auprc": float(average_precision_score(rationale, scores)),
        "token_f1": float(f1_score(rationale, pred)),
        "iou_f1": iou_f1(pred, rationale),
    })
print(json.dumps({"source": "tools/make_metric_fixture.py", "cases": cases}))
