"""How long tokenising IMDb's 100,000 reviews takes, and what the token cache saves.

Covers both data options built on aclImdb, with each tokenizer as the presets set it:
- `data=imdb` (IMDBDataModule): the 25,000 training and 25,000 test reviews, one file each;
- `experiment=imdb_pretrain_lm` (`data=imdb_lm`, UnlabelledTextDataModule): the language-model
  pretraining text, the 25,000 training reviews then the 50,000 unlabelled ones of `train/unsup.txt`,
  read as one text and split by position.

Per tokenizer it times fitting on the pretraining text's training part (as `data=imdb_lm` fits),
encoding that whole text, batch-encoding all 100,000 reviews as separate texts, and each DataModule's
`setup()` cold (read, fit, encode, write the cache: a cache miss) and cached (a cache hit, the content
hash of the source files included, as a new process pays it). Wall and CPU seconds (this process,
all threads) and tokens/s; with `--rounds` above 1, medians and the range over rounds. The cache lives
in a temporary folder.

Uses the real aclImdb under --data-dir when it is there; otherwise it writes a generated corpus of
the same shape (25,000 training and 25,000 test reviews of about 230 words, Zipf-distributed over a
vocabulary of ~80,000 word types, with punctuation, capitals and `<br />` markup, and 50,000
unlabelled reviews in `train/unsup.txt`) as an aclImdb-shaped folder in a temporary directory, and
says so. `--limit N` uses the first N reviews of each labelled folder and the first 2N unlabelled ones
(for a quick check; the default is the whole corpus).

    python scripts/bench/tokenize_imdb.py [--data-dir DIR] [--tokenizers word bpe] [--rounds 1] [--limit N]
"""

import argparse
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from harness import SHARED_DATA, Timing, compose_run_config, median, report, timed
from hydra.utils import instantiate

from seqlab.data.cache import content_digest, encode_texts
from seqlab.data.imdb import LINE_BREAK, IMDBDataModule
from seqlab.data.io import text_lines
from seqlab.data.tokenizers import WordTokenizer

# What `seqlab-train experiment=imdb_pretrain_lm data/tokenizer=<name>` uses: the preset caps the word
# vocabulary at 20,000, a setting BPE does not take (its own default is 8,000 subwords).
LM_OVERRIDES = {"word": ["experiment=imdb_pretrain_lm"], "bpe": ["experiment=imdb_pretrain_lm", "data/tokenizer=bpe", "~data.tokenizer.max_size"]}
IMDB_OVERRIDES = {"word": ["data=imdb", "data.download=false"], "bpe": ["data=imdb", "data/tokenizer=bpe", "data.download=false"]}


