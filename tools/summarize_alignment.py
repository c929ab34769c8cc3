"""Markdown tables from `attune align` / `attune eval` outputs, for docs/alignment.md.

    python3 tools/summarize_alignment.py gaze runs/align/zuco-base runs/align/zuco-sst2 ...
    python3 tools/summarize_alignment.py hatexplain runs/hatexplain
"""
import glob
import json
import os
import re
import statistics
import sys


def cell(m):
    return f"{m['mean']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"


def gaze(dirs):
    print("| run | method | ρ mean [95 % CI] | sd | n |")
    print("|---|---|---|---|---|")
    for d in dirs:
        report = json.load(open(os.path.join(d, "align.json")))
        for method, metrics in report.items():
            s = metrics.get("spearman")
            if s:
                print(f"| {os.path.basename(d)} | {method} | {cell(s)} | {s['sd']:.2f} | {s['n']} |")


def hatexplain(root):
    rows = {}
    for run in sorted(glob.glob(os.path.join(root, "l*-s*"))):
        m = re.match(r"l([\d.]+)-s(\d+)", os.path.basename(run))
        if not m or not os.path.isfile(os.path.join(run, "align", "align.json")):
            continue
        lam = float(m.group(1))
        ev = json.load(open(os.path.join(run, "test_eval", "eval.json")))
        al = json.load(open(os.path.join(run, "align", "align.json")))
        rows.setdefault(lam, []).append((ev, al))
    methods = ["raw", "rollout", "saliency"]
    print("| λ | seeds | accuracy | macro-F1 | " + " | ".join(
        f"{m} token-F1 | {m} IOU-F1 | {m} AUPRC" for m in methods) + " | raw comp. ↑ | raw suff. ↓ | saliency comp. ↑ | saliency suff. ↓ |")
    print("|---" * (4 + 3 * len(methods) + 4) + "|")
    for lam in sorted(rows):
        runs = rows[lam]
        def mean(f):
            v = [f(ev, al) for ev, al in runs]
            return f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
        cells = [mean(lambda ev, al: ev["accuracy"]), mean(lambda ev, al: ev["macro_f1"])]
        for m in methods:
            for metric in ["token_f1", "iou_f1", "auprc"]:
                cells.append(mean(lambda ev, al, m=m, k=metric: al[m][k]["mean"]))
        for m in ["raw", "saliency"]:
            cells.append(mean(lambda ev, al, m=m: al[m]["comprehensiveness"]["mean"]))
            cells.append(mean(lambda ev, al, m=m: al[m]["sufficiency"]["mean"]))
        print(f"| {lam:g} | {len(runs)} | " + " | ".join(cells) + " |")


if sys.argv[1] == "gaze":
    gaze(sys.argv[2:])
else:
    hatexplain(sys.argv[2])
