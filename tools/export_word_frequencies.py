"""Writes English word frequencies (Zipf scale) for the word-frequency baseline of `attune align`.

Hollenstein & Beinborn (2021) used `wordfreq.zipf_frequency(word, "en")`; this exports the same
values for the most frequent words so attune can read them without Python:

    pip install wordfreq
    python3 tools/export_word_frequencies.py models/wordfreq_en.tsv

wordfreq's data is CC BY-SA 4.0 (Robyn Speer, wordfreq, https://github.com/rspeer/wordfreq);
the file is generated locally (models/ is git-ignored) and not redistributed with attune.
"""
import sys

from wordfreq import top_n_list, zipf_frequency

out = sys.argv[1] if len(sys.argv) > 1 else "models/wordfreq_en.tsv"
words = top_n_list("en", 200_000)
with open(out, "w", encoding="utf-8") as f:
    for word in words:
        f.write(f"{word}\t{zipf_frequency(word, 'en')}\n")
print(f"wrote {len(words)} words to {out}")
