#!/usr/bin/env python3
"""Reference outputs of PyTorch `transformers` for the attune parity test.

Runs all-MiniLM-L6-v2 as `BertForSequenceClassification` (3 labels, classifier initialised
with torch seed 0, eager attention, eval mode, f32) on a fixed list of sentences, one at a time
(no padding), and writes what attune must reproduce within 1e-4:

  crates/attune-core/tests/fixtures/minilm_parity.json         sentences, max_len, token ids
  crates/attune-core/tests/fixtures/minilm_parity.safetensors  classifier weights; per sentence i:
      s{i}.logits [labels], s{i}.hidden.{l} [seq, 384] (l in 0, 6; all l for ALL_LAYERS), s{i}.attn.{0..5} [12, seq, seq]

Usage (after ./scripts/setup-model; needs `pip install torch transformers safetensors`):
    python3 tools/make_parity_fixture.py [models/all-MiniLM-L6-v2]
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertForSequenceClassification

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates/attune-core/tests/fixtures"
MAX_LEN = 48
# Hidden states of every layer are stored for these sentences only (embeddings and last layer for
# all): the fixture stays small, and attentions of every layer are checked for all sentences.
ALL_LAYERS = {4, 6, 7}

SENTENCES = [
    "",
    "good",
    "a",
    "!",
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "the acting , costumes , music , cinematography and sound are all astounding .",
    "This movie was NOT good at all...",
    "Crème brûlée à la française, naïve café",
    "Ünïcödé façade — déjà vu",
    "I loved it 😍🎬 best film ever 👍",
    "東京は素晴らしい都市です",
    "Привет, как дела?",
    "$AAPL up 3.5% after earnings beat; shares +12 in pre-market",
    "can you help me top up my card with apple pay?",
    "e-mail me at someone@example.com or call +1 (555) 010-9999",
    "   leading and trailing spaces   ",
    "tab\tseparated\twords and\nnew lines",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "the the the the the the the the",
    "hide new secretions from the parental units",
    "( the film ) is a great deal of fun , but it is n't much more than that .",
    # Longer than MAX_LEN tokens: exercises truncation at the maximum length.
    " ".join(["this sentence keeps going and going well past the limit of forty eight tokens"] * 8),
]


def main() -> None:
    model_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "models/all-MiniLM-L6-v2")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tensors = {
        "classifier.weight": model.classifier.weight.detach().contiguous(),
        "classifier.bias": model.classifier.bias.detach().contiguous(),
    }
    records = []
    with torch.no_grad():
        for i, text in enumerate(SENTENCES):
            enc = tokenizer(text, truncation=True, max_length=MAX_LEN, return_tensors="pt")
            out = model(**enc, output_attentions=True, output_hidden_states=True)
            tensors[f"s{i}.logits"] = out.logits[0].contiguous()
            for layer, h in enumerate(out.hidden_states):
                if i not in ALL_LAYERS and layer not in (0, len(out.hidden_states) - 1):
                    continue
                tensors[f"s{i}.hidden.{layer}"] = h[0].contiguous()
            for layer, a in enumerate(out.attentions):
                tensors[f"s{i}.attn.{layer}"] = a[0].contiguous()
            records.append({"text": text, "input_ids": enc["input_ids"][0].tolist()})
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "minilm_parity.safetensors"))
    meta = {"max_len": MAX_LEN, "num_labels": 3, "sentences": records,
            "generated_by": "tools/make_parity_fixture.py",
            "torch": torch.__version__, "transformers": __import__("transformers").__version__}
    (OUT / "minilm_parity.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    print(f"wrote {len(records)} sentences to {OUT}")


if __name__ == "__main__":
    main()
