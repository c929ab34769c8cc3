#!/usr/bin/env python3
"""Checks that an attune run directory loads in PyTorch and gives attune's outputs.

Full fine-tunes load with `AutoModelForSequenceClassification.from_pretrained(RUN_DIR)`; LoRA
runs with PEFT (`PeftModel.from_pretrained(base, RUN_DIR)`, base from adapter_config.json).
The script runs `attune predict` on the same sentences and compares probabilities.

    python3 tools/check_hf_load.py runs/sst2-full [--attune target/release/attune]

Exits non-zero when any probability differs by more than 1e-4.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

SENTENCES = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés",
             "it 's not a bad film , just a forgettable one", "😍 loved every minute", ""]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--attune", default=str(Path(__file__).resolve().parent.parent / "target/release/attune"))
    args = p.parse_args()
    run = Path(args.run_dir)
    max_len = json.loads((run / "train_config.json").read_text()).get("max_len", 128) \
        if (run / "train_config.json").exists() else 128
    tok = AutoTokenizer.from_pretrained(run)
    if (run / "adapter_config.json").exists():
        from peft import PeftModel
        cfg = json.loads((run / "adapter_config.json").read_text())
        labels = json.loads((run / "config.json").read_text())["id2label"]
        base = AutoModelForSequenceClassification.from_pretrained(cfg["base_model_name_or_path"], num_labels=len(labels))
        model = PeftModel.from_pretrained(base, run).merge_and_unload()
        id2label = {int(k): v for k, v in labels.items()}
    else:
        model = AutoModelForSequenceClassification.from_pretrained(run)
        id2label = model.config.id2label
    model.eval()
    with torch.no_grad():
        enc = tok(SENTENCES, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        torch_probs = model(**enc).logits.softmax(-1).tolist()
    out = subprocess.run([args.attune, "predict", "--model", str(run), *SENTENCES],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    worst = 0.0
    for line, tp in zip(out, torch_probs):
        ours = json.loads(line)["probs"]
        for i, p_ in enumerate(tp):
            worst = max(worst, abs(ours[id2label[i]] - p_))
    print(json.dumps({"run_dir": str(run), "sentences": len(SENTENCES), "max_abs_prob_diff": worst}))
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
