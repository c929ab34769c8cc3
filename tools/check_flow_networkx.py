"""Cross-checks `attune explain --methods rollout,flow` against Abnar & Zuidema's construction
computed with PyTorch attentions and networkx's maximum_flow (their reference code uses networkx).

    python3 tools/check_flow_networkx.py runs/sst2 "the plot is predictable and the acting is wooden"

Prints the largest difference per method (word level: token scores summed per word).
"""
import json
import subprocess
import sys

import networkx as nx
import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model_dir, text = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
model.eval()
enc = tok(text, return_tensors="pt")
with torch.no_grad():
    att = model(**enc, output_attentions=True).attentions
mats = []
for a in att:
    m = a[0].mean(0).double().numpy()
    m = 0.5 * m + 0.5 * np.eye(m.shape[0])
    mats.append(m / m.sum(-1, keepdims=True))
n = mats[0].shape[0]
rollout = np.eye(n)
for m in mats:
    rollout = m @ rollout
g = nx.DiGraph()
for l, m in enumerate(mats):
    for i in range(n):
        for j in range(n):
            if m[i, j] > 0:
                g.add_edge((l, j), (l + 1, i), capacity=float(m[i, j]))
flow = [nx.maximum_flow_value(g, (0, j), (len(mats), 0)) for j in range(n)]
word_ids = enc.word_ids()
words = max(w for w in word_ids if w is not None) + 1


def per_word(scores):
    out = [0.0] * words
    for s, w in zip(scores, word_ids):
        if w is not None:
            out[w] += s
    return out


ours = json.loads(subprocess.run(
    ["./target/release/attune", "explain", "--model", model_dir, "--json", "--methods", "rollout,flow", text],
    check=True, capture_output=True, text=True).stdout)
for name, ref in [("rollout", per_word(rollout[0])), ("flow", per_word(flow))]:
    diff = max(abs(a - b) for a, b in zip(ours["scores"][name], ref))
    print(f"{name}: max |attune - reference| = {diff:.2e}  reference {np.round(ref, 3).tolist()}")
