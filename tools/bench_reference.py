#!/usr/bin/env python3
"""Reference side of `attune bench --reference`: PyTorch and ONNX Runtime on the same inputs and
shapes as attune's benchmark (SST-2 dev sentences padded to a fixed length), the same thread
count, a warm-up, and the median of N repeats. Prints a JSON list of
{engine, task, batch, seq, sentences_per_s, peak_rss_mb}.

Engines (each runs in its own child process, so its peak RSS is its own):
  torch       PyTorch eager f32 (BertForSequenceClassification, eager attention)
  torch-int8  PyTorch dynamic int8 (torch.ao.quantization.quantize_dynamic on nn.Linear)
  ort         ONNX Runtime f32 (model exported with torch.onnx.export, all graph optimisations)
  ort-int8    ONNX Runtime dynamic int8 (onnxruntime.quantization.quantize_dynamic, QInt8)

Tasks: infer and infer+attentions at each fixed shape (attentions: PyTorch only; the exported
ONNX graph has no attention outputs), traffic (every dev sentence at its real length, batches of
32 in file order with dynamic padding, as a HF pipeline runs them), and for torch also train
(full AdamW step with clipping) and train-lora (PEFT LoRA r=8 on query,value).

Set up once with `pip install torch transformers peft onnxruntime onnx`; attune's build and tests
never need it.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ENGINES = ["torch", "torch-int8", "ort", "ort-int8"]


def sentences(path):
    with open(path, encoding="utf-8") as f:
        next(f)
        return [line.split("\t")[0] for line in f if line.split("\t")[0].strip()]


def fixed_batch(tok, texts, b, s, offset, tensors):
    chosen = [texts[(offset + i) % len(texts)] for i in range(b)]
    return tok(chosen, truncation=True, max_length=s, padding="max_length", return_tensors=tensors)


class OnnxTokenizer:
    """The `tokenizers` library alone (no transformers, no torch), so an ONNX Runtime process
    holds only what serving with ONNX Runtime needs and its peak RSS is comparable."""

    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tk = Tokenizer.from_file(path)

    def __call__(self, texts, max_len, pad_to):
        import numpy as np
        self.tk.enable_truncation(max_length=max_len)
        if pad_to:
            self.tk.enable_padding(length=pad_to)
        else:
            self.tk.enable_padding()
        enc = self.tk.encode_batch(texts)
        arr = lambda field: np.array([getattr(e, field) for e in enc], dtype=np.int64)
        return {"input_ids": arr("ids"), "attention_mask": arr("attention_mask"),
                "token_type_ids": arr("type_ids")}


def timed(run, items, repeats):
    run()  # warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        rates.append(items / (time.perf_counter() - t0))
    return statistics.median(rates)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def export_onnx(model_dir, cache_dir, int8):
    """Exports the classifier once into cache_dir (and its dynamic-int8 version). torch is only
    imported to export, so a cached run measures ONNX Runtime's own memory."""
    os.makedirs(cache_dir, exist_ok=True)
    f32_path = os.path.join(cache_dir, "model.onnx")
    if not os.path.exists(f32_path):
        import torch
        from transformers import AutoTokenizer, BertForSequenceClassification
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2).eval()
        enc = tok(["a dummy sentence"], return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "seq"} for n in names}
        axes["logits"] = {0: "batch"}
        torch.onnx.export(model, tuple(enc[n] for n in names), f32_path, input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    if not int8:
        return f32_path
    int8_path = os.path.join(cache_dir, "model-int8.onnx")
    if not os.path.exists(int8_path):
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(f32_path, int8_path, weight_type=QuantType.QInt8)
    return int8_path


def run_engine(args):
    """Measures one engine in this process; returns result rows."""
    texts = sentences(args.data)
    results = []
    shapes = [tuple(map(int, s.split("x"))) for s in args.infer.split(",") if s]

    def row(task, b, s, sps):
        # Peak RSS so far: after the traffic task (run first) it is what serving needs; the
        # fixed 32 x 128 shapes need more.
        results.append({"engine": args.engine, "task": task, "batch": b, "seq": s,
                        "sentences_per_s": sps, "peak_rss_mb": peak_rss_mb()})

    traffic = [texts[i:i + 32] for i in range(0, len(texts), 32)]
    if args.engine.startswith("torch"):
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(args.model)
        import torch
        from transformers import BertForSequenceClassification
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(
            args.model, num_labels=2, attn_implementation="eager").eval()
        if args.engine == "torch-int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        encoded = [tok(t, truncation=True, max_length=128, padding=True, return_tensors="pt") for t in traffic]

        def run_traffic():
            with torch.inference_mode():
                for enc in encoded:
                    model(**enc)
        row("traffic", 32, 0, timed(run_traffic, len(texts), max(1, args.repeats // 2)))
        for b, s in shapes:
            batches = [fixed_batch(tok, texts, b, s, i * b, "pt") for i in range(4)]
            for task, attn in (("infer", False), ("infer+attentions", True)):
                if attn and args.engine != "torch":
                    continue

                def run():
                    with torch.inference_mode():
                        for enc in batches:
                            model(**enc, output_attentions=attn)
                row(task, b, s, timed(run, len(batches) * b, args.repeats))
        if args.engine == "torch" and args.train:
            train_rows(args, tok, texts, row)
    else:
        import onnxruntime as ort
        tok = OnnxTokenizer(os.path.join(args.model, "tokenizer.json"))
        cache = os.path.join(args.onnx_cache, os.path.basename(os.path.normpath(args.model)))
        path = export_onnx(args.model, cache, args.engine == "ort-int8")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        encoded = [{n: enc[n] for n in names} for enc in (tok(t, 128, None) for t in traffic)]

        def run_traffic():
            for enc in encoded:
                session.run(None, enc)
        row("traffic", 32, 0, timed(run_traffic, len(texts), max(1, args.repeats // 2)))
        for b, s in shapes:
            batches = [tok([texts[(i * b + j) % len(texts)] for j in range(b)], s, s) for i in range(4)]
            batches = [{n: enc[n] for n in names} for enc in batches]

            def run():
                for enc in batches:
                    session.run(None, enc)
            row("infer", b, s, timed(run, len(batches) * b, args.repeats))
    return results


def train_rows(args, tok, texts, row):
    import torch
    from transformers import BertForSequenceClassification
    b, s = map(int, args.train.split("x"))
    for task in ("train", "train-lora"):
        model = BertForSequenceClassification.from_pretrained(args.model, num_labels=2).train()
        if task == "train-lora":
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                                     target_modules=["query", "value"]))
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5, weight_decay=0.01)
        labels = torch.tensor([i % 2 for i in range(b)])
        offset = [0]

        def steps():
            for _ in range(3):
                offset[0] += b
                enc = fixed_batch(tok, texts, b, s, offset[0], "pt")
                loss = model(**enc, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad()
        row(task, b, s, timed(steps, 3 * b, args.repeats))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--infer", default="32x128,32x64")
    p.add_argument("--train", default="16x64", help="training shape; empty to skip")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--engine", help="run this one engine in this process (internal)")
    p.add_argument("--onnx-cache", default=os.path.join("runs", "onnx-cache"))
    args = p.parse_args()
    if args.engine:
        print(json.dumps(run_engine(args)))
        return
    rows = []
    for engine in args.engines.split(","):
        cmd = [sys.executable, __file__, "--engine", engine] + [
            a for a in sys.argv[1:] if not a.startswith("--engines") and a != args.engines]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{engine} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        rows.extend(json.loads(done.stdout))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
