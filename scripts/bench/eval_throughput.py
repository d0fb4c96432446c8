"""seqlab-eval and seqlab-predict on IMDb's test reviews: texts/s against a plain `torch.inference_mode()`
loop over the same batches, and what batching the texts by length saves.

An IMDb classifier (`--experiment`, default imdb_lstm) is trained for a few steps into `--run-dir`
(reused when it holds a checkpoint: throughput does not depend on the weights). Then, in one process,
rounds alternating A B, B A:

- eval: the test loop of `seqlab.cli.eval.evaluate` (seqlab-eval's entry function; `trainer.test`
  timed inside it) against a plain loop over the same test loader's batches (same order, same
  padding): `with torch.inference_mode(): logits = net(input_ids, lengths)`, predicted class, accuracy.
- predict: `seqlab.cli.predict.predict` (seqlab-predict's entry function: read the file, tokenise,
  forward, write JSONL) against a plain loop over the same batches: the run's tokenizer, padding,
  `inference_mode` forward, softmax.
- the real `seqlab-eval` and `seqlab-predict` commands, whole (start-up, checkpoint, data, report),
  with batching by length on (the default) and off (`data.sort_test_by_length=false`, `sort_by_length=false`).

The data are the real aclImdb under --data-dir when it is there, else a generated aclImdb-shaped
corpus (scripts/bench/tokenize_imdb.py), and the output says which. `--texts` takes an evenly spread
subset of the test reviews (default: all 25,000).

    python scripts/bench/eval_throughput.py [--data-dir ../shared/data] [--texts 25000] [--rounds 3] [--run-dir DIR]
"""

import argparse
import contextlib
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from harness import SHARED_DATA, Timing, compose_run_config, median, report, set_threads, timed
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from tokenize_imdb import generated_aclimdb

import seqlab.cli.predict
from seqlab import runs
from seqlab.cli.eval import evaluate, run_config
from seqlab.cli.predict import SORTED_BATCHES, load_predictor, predict
from seqlab.data.batching import PadToLongest
from seqlab.data.imdb import LABELS, IMDBDataModule
from seqlab.runs.trained import load_weights

# A few training steps and a short validation: enough for a checkpoint with the run's tokenizer and model.
BRIEF_TRAINING = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=2",
    "trainer.num_sanity_val_steps=0",
    "test=false",
    "callbacks.progress_bar=null",
]


def bench_data(data_dir: Path, texts: int, work: Path) -> tuple[Path, str]:
    """A data dir whose aclImdb has the training reviews and `texts` test reviews (links to the files
    of the real aclImdb, or a generated corpus), and what the corpus is."""
    root = work / "data" / "aclImdb"
    if root.is_dir():
        return root.parent, (work / "data" / "corpus.txt").read_text()
    source = data_dir / "aclImdb"
    if source.is_dir():
        corpus = f"real aclImdb at {source}"
    else:
        source = work / "generated" / "aclImdb"
        generated_aclimdb(source)
        corpus = f"generated aclImdb-shaped corpus (no aclImdb under {data_dir})"
    (root / "train").mkdir(parents=True)
    for label in LABELS:
        (root / "train" / label).symlink_to((source / "train" / label).resolve())
        files = sorted((source / "test" / label).glob("*.txt"))
        keep = files[:: max(1, len(files) // max(1, texts // 2))][: texts // 2] if texts < 2 * len(files) else files
        (root / "test" / label).mkdir(parents=True)
        for path in keep:
            (root / "test" / label / path.name).symlink_to(path.resolve())
    corpus += f", {2 * len(keep) if texts < 2 * len(files) else 2 * len(files)} test reviews"
    (work / "data" / "corpus.txt").write_text(corpus)
    return root.parent, corpus


def checkpoint(run_dir: Path, experiment: str, data_overrides: list[str], threads: int) -> Path:
    """The last checkpoint of a brief training run in `run_dir`, trained now unless it is there."""
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        command = [
            sys.executable,
            "-m",
            "seqlab.cli.train",
            f"experiment={experiment}",
            *data_overrides,
            *BRIEF_TRAINING,
            f"threads={threads}",
            f"hydra.run.dir={run_dir}",
        ]
        print(f"training a checkpoint: {' '.join(command[2:])}", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=child_env(threads))
    return ckpt


def child_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}


def command_run(args: list[str], threads: int) -> Timing:
    """Wall and CPU (user + system of the child) seconds of a seqlab command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args, f"threads={threads}"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env(threads))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


@contextlib.contextmanager
def timed_calls(owner: object, names: list[str], timing: Timing) -> Iterator[None]:
    """Adds the time of every call of `owner`'s functions `names` to `timing` while seqlab's own code calls them."""
    originals = {name: getattr(owner, name) for name in names}

    def timed_call(original):
        def call(*args, **kwargs):
            with timed() as took:
                result = original(*args, **kwargs)
            timing.wall += took.wall
            timing.cpu += took.cpu
            return result

        return call

    for name, original in originals.items():
        setattr(owner, name, timed_call(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(owner, name, original)


@contextlib.contextmanager
def command_config(overrides: list[str], run_dir: Path, config_name: str) -> Iterator[DictConfig]:
    """The config `seqlab-<config_name> <overrides>` composes, with Hydra set up as hydra.main leaves it
    for the command's task function (composing is hydra.main's work, outside what is timed)."""
    cfg = compose_run_config(overrides, run_dir, config_name=config_name)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        yield cfg


def seqlab_eval(overrides: list[str], run_dir: Path) -> tuple[Timing, Timing]:
    """seqlab-eval's entry function in this process: (its test loop, the whole call)."""
    test_loop = Timing()
    with (
        command_config(overrides, run_dir, "eval") as cfg,
        open(os.devnull, "w") as devnull,
        contextlib.redirect_stdout(devnull),
        timed_calls(pl.Trainer, ["test"], test_loop),
        timed() as whole,
    ):
        evaluate(cfg)
    return test_loop, whole


