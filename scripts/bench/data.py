"""How fast seqlab's data path is: tokenising (word, BPE, characters), iterating the training loader,
the loader's share of a training step (target under 5%; under 2% for a pretraining preset), and, when `--data-dir` holds aclImdb, what the
token cache's content hash of the source files costs against a cold tokenise of IMDb.

The share is measured side by side: rounds alternate iterating `--batches` batches of the training
loader alone and training `--batches` steps through seqlab (as overhead.py does), and the share is
the median over rounds of loader time ÷ training time.

The content hash is timed over IMDb's 50,000 review files (the cache key reads each once per process)
right after a cold `data=imdb` setup (cache miss: read, hash, split, fit, encode, write) has read them,
so the files are in the page cache, as they are for a run soon after another.

    python scripts/bench/data.py                  # the default run's data and LSTM
    python scripts/bench/data.py --model gpt      # tiny Shakespeare and the shakespeare_gpt preset
    python scripts/bench/data.py --preset imdb_pretrain_lm --batches 20   # that preset's model and loader

`--preset NAME` measures the share for `experiment=NAME` on its own data under --data-dir (tokenised
once, into a temporary cache) instead of a --model workload.
"""

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

from harness import SHARED_DATA, Timing, compose_run_config, median, report, set_threads, timed
from hydra.utils import instantiate
from overhead import TRAINING_ONLY, WORKLOADS, seqlab_run

from seqlab import runs
from seqlab.data.cache import content_digest
from seqlab.data.synthetic import generate_reviews
from seqlab.data.text_files import read_label_text_lines
from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer


def corpus(data_dir: Path, reviews: int) -> tuple[str, list[str]]:
    """SST-2's training sentences when the shared data is there, else generated reviews."""
    sst2 = data_dir / "sst2" / "stsa.binary.train"
    if sst2.is_file():
        lines = read_label_text_lines(sst2).texts
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
        rows.append((f"tokenise: {name}", tokens, fit_s, tokens / encode_s, ""))
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


def content_hash_cost(data_dir: Path, tmp: Path) -> tuple[list[tuple], dict[str, float]]:
    """A cold `data=imdb` setup, then the content hash of its review files alone (see the module docstring)."""
    cfg = compose_run_config(["data=imdb", f"paths.data_dir={data_dir}", f"data.cache_dir={tmp / 'cache'}", "data.download=false"], tmp / "imdb")
    datamodule = instantiate(cfg.data)
    with timed() as cold:
        datamodule.setup()
    tokens = sum(int(dataset.lengths.sum()) for dataset in datamodule.datasets.values())
    content_digest.cache_clear()
    with timed() as hashing:
        datamodule.source_identity()
    share = hashing.wall / cold.wall
    rows = [
        ("IMDb: cold tokenise (data=imdb setup, cache miss)", tokens, "", tokens / cold.wall, cold.wall),
        (f"IMDb: content hash of the review files ({share:.1%} of that)", "", "", "", hashing.wall),
    ]
    figures = {"imdb_cold_tokenise_s": cold.wall, "content_hash_s": hashing.wall, "content_hash_share_of_cold_tokenise": share}
    return rows, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(WORKLOADS), default="lstm")
    parser.add_argument("--preset", help="measure the loader share for experiment=PRESET instead of --model (e.g. imdb_pretrain_lm)")
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
        if (Path(args.data_dir) / "aclImdb").is_dir():
            imdb_rows, imdb_figures = content_hash_cost(Path(args.data_dir), tmp)
            rows += imdb_rows
            figures.update(imdb_figures)
        workload = [f"experiment={args.preset}", f"data.cache_dir={tmp / 'cache'}"] if args.preset else WORKLOADS[args.model]["overrides"]
        cfg = compose_run_config([*workload, f"paths.data_dir={args.data_dir}", *TRAINING_ONLY], tmp / "run")
        with timed() as setting_up:
            datamodule = runs.build_datamodule(cfg)
        print(f"data set up in {setting_up.wall:.1f} s ({setting_up.cpu:.1f} s CPU)", file=sys.stderr, flush=True)
        loader_time(datamodule, 5)
        seqlab_run(cfg, datamodule, 5, tmp / "warmup")
        shares, loader_rates = [], []
        for index in range(args.rounds):
            load, tokens = loader_time(datamodule, args.batches)
            train = seqlab_run(cfg, datamodule, args.batches, tmp / f"round{index}")
            shares.append(load.cpu / train.cpu)
            loader_rates.append(tokens / load.cpu)
            print(
                f"round {index + 1}: loader {load.wall:.3f} s ({load.cpu:.3f} s CPU), training {train.wall:.2f} s ({train.cpu:.2f} s CPU)",
                file=sys.stderr,
                flush=True,
            )

    share = median(shares)
    workload = f"experiment={args.preset}" if args.preset else f"{args.model} workload"
    rows.append((f"training loader ({workload})", int(tokens), "", median(loader_rates), ""))
    figures["loader_tokens_per_s"] = median(loader_rates)
    figures["loader_share_of_step"] = share
    report(
        f"data: tokenising {source}; loader share over {args.rounds} rounds of {args.batches} batches",
        ["", "tokens", "fit s", "tokens/s (loader: per CPU-s)", "wall s"],
        rows,
        figures,
        notes=[
            f"loader share of a training step (CPU time): {share:.2%} (target < {'2%' if args.preset else '5%'}), per round: "
            + ", ".join(f"{s:.2%}" for s in shares),
            f"loader batch size {datamodule.batch_size}; tokens are real (unpadded) tokens",
        ],
    )


if __name__ == "__main__":
    main()
