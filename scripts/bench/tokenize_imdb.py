"""How long tokenising the 25,000 IMDb training reviews takes, and what the token cache saves.

Uses the real aclImdb under --data-dir when it is there; otherwise it writes a generated corpus of
the same shape (25,000 training and 25,000 test reviews of about 230 words, Zipf-distributed over a
vocabulary of ~80,000 word types, with punctuation, capitals and `<br />` markup) as an
aclImdb-shaped folder in a temporary directory, and says so.

    python scripts/bench/tokenize_imdb.py [--data-dir DIR] [--tokenizers word bpe char]

Prints, per tokenizer: fitting on the training split, encoding it (batch encoding, as the
DataModules do), and a full `IMDBDataModule.setup()` cold (read 50,000 files, split, fit, encode
all splits, write the cache) and warm (a cache hit).
"""

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from seqlab.data.cache import encode_texts
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer

TOKENIZERS = {
    "word": lambda: WordTokenizer(min_freq=2, max_size=30000),
    "bpe": lambda: BPETokenizer(vocab_size=8000),
    "char": CharTokenizer,
}


def generated_aclimdb(root: Path, per_split: int = 25000, mean_words: int = 230, seed: int = 0) -> None:
    """An aclImdb-shaped folder of generated reviews (see the module docstring)."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ou", "ea")]
    vocabulary = sorted({"".join(rng.choice(syllables, size=rng.integers(1, 5))) for _ in range(90000)})
    random.Random(seed).shuffle(vocabulary)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.07
    cumulative = np.cumsum(weights / weights.sum())
    punctuation = [",", ".", "!", "?", "'s", "n't"]
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_split // 2):
                n = max(10, int(rng.lognormal(np.log(mean_words) - 0.3, 0.75)))
                words = [vocabulary[j] for j in np.searchsorted(cumulative, rng.random(n) * cumulative[-1])]
                for k in rng.choice(n, size=n // 12, replace=False):
                    words[k] += punctuation[k % len(punctuation)]
                words[0] = words[0].capitalize()
                text = " ".join(words)
                if i % 3 == 0:
                    cut = len(text) // 2
                    text = text[:cut] + "<br /><br />" + text[cut:]
                (folder / f"{i}_{8 if label == 'pos' else 3}.txt").write_text(text)


def timed(function):
    """The result, and the wall-clock seconds it took."""
    result, wall, _ = timed_cpu(function)
    return result, wall


def timed_cpu(function):
    """The result, wall-clock seconds and CPU seconds of this process (all its threads): on a busy
    shared machine the CPU time is the steadier figure."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="where aclImdb/ is looked for (default: ./data)")
    parser.add_argument("--tokenizers", nargs="+", default=["word", "bpe"], choices=sorted(TOKENIZERS))
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="seqlab-bench-"))
    try:
        data_dir = Path(args.data_dir)
        if (data_dir / "aclImdb").is_dir():
            corpus = f"real aclImdb at {data_dir / 'aclImdb'}"
        else:
            data_dir = scratch / "data"
            _, seconds = timed(lambda: generated_aclimdb(data_dir / "aclImdb"))
            corpus = f"generated aclImdb-shaped corpus (no aclImdb under {args.data_dir}; generated in {seconds:.0f} s)"
        reader = IMDBDataModule(data_dir=str(data_dir), tokenizer=WordTokenizer(), cache_dir=None)
        splits, read_seconds = timed(reader.read_splits)
        train = splits["train"].texts
        words = sum(len(text.split()) for text in train)
        print(f"corpus: {corpus}")
        print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}")
        print(f"training reviews: {len(train)}, words: {words} ({words / len(train):.0f} per review); reading 50,000 files: {read_seconds:.1f} s")
        results = {"corpus": corpus, "reviews": len(train), "words": words, "read_s": read_seconds}
        for name in args.tokenizers:
            tokenizer = TOKENIZERS[name]()
            _, fit_seconds, fit_cpu = timed_cpu(lambda: tokenizer.fit(train))
            ragged, encode_seconds, encode_cpu = timed_cpu(lambda: encode_texts(tokenizer, train))
            cache_dir = scratch / f"cache-{name}"

            def make() -> IMDBDataModule:
                return IMDBDataModule(data_dir=str(data_dir), tokenizer=TOKENIZERS[name](), cache_dir=str(cache_dir), max_length=None)

            _, cold_seconds = timed(lambda: make().setup())
            _, warm_seconds = timed(lambda: make().setup())
            print(
                f"{name:>5}: fit {fit_seconds:6.1f} s  encode {encode_seconds:6.1f} s  (fit+encode {fit_seconds + encode_seconds:6.1f} s wall, "
                f"{fit_cpu + encode_cpu:6.1f} s CPU, "
                f"{len(ragged.values) / encode_seconds / 1e6:.2f} M tokens/s, vocab {tokenizer.vocab_size})  |  "
                f"IMDBDataModule.setup cold {cold_seconds:6.1f} s, cache hit {warm_seconds:5.2f} s"
            )
            results[name] = {
                "fit_s": fit_seconds,
                "encode_s": encode_seconds,
                "fit_cpu_s": fit_cpu,
                "encode_cpu_s": encode_cpu,
                "tokens": int(len(ragged.values)),
                "setup_cold_s": cold_seconds,
                "setup_cache_hit_s": warm_seconds,
            }
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
        print(json.dumps(results))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
