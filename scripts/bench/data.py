"""How fast seqlab's data path is: tokenising (word, BPE, characters), iterating the training loader,
and the loader's share of a training step (target under 5%).

The share is measured side by side: rounds alternate iterating `--batches` batches of the training
loader alone and training `--batches` steps through seqlab (as overhead.py does), and the share is
the median over rounds of loader time ÷ training time.

    python scripts/bench/data.py                  # the default run's data and LSTM
    python scripts/bench/data.py --model gpt      # tiny Shakespeare and the shakespeare_gpt preset
"""

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

from harness import SHARED_DATA, Timing, compose_run_config, median, report, set_threads, timed
from overhead import TRAINING_ONLY, WORKLOADS, seqlab_run
from seqlab import runs
from seqlab.data.synthetic import generate_reviews
from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer


def corpus(data_dir: Path, reviews: int) -> tuple[str, list[str]]:
    """SST-2's training sentences when the shared data is there, else generated reviews."""
    sst2 = data_dir / "sst2" / "stsa.binary.train"
    if sst2.is_file():
        lines = [line.split(" ", 1)[1] for line in sst2.read_text(encoding="utf-8").splitlines() if " " in line]
        return f"SST-2 train ({len(lines):,} sentences)", lines
    return f"generated reviews ({reviews:,})", generate_reviews(reviews, seed=0).texts


def tokenizer_rows(texts: list[str]) -> tuple[list[tuple], dict[str, float]]:
    rows, figures = [], {}
    for name, tokenizer in (("word", WordTokenizer()), ("bpe", BPETokenizer(vocab_size=8000)), ("char", CharTokenizer())):
        start = time.perf_counter()
        tokenizer.fit(texts)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        encoded = tokenizer.encode_batch(texts)
        encode_s = time.perf_counter() - start
        tokens = sum(len(ids) for ids in encoded)
        rows.append((f"tokenise: {name}", tokens, fit_s, tokens / encode_s))
        figures[f"{name}_tokens_per_s"] = tokens / encode_s
    return rows, figures


def loader_time(datamodule, batches: int) -> tuple[Timing, int]:
    """Time to draw `batches` batches from a fresh training loader, and the real (unpadded) tokens in them."""
    tokens = drawn = 0
    with timed() as timing:
        while drawn < batches:
            for batch in datamodule.train_dataloader():
                tokens += int(batch["lengths"].sum()) if "lengths" in batch else int((batch["targets"] >= 0).sum())
                drawn += 1
                if drawn == batches:
                    break
    return timing, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(WORKLOADS), default="lstm")
    parser.add_argument("--batches", type=int, default=60, help="batches per round for the loader share")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reviews", type=int, default=20000, help="generated reviews to tokenise when SST-2 is absent")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: steady on a shared machine)")
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    args = parser.parse_args()
    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "seqlab"):
        logging.getLogger(name).setLevel(logging.ERROR)

    source, texts = corpus(Path(args.data_dir), args.reviews)
    rows, figures = tokenizer_rows(texts)

    with tempfile.TemporaryDirectory(prefix="seqlab-data-") as tmp:
        tmp = Path(tmp)
        cfg = compose_run_config([*WORKLOADS[args.model]["overrides"], f"paths.data_dir={args.data_dir}", *TRAINING_ONLY], tmp / "run")
        datamodule = runs.build_datamodule(cfg)
        loader_time(datamodule, 5)
        seqlab_run(cfg, datamodule, 5, tmp / "warmup")
        shares, loader_rates = [], []
        for index in range(args.rounds):
            load, tokens = loader_time(datamodule, args.batches)
            train = seqlab_run(cfg, datamodule, args.batches, tmp / f"round{index}")
            shares.append(load.cpu / train.cpu)
            loader_rates.append(tokens / load.cpu)
            print(f"round {index + 1}: loader {load.wall:.3f} s ({load.cpu:.3f} s CPU), training {train.wall:.2f} s ({train.cpu:.2f} s CPU)", file=sys.stderr, flush=True)

    share = median(shares)
    rows.append((f"training loader ({args.model} workload)", int(tokens), "", median(loader_rates)))
    figures["loader_tokens_per_s"] = median(loader_rates)
    figures["loader_share_of_step"] = share
    report(
        f"data: tokenising {source}; loader share over {args.rounds} rounds of {args.batches} batches",
        ["", "tokens", "fit s", "tokens/s (loader: per CPU-s)"],
        rows,
        figures,
        notes=[
            f"loader share of a training step (CPU time): {share:.2%} (target < 5%), per round: "
            + ", ".join(f"{s:.2%}" for s in shares),
            f"loader batch size {datamodule.batch_size}; tokens are real (unpadded) tokens",
        ],
    )


if __name__ == "__main__":
    main()
