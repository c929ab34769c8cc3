#!/usr/bin/env python3
"""PyTorch reference for attune's SST-2 quality bar: the same recipe as `attune train`.

First N rows of ../shared/data/sst2/train.tsv, evaluated on dev.tsv; AdamW (weight decay 0.01,
none on bias/LayerNorm), linear warmup then decay, grad-norm clip 1.0, dynamic padding,
BertForSequenceClassification on all-MiniLM-L6-v2; `--lora` trains PEFT LoRA adapters instead.

    python3 tools/reference_train.py                      # full: 8000 rows, 1 epoch, lr 2e-5
    python3 tools/reference_train.py --lora --lr 5e-4     # LoRA r=8 on query,value

Prints one JSON line: accuracy, macro-F1, wall seconds, sentences/s. Threads: --threads (2).
"""
import argparse
import csv
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent


def read_tsv(path, limit=None):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        for row in reader:
            texts.append(row[0].rstrip())
            labels.append(int(row[1]))
            if limit and len(texts) >= limit:
                break
    return texts, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(ROOT / "models/all-MiniLM-L6-v2"))
    p.add_argument("--data", default=str(ROOT / "../shared/data/sst2"))
    p.add_argument("--limit", type=int, default=8000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lora", action="store_true")
    p.add_argument("--lora-r", type=int, default=8)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.time()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2)
    if args.lora:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=args.lora_r, lora_alpha=2 * args.lora_r,
                                                 lora_dropout=0.1, target_modules=["query", "value"]))
    train_x, train_y = read_tsv(Path(args.data) / "train.tsv", args.limit)
    dev_x, dev_y = read_tsv(Path(args.data) / "dev.tsv")

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = (len(train_x) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    warmup = int(args.warmup_ratio * total + 0.999999)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))

    train_seconds = 0.0
    for _ in range(args.epochs):
        order = list(range(len(train_x)))
        random.shuffle(order)
        model.train()
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            t0 = time.time()
            enc = tok([train_x[j] for j in idx], truncation=True, max_length=args.max_len,
                      padding=True, return_tensors="pt")
            out = model(**enc, labels=torch.tensor([train_y[j] for j in idx]))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            train_seconds += time.time() - t0

    model.eval()
    correct, tp, fp, fn = 0, [0, 0], [0, 0], [0, 0]
    with torch.no_grad():
        for i in range(0, len(dev_x), 64):
            enc = tok(dev_x[i:i + 64], truncation=True, max_length=args.max_len, padding=True, return_tensors="pt")
            pred = model(**enc).logits.argmax(-1).tolist()
            for p_, g in zip(pred, dev_y[i:i + 64]):
                correct += p_ == g
                if p_ == g:
                    tp[g] += 1
                else:
                    fp[p_] += 1
                    fn[g] += 1
    f1 = [2 * tp[c] / max(1, 2 * tp[c] + fp[c] + fn[c]) for c in (0, 1)]
    print(json.dumps({"recipe": "lora" if args.lora else "full", "accuracy": correct / len(dev_x),
                      "macro_f1": sum(f1) / 2, "wall_seconds": time.time() - started,
                      "train_sentences_per_s": len(train_x) * args.epochs / train_seconds,
                      "torch": torch.__version__, "threads": args.threads}))


if __name__ == "__main__":
    main()