def generated_aclimdb(root: Path, per_split: int = 25000, mean_words: int = 230, seed: int = 0, unlabelled: int = 0) -> None:
    """An aclImdb-shaped folder of generated reviews (see the module docstring), with `unlabelled`
    more in `train/unsup.txt`, one a line."""
    rng = np.random.default_rng(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ou", "ea")]
    vocabulary = sorted({"".join(rng.choice(syllables, size=rng.integers(1, 5))) for _ in range(90000)})
    random.Random(seed).shuffle(vocabulary)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.07
    cumulative = np.cumsum(weights / weights.sum())
    punctuation = [",", ".", "!", "?", "'s", "n't"]

    def review(index: int) -> str:
        n = max(10, int(rng.lognormal(np.log(mean_words) - 0.3, 0.75)))
        words = [vocabulary[j] for j in np.searchsorted(cumulative, rng.random(n) * cumulative[-1])]
        for k in rng.choice(n, size=n // 12, replace=False):
            words[k] += punctuation[k % len(punctuation)]
        words[0] = words[0].capitalize()
        text = " ".join(words)
        if index % 3 == 0:
            cut = len(text) // 2
            text = text[:cut] + "<br /><br />" + text[cut:]
        return text

    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_split // 2):
                (folder / f"{i}_{8 if label == 'pos' else 3}.txt").write_text(review(i))
    if unlabelled:
        (root / "train" / "unsup.txt").write_text("".join(review(i) + "\n" for i in range(unlabelled)))


def limited_aclimdb(source: Path, root: Path, limit: int) -> None:
    """An aclImdb folder at `root` with the first `limit` reviews of each labelled folder of `source`
    (linked, not copied) and its first 2 * `limit` unlabelled reviews."""
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (root / split / label).mkdir(parents=True)
            for path in sorted((source / split / label).glob("*.txt"))[:limit]:
                (root / split / label / path.name).symlink_to(path.resolve())
    with open(source / "train" / "unsup.txt", encoding="utf-8") as unsup:
        (root / "train" / "unsup.txt").write_text("".join(line for _, line in zip(range(2 * limit), unsup)))


STEPS = {
    "fit": "fit: LM text",
    "encode_lm_text": "encode: LM text",
    "encode_reviews": "encode: 100k reviews",
    "imdb_setup_cold": "imdb setup: cold",
    "imdb_setup_cached": "imdb setup: cached",
    "imdb_lm_setup_cold": "imdb_lm setup: cold",
    "imdb_lm_setup_cached": "imdb_lm setup: cached",
}


def datamodule_tokens(datamodule) -> int:
    """The tokens of every split a DataModule holds once set up."""
    if hasattr(datamodule, "segments"):
        # With no test share the test split is the validation split: counted once.
        splits = {id(segments): segments for segments in datamodule.segments.values()}.values()
        return sum(len(segment) for segments in splits for segment in segments)
    return sum(int(dataset.lengths.sum()) for dataset in datamodule.datasets.values())


def timed_call(function) -> tuple[object, Timing]:
    with timed() as timing:
        result = function()
    return result, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where aclImdb/ is looked for (default: ../shared/data)")
    parser.add_argument("--tokenizers", nargs="+", default=["word", "bpe"], choices=sorted(LM_OVERRIDES))
    parser.add_argument("--rounds", type=int, default=1, help="times each measurement is repeated (medians and range when above 1)")
    parser.add_argument("--limit", type=int, default=None, help="reviews per labelled folder, and twice as many unlabelled (default: all)")
    args = parser.parse_args()
    logging.getLogger("seqlab").setLevel(logging.WARNING)

    scratch = Path(tempfile.mkdtemp(prefix="seqlab-bench-"))
    try:
        data_dir = Path(args.data_dir)
        if (data_dir / "aclImdb" / "train" / "unsup.txt").is_file():
            corpus = f"real aclImdb at {data_dir / 'aclImdb'}"
        else:
            data_dir = scratch / "generated"
            _, generating = timed_call(lambda: generated_aclimdb(data_dir / "aclImdb", unlabelled=50000))
            corpus = f"generated aclImdb-shaped corpus (no aclImdb with train/unsup.txt under {args.data_dir}; generated in {generating.wall:.0f} s)"
        if args.limit:
            limited_aclimdb(data_dir / "aclImdb", scratch / "limited" / "aclImdb", args.limit)
            data_dir = scratch / "limited"
            corpus += f", first {args.limit} reviews of each folder and {2 * args.limit} unlabelled"

        labelled, reading_labelled = timed_call(IMDBDataModule(data_dir=str(data_dir), tokenizer=WordTokenizer(), cache_dir=None).read_splits)
        lm = instantiate(compose_run_config([*LM_OVERRIDES["word"], f"paths.data_dir={data_dir}"], scratch / "compose").data)
        lm_text, reading_lm = timed_call(lm.read_text)
        unsup = (data_dir / "aclImdb" / "train" / "unsup.txt").read_text(encoding="utf-8")
        unlabelled = [LINE_BREAK.sub(" ", line).strip() for line in text_lines(unsup.removesuffix("\n"))]
        reviews = [*labelled["train"].texts, *labelled["test"].texts, *unlabelled]
        lm_train_text = lm_text[: int(len(lm_text) * lm.train_fraction)]
        words = sum(len(text.split()) for text in reviews)
        print(f"corpus: {corpus}; {len(reviews):,} reviews, {words / 1e6:.2f} M words", file=sys.stderr, flush=True)

        rows = [
            (
                "read: imdb (train + test files)",
                f"{len(labelled['train'].texts) + len(labelled['test'].texts):,} reviews",
                reading_labelled.wall,
                reading_labelled.cpu,
                "",
                "",
            ),
            (
                "read: imdb_lm (train files + unsup)",
                f"{len(labelled['train'].texts) + len(unlabelled):,} reviews",
                reading_lm.wall,
                reading_lm.cpu,
                "",
                "",
            ),
        ]
        figures: dict[str, float | str] = {"reviews": len(reviews), "words": words}
        for name in args.tokenizers:
            measured: dict[str, list[Timing]] = {}
            tokens: dict[str, int] = {}
            for index in range(args.rounds):
                tokenizer = instantiate(compose_run_config([*LM_OVERRIDES[name], f"paths.data_dir={data_dir}"], scratch / "compose").data.tokenizer)
                _, fitting = timed_call(lambda: tokenizer.fit([lm_train_text]))
                encoded_lm, encoding_lm = timed_call(lambda: encode_texts(tokenizer, [lm_text]))
                encoded_reviews, encoding_reviews = timed_call(lambda: encode_texts(tokenizer, reviews))
                round_timings = {"fit": fitting, "encode_lm_text": encoding_lm, "encode_reviews": encoding_reviews}
                tokens.update(encode_lm_text=len(encoded_lm.values), encode_reviews=len(encoded_reviews.values))
                for option, overrides in (("imdb", IMDB_OVERRIDES[name]), ("imdb_lm", LM_OVERRIDES[name])):
                    cfg = compose_run_config(
                        [*overrides, f"paths.data_dir={data_dir}", f"data.cache_dir={scratch / f'cache-{name}-{index}'}"], scratch / "compose"
                    )
                    for state in ("cold", "cached"):
                        # A new process hashes the source files again for the cache key; so does this one.
                        content_digest.cache_clear()
                        datamodule = instantiate(cfg.data)
                        _, round_timings[f"{option}_setup_{state}"] = timed_call(datamodule.setup)
                    tokens[f"{option}_setup_cold"] = tokens[f"{option}_setup_cached"] = datamodule_tokens(datamodule)
                tokens["fit"] = len(datamodule.segments["train"][0])
                for step, timing in round_timings.items():
                    measured.setdefault(step, []).append(timing)
                print(f"{name} round {index + 1}: " + ", ".join(f"{step} {t.wall:.1f} s" for step, t in round_timings.items()), file=sys.stderr, flush=True)
            for step, timings in measured.items():
                wall, cpu = median([t.wall for t in timings]), median([t.cpu for t in timings])
                spread = f"{min(t.wall for t in timings):.2f}-{max(t.wall for t in timings):.2f}" if len(timings) > 1 else ""
                rows.append((f"{name}: {STEPS[step]}", f"{tokens[step]:,} tokens", wall, cpu, tokens[step] / wall, spread))
                figures[f"{name}_{step}_s"] = wall
                figures[f"{name}_{step}_cpu_s"] = cpu
                figures[f"{name}_{step}_tokens_per_s"] = tokens[step] / wall
            for option in ("imdb", "imdb_lm"):
                # What the cache saves, per round (cold and cached ran back to back): CPU time cold ÷ cached.
                savings = [cold.cpu / cached.cpu for cold, cached in zip(measured[f"{option}_setup_cold"], measured[f"{option}_setup_cached"])]
                figures[f"{name}_{option}_cold_over_cached_cpu"] = median(savings)
            figures[f"{name}_vocab_size"] = tokenizer.vocab_size
        report(
            f"IMDb tokenising: {corpus}",
            ["", "size", "wall s", "CPU s", "tokens/s (wall)", "wall range"],
            rows,
            figures,
            notes=[
                f"{args.rounds} round(s), medians; CPU s is this process's CPU time, all threads (the tokenizers encode on every core)",
                "LM text: data=imdb_lm's text (training reviews, then unsup.txt), one text; fit: on its training part, as data=imdb_lm fits it",
                "100k reviews: train, test and unlabelled, one text each; cold: a cache miss; cached: a cache hit on the entry the cold setup wrote",
            ],
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
