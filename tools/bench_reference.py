#!/usr/bin/env python3
"""PyTorch side of `attune bench --reference`: the same inputs and shapes as attune's
benchmark (SST-2 dev sentences padded to a fixed length), the same thread count, warm-up, and
the median of N repeats. Prints a JSON list of {task, batch, seq, sentences_per_s}.

Tasks: infer, infer+attentions (eager attention, output_attentions=True), train (full AdamW
step with clipping), train-lora (PEFT LoRA r=8 on query,value).
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoTokenizer, BertForSequenceClassification


def sentences(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for line in f if line.split("\t")[0].strip()]


def batch_of(tok, texts, b, s, offset):
    chosen = [texts[(offset + i) % len(texts)] for i in range(b)]
    return tok(chosen, truncation=True, max_length=s, padding="max_length", return_tensors="pt")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--infer", default="32x128,32x64")
    p.add_argument("--train", default="16x64")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(args.model)
    texts = sentences(args.data)
    results = []
    model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2, attn_implementation="eager").eval()
    for shape in args.infer.split(","):
        b, s = map(int, shape.split("x"))
        batches = [batch_of(tok, texts, b, s, i * b) for i in range(4)]
        for task, attn in (("infer", False), ("infer+attentions", True)):
            with torch.inference_mode():
                model(**batches[0], output_attentions=attn)
                runs = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    for enc in batches:
                        model(**enc, output_attentions=attn)
                    runs.append(len(batches) * b / (time.perf_counter() - t0))
            results.append({"task": task, "batch": b, "seq": s, "sentences_per_s": statistics.median(runs)})
    b, s = map(int, args.train.split("x"))
    for task in ("train", "train-lora"):
        model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).train()
        if task == "train-lora":
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                                     target_modules=["query", "value"]))
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5, weight_decay=0.01)
        labels = torch.tensor([i % 2 for i in range(b)])

        def step(offset):
            enc = batch_of(tok, texts, b, s, offset)
            loss = model(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()

        step(0)
        runs = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            for k in range(3):
                step((r * 3 + k + 1) * b)
            runs.append(3 * b / (time.perf_counter() - t0))
        results.append({"task": task, "batch": b, "seq": s, "sentences_per_s": statistics.median(runs)})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