def plain_eval(net: torch.nn.Module, loader) -> tuple[Timing, float]:
    """The same batches through the model by hand: predicted classes and accuracy."""
    correct = total = 0
    with timed() as timing, torch.inference_mode():
        for batch in loader:
            logits = net(batch["input_ids"], batch["lengths"])
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return timing, correct / total


def seqlab_predict(overrides: list[str], run_dir: Path) -> tuple[Timing, Timing]:
    """seqlab-predict's entry function in this process: (the whole call but reading the checkpoint and checking
    the overrides, which a plain loop does not do and which take the same time for any input; the whole call)."""
    once = Timing()
    with (
        command_config(overrides, run_dir, "predict") as cfg,
        timed_calls(seqlab.cli.predict, ["load_predictor", "check_override_types"], once),
        timed() as whole,
    ):
        predict(cfg)
    return Timing(whole.wall - once.wall, whole.cpu - once.cpu), whole


def predict_batches(texts: list[str], batch_size: int, by_length: bool) -> list[list[str]]:
    """The batches seqlab-predict makes: in file order, or each run of SORTED_BATCHES batches' texts longest first."""
    if not by_length:
        return [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    batches = []
    window = batch_size * SORTED_BATCHES
    for start in range(0, len(texts), window):
        chunk = sorted(texts[start : start + window], key=len, reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return batches


def plain_predict(net: torch.nn.Module, tokenizer, max_length: int | None, input_path: Path, batch_size: int, by_length: bool) -> Timing:
    """Read the file, tokenise with the run's tokenizer, pad, forward in inference_mode, softmax."""
    pad = PadToLongest(tokenizer.pad_id)
    probs = []
    with timed() as timing, torch.inference_mode():
        texts = input_path.read_text(encoding="utf-8").split("\n")[:-1]
        for batch in predict_batches(texts, batch_size, by_length):
            encoded = tokenizer.encode_batch(batch, max_length=max_length)
            padded = pad([(ids, 0) for ids in encoded])
            probs.append(torch.softmax(net(padded["input_ids"], padded["lengths"]), dim=-1))
    return timing


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "seqlab"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where aclImdb/ is looked for")
    parser.add_argument("--experiment", default="imdb_lstm", choices=["imdb_lstm", "imdb_cnn", "imdb_transformer"])
    parser.add_argument("--run-dir", help="the training run to reuse (trained there when it has no checkpoint); default: a temporary one")
    parser.add_argument("--texts", type=int, default=25000, help="test reviews to evaluate and predict (an evenly spread subset)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each comparison, A B then B A alternately")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, here and in the commands")
    parser.add_argument("--no-commands", action="store_true", help="leave out the whole seqlab-eval and seqlab-predict commands")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet()

    scratch = Path(tempfile.mkdtemp(prefix="seqlab-eval-bench-"))
    try:
        run_dir = Path(args.run_dir).resolve() if args.run_dir else scratch / "train"
        work = run_dir.parent / f"{run_dir.name}-bench-{args.texts}"
        data_dir, corpus = bench_data(Path(args.data_dir), args.texts, work)
        # The run's token cache (its config's data.cache_dir) serves eval too: a cache hit after the first read.
        cache = [f"data.cache_dir={run_dir.parent / f'{run_dir.name}-cache'}"]
        ckpt = checkpoint(run_dir, args.experiment, [f"paths.data_dir={data_dir}", *cache], args.threads)
        print(f"corpus: {corpus}; checkpoint {ckpt}", file=sys.stderr, flush=True)
        eval_overrides = [f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}", f"threads={args.threads}"]

        # The model, the test loader and the predict input, as seqlab-eval builds them.
        cfg = compose_run_config(eval_overrides, scratch / "setup", config_name="eval")
        saved = runs.read_run(str(ckpt))
        run_cfg = run_config(cfg, saved.config)
        datamodule = runs.build_datamodule(run_cfg, saved.tokenizer, saved.label_names)
        task = runs.build_task(run_cfg, datamodule)
        load_weights(task, saved)
        net = task.net.eval()
        datamodule.setup("test")
        test_texts = IMDBDataModule(data_dir=str(data_dir), tokenizer=datamodule.tokenizer, cache_dir=None).read_splits()["test"].texts
        reviews = work / "reviews.txt"
        reviews.write_text("".join(text.replace("\r", " ").replace("\n", " ") + "\n" for text in test_texts), encoding="utf-8")
        texts = len(test_texts)
        predict_overrides = [f"ckpt_path={ckpt}", f"input={reviews}", f"paths.data_dir={data_dir}", f"threads={args.threads}"]
        predictor = load_predictor(compose_run_config(predict_overrides + [f"output={scratch / 'p.jsonl'}"], scratch / "setup", config_name="predict"), "bench")
        batch_size = 256  # seqlab-predict's default batch_size

        # Warm-up: the token cache, and one pass of each side.
        seqlab_eval(eval_overrides, scratch / "warmup-eval")
        plain_eval(net, datamodule.test_dataloader())

        eval_rounds, predict_rounds = [], []
        for index in range(args.rounds):
            loader = datamodule.test_dataloader()
            sides = [lambda: seqlab_eval(eval_overrides, scratch / f"eval{index}"), lambda: plain_eval(net, loader)]
            done = [side() for side in (sides if index % 2 == 0 else sides[::-1])]
            ours, theirs = (done[0], done[1]) if index % 2 == 0 else (done[1], done[0])
            eval_rounds.append((*ours, theirs[0]))
            print(
                f"eval round {index + 1}: seqlab test loop {ours[0].cpu:.1f} CPU-s (whole evaluate {ours[1].cpu:.1f}), plain {theirs[0].cpu:.1f} CPU-s, accuracy {theirs[1]:.4f}",
                file=sys.stderr,
                flush=True,
            )
        for index in range(args.rounds):
            out = [f"output={scratch / f'predict{index}.jsonl'}"]
            sides = [
                lambda: seqlab_predict(predict_overrides + out, scratch / f"predict{index}"),
                lambda: plain_predict(net, predictor.tokenizer, predictor.max_length, reviews, batch_size, by_length=True),
            ]
            done = [side() for side in (sides if index % 2 == 0 else sides[::-1])]
            ours, theirs = (done[0], done[1]) if index % 2 == 0 else (done[1], done[0])
            predict_rounds.append((*ours, theirs))
            print(
                f"predict round {index + 1}: seqlab {ours[0].cpu:.1f} CPU-s (whole predict {ours[1].cpu:.1f}), plain {theirs.cpu:.1f} CPU-s",
                file=sys.stderr,
                flush=True,
            )

        command_rounds: dict[str, list[Timing]] = {}
        if not args.no_commands:
            commands = {
                "seqlab-eval, by length": ["seqlab.cli.eval", *eval_overrides[:-1], "data.sort_test_by_length=true"],
                "seqlab-eval, input order": ["seqlab.cli.eval", *eval_overrides[:-1], "data.sort_test_by_length=false"],
                "seqlab-predict, by length": ["seqlab.cli.predict", *predict_overrides[:-1], "sort_by_length=true"],
                "seqlab-predict, input order": ["seqlab.cli.predict", *predict_overrides[:-1], "sort_by_length=false"],
            }
            for index in range(args.rounds):
                for name, command in commands.items() if index % 2 == 0 else reversed(commands.items()):
                    where = scratch / "commands" / f"{name.split(',')[0]}-{index}"
                    extra = [f"hydra.run.dir={where}"] + ([f"output={where / 'predictions.jsonl'}"] if "predict" in name else [])
                    command_rounds.setdefault(name, []).append(command_run(command + extra, args.threads))
                    print(
                        f"commands round {index + 1}: {name} {command_rounds[name][-1].wall:.1f} s ({command_rounds[name][-1].cpu:.1f} CPU-s)",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    def per_s(seconds: list[float]) -> float:
        return texts / median(seconds)

    def spread(values: list[float]) -> str:
        return f"{min(values):.3f} to {max(values):.3f}"

    eval_ratios = [plain.cpu / test.cpu for test, _, plain in eval_rounds]
    eval_wall_ratios = [plain.wall / test.wall for test, _, plain in eval_rounds]
    predict_ratios = [plain.cpu / ours.cpu for ours, _, plain in predict_rounds]
    predict_wall_ratios = [plain.wall / ours.wall for ours, _, plain in predict_rounds]
    rows = [
        ("eval: seqlab test loop (trainer.test in evaluate)", per_s([r[0].wall for r in eval_rounds]), per_s([r[0].cpu for r in eval_rounds]), "", ""),
        ("eval: plain inference_mode loop, same batches", per_s([r[2].wall for r in eval_rounds]), per_s([r[2].cpu for r in eval_rounds]), "", ""),
        ("eval: ratio seqlab / plain", median(eval_wall_ratios), median(eval_ratios), spread(eval_ratios), ""),
        (
            "eval: evaluate() whole (data from the cache, checkpoint, test, report)",
            per_s([r[1].wall for r in eval_rounds]),
            per_s([r[1].cpu for r in eval_rounds]),
            "",
            "",
        ),
        (
            "predict: seqlab predict(), file to JSONL (checkpoint read left out)",
            per_s([r[0].wall for r in predict_rounds]),
            per_s([r[0].cpu for r in predict_rounds]),
            "",
            "",
        ),
        ("predict: plain loop, same batches", per_s([r[2].wall for r in predict_rounds]), per_s([r[2].cpu for r in predict_rounds]), "", ""),
        ("predict: ratio seqlab / plain", median(predict_wall_ratios), median(predict_ratios), spread(predict_ratios), ""),
    ]
    figures: dict[str, float | str] = {
        "texts": float(texts),
        "eval_seqlab_texts_per_s": per_s([r[0].wall for r in eval_rounds]),
        "eval_plain_texts_per_s": per_s([r[2].wall for r in eval_rounds]),
        "eval_seqlab_texts_per_cpu_s": per_s([r[0].cpu for r in eval_rounds]),
        "eval_plain_texts_per_cpu_s": per_s([r[2].cpu for r in eval_rounds]),
        "eval_wall_ratio": median(eval_wall_ratios),
        "eval_outside_test_loop_cpu_s": median([whole.cpu - test.cpu for test, whole, _ in eval_rounds]),
        "predict_seqlab_texts_per_s": per_s([r[0].wall for r in predict_rounds]),
        "predict_plain_texts_per_s": per_s([r[2].wall for r in predict_rounds]),
        "predict_seqlab_texts_per_cpu_s": per_s([r[0].cpu for r in predict_rounds]),
        "predict_plain_texts_per_cpu_s": per_s([r[2].cpu for r in predict_rounds]),
        "predict_once_per_call_cpu_s": median([whole.cpu - loop.cpu for loop, whole, _ in predict_rounds]),
        "predict_wall_ratio": median(predict_wall_ratios),
    }
    for name, timings in command_rounds.items():
        rows.append((f"command: {name}", per_s([t.wall for t in timings]), per_s([t.cpu for t in timings]), "", f"{median([t.wall for t in timings]):.1f} s"))
        figures[f"{name.replace('seqlab-', '').replace(', ', '_').replace(' ', '_')}_command_s"] = median([t.wall for t in timings])
    for command in ("eval", "predict"):
        if f"seqlab-{command}, by length" in command_rounds:
            by_length, in_order = command_rounds[f"seqlab-{command}, by length"], command_rounds[f"seqlab-{command}, input order"]
            speedups = [b.cpu / a.cpu for a, b in zip(by_length, in_order)]
            rows.append((f"command: seqlab-{command} speed-up by length", "", median(speedups), spread(speedups), ""))
            figures[f"{command}_by_length_speedup"] = median(speedups)
    figures["eval_ratio"] = median(eval_ratios)
    figures["predict_ratio"] = median(predict_ratios)
    report(
        f"eval and predict throughput: {args.experiment}, {texts} IMDb test reviews, {args.rounds} rounds",
        ["", "texts/s", "texts/CPU-s (ratio: CPU)", "spread of CPU ratio", "wall"],
        rows,
        figures,
        notes=[
            f"corpus: {corpus}",
            "ratios are seqlab ÷ plain texts/s, medians over rounds alternating A B, B A; eval_ratio and predict_ratio use CPU time (target >= 0.95).",
            "the in-process sides batch by length (the defaults); the plain loops use the same batches. Commands: start-up, checkpoint, data and report included.",
        ],
    )


if __name__ == "__main__":
    main()
