"""The `shakespeare_gpt` preset (nanoGPT's CPU config: 4 layers, 4 heads, 128 wide, block 64, batch 12,
2000 iterations) run through `seqlab-train`, and with `--nanogpt PATH` nanoGPT's own train.py beside it.

For each seed the two commands run one after the other (the order alternating from seed to seed),
both with OMP_NUM_THREADS=--threads. Each side's loss is given by both estimators:

- full split: every validation character predicted once, in consecutive windows of 64 (seqlab's
  val/loss; for nanoGPT, computed here from the ckpt.pt it saves at its last evaluation);
- nanoGPT's estimate: the mean loss of 20 batches of 12 random validation windows (nanoGPT's own
  figure is one such draw; the script draws it `--draws` times from each trained model and gives
  the mean, which takes the estimate's sampling noise out).

Speed: the whole command's wall and CPU time, and training iterations per second without the
evaluations on both sides (nanoGPT: its logged per-iteration times, `--log_interval=1`, leaving
out the iterations that evaluated; seqlab: the training loop's time less its validations, from
the `TrainingTime` callback). The ratio is seqlab's figure over nanoGPT's, per seed; the median
and range over seeds are reported.

nanoGPT's train.py fixes its seed at 1337; it is run through a two-line wrapper that swaps in the
seed, from a temporary dir that holds data/shakespeare_char/ as its prepare.py writes it (run on a
copy of the local input.txt, so it downloads nothing) and its out_dir.

    python scripts/bench/nanogpt_parity.py --data-dir ../shared/data --nanogpt ../nanoGPT --seeds 42 1 2
    python scripts/bench/nanogpt_parity.py --nanogpt ../nanoGPT --iterations 200 --draws 10   # a quick check
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from harness import SHARED_DATA, report
from startup import seqlab_train

BENCH_DIR = Path(__file__).resolve().parent
# nanoGPT's README command for a CPU, less --max_iters and --lr_decay_iters (set by --iterations).
NANOGPT_CPU_ARGS = [
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--dropout=0.0",
]
NANOGPT_EVAL_BATCHES = 20
BATCH_SIZE = 12
BLOCK_SIZE = 64
# train.py calls torch.manual_seed(1337 + rank) and has no seed setting; argv: nanoGPT dir, seed, train.py's args.
SEEDED_NANOGPT = """\
import runpy, sys, torch
nanogpt, seed = sys.argv[1], int(sys.argv[2])
manual_seed = torch.manual_seed
torch.manual_seed = lambda s: manual_seed(seed + s - 1337)
sys.path.insert(0, nanogpt)
sys.argv = [nanogpt + "/train.py", *sys.argv[3:]]
runpy.run_path(nanogpt + "/train.py", run_name="__main__")
"""
NANOGPT_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.M)
NANOGPT_EVAL = re.compile(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", re.M)

Forward = Callable[[torch.Tensor], torch.Tensor]  # token ids (B, T) -> logits (B, T, V)


@torch.no_grad()
def full_split_loss(forward: Forward, val: torch.Tensor) -> float:
    """Every token of `val` after the first predicted once, in consecutive windows of BLOCK_SIZE (as seqlab's val/loss)."""
    total, count = 0.0, 0
    for start in range(0, len(val) - 1, BLOCK_SIZE * 64):
        chunk = val[start : start + BLOCK_SIZE * 64 + 1]
        whole = (len(chunk) - 1) // BLOCK_SIZE * BLOCK_SIZE
        pieces = [(chunk[:whole].view(-1, BLOCK_SIZE), chunk[1 : whole + 1].view(-1, BLOCK_SIZE))] if whole else []
        if whole < len(chunk) - 1:  # the split's short last window
            pieces.append((chunk[whole:-1][None], chunk[whole + 1 :][None]))
        for inputs, targets in pieces:
            total += F.cross_entropy(forward(inputs).flatten(0, 1), targets.flatten(), reduction="sum").item()
            count += targets.numel()
    return total / count


@torch.no_grad()
def nanogpt_estimates(forward: Forward, val: torch.Tensor, draws: int, seed: int = 0) -> torch.Tensor:
    """`draws` independent copies of nanoGPT's estimate_loss() on the validation split."""
    generator = torch.Generator().manual_seed(seed)
    estimates = torch.empty(draws)
    for draw in range(draws):
        batch_losses = []
        for _ in range(NANOGPT_EVAL_BATCHES):
            starts = torch.randint(len(val) - BLOCK_SIZE, (BATCH_SIZE,), generator=generator)
            windows = torch.stack([val[start : start + BLOCK_SIZE + 1] for start in starts])
            logits = forward(windows[:, :-1])
            batch_losses.append(F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()))
        estimates[draw] = torch.stack(batch_losses).mean()
    return estimates


def run_command(command: list[str], threads: int, cwd: Path | None = None, pythonpath: str | None = None) -> tuple[str, float, float]:
    """The command's stdout, wall seconds and CPU seconds (user + system of its processes)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return result.stdout, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_seqlab(seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from omegaconf import OmegaConf

    from seqlab.runs.trained import LANGUAGE_MODEL, load_trained_task

    run_dir = tmp / f"seqlab-{seed}"
    times_path = run_dir / "training_time.json"
    data_dir = str(Path(args.data_dir).resolve())
    command = [
        *seqlab_train(),
        "experiment=shakespeare_gpt",
        f"seed={seed}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        f"trainer.max_steps={args.iterations}",
        f"trainer.val_check_interval={500 if args.iterations % 500 == 0 else args.iterations}",
        "+callbacks.training_time._target_=training_time.TrainingTime",
        f"+callbacks.training_time.path={times_path}",
        *args.overrides,
    ]
    _, wall_s, cpu_s = run_command(command, args.threads, pythonpath=str(BENCH_DIR))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    times = json.loads(times_path.read_text())
    loaded = load_trained_task(
        str(run_dir / metrics["ckpt_path"]), OmegaConf.create({"data_dir": data_dir}), LANGUAGE_MODEL, "nanogpt_parity", trusted_packages=["training_time"]
    )
    loaded.datamodule.setup("validate")
    val = torch.from_numpy(np.concatenate(loaded.datamodule.segments["val"]).astype(np.int64))
    net = loaded.task.net.eval()
    return {
        "full_split": metrics["val/loss"],
        "estimate": nanogpt_estimates(net, val, args.draws).mean().item() if args.draws else float("nan"),
        "own_figure": metrics["val/loss"],
        "iterations_per_s": times["iterations"] / times["training_s"],
        "training_cpu_s": times["training_cpu_s"],
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }


def prepare_nanogpt(nanogpt: Path, data_dir: Path, workdir: Path) -> None:
    """data/shakespeare_char/{train,val}.bin and meta.pkl in `workdir` by nanoGPT's prepare.py, and its configurator.py."""
    prepared = workdir / "data" / "shakespeare_char"
    prepared.mkdir(parents=True)
    shutil.copy(nanogpt / "data" / "shakespeare_char" / "prepare.py", prepared)
    shutil.copy(data_dir / "tinyshakespeare" / "input.txt", prepared)  # present, so prepare.py downloads nothing
    subprocess.run([sys.executable, str(prepared / "prepare.py")], check=True, capture_output=True)
    shutil.copy(nanogpt / "configurator.py", workdir)  # train.py reads it from the working dir


def run_nanogpt(seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    nanogpt = Path(args.nanogpt).resolve()
    out_dir = workdir / f"out-{seed}"
    iterations = args.iterations
    command = [
        sys.executable,
        "-c",
        SEEDED_NANOGPT,
        str(nanogpt),
        str(seed),
        str(nanogpt / "config" / "train_shakespeare_char.py"),
        *NANOGPT_CPU_ARGS,
        f"--max_iters={iterations}",
        f"--lr_decay_iters={iterations}",
        f"--out_dir={out_dir}",
        # The last evaluation's model, not the one with the lowest (noisy) estimate.
        "--always_save_checkpoint=True",
        *([] if iterations % 250 == 0 else [f"--eval_interval={iterations}"]),
    ]
    stdout, wall_s, cpu_s = run_command(command, args.threads, cwd=workdir)
    evaluations = {int(step): float(loss) for step, loss in NANOGPT_EVAL.findall(stdout)}
    # An iteration's logged time includes the evaluation that started it; those are left out.
    step_ms = [float(ms) for step, ms in NANOGPT_ITER.findall(stdout) if int(step) not in evaluations]

    sys.path.insert(0, str(nanogpt))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    checkpoint = torch.load(out_dir / "ckpt.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    val = torch.from_numpy(np.fromfile(workdir / "data" / "shakespeare_char" / "val.bin", dtype=np.uint16).astype(np.int64))

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.contiguous()  # nanoGPT views its targets
        return model(inputs, inputs)[0]  # with targets (any), nanoGPT's forward returns every position's logits

    return {
        "full_split": full_split_loss(forward, val),
        "estimate": nanogpt_estimates(forward, val, args.draws).mean().item() if args.draws else float("nan"),
        "own_figure": evaluations[checkpoint["iter_num"]],
        "iterations_per_s": len(step_ms) / (sum(step_ms) / 1000),
        "training_cpu_s": float("nan"),  # nanoGPT logs wall time only
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f} to {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="holds tinyshakespeare/input.txt (downloaded there when absent)")
    parser.add_argument("--nanogpt", help="a clone of nanoGPT: also run its train.py with the same seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="seeds of both sides (default 42)")
    parser.add_argument("--iterations", type=int, default=2000, help="training iterations of each run (default 2000, the preset's)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of both commands (default 1: steady on a shared machine)")
    parser.add_argument("--draws", type=int, default=200, help="copies of nanoGPT's 20-batch val estimate drawn from each model (0: none)")
    parser.add_argument("overrides", nargs="*", help="extra seqlab-train overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.nanogpt and not (Path(args.nanogpt) / "train.py").is_file():
        raise SystemExit(f"--nanogpt {args.nanogpt}: no train.py there")

    sides = ["seqlab", "nanoGPT"] if args.nanogpt else ["seqlab"]
    results: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="seqlab-nanogpt-") as tmp:
        workdir = Path(tmp)
        if args.nanogpt:
            prepare_nanogpt(Path(args.nanogpt).resolve(), Path(args.data_dir).resolve(), workdir)
        for round_index, seed in enumerate(args.seeds):
            order = sides if round_index % 2 == 0 else sides[::-1]  # A B, then B A
            for side in order:
                run = run_seqlab(seed, args, workdir) if side == "seqlab" else run_nanogpt(seed, args, workdir)
                results[side].append(run)
                print(f"seed {seed} {side}: " + ", ".join(f"{k} {v:.4g}" for k, v in run.items()), file=sys.stderr, flush=True)

    columns = [
        "seed",
        "side",
        "val loss, full split",
        f"nanoGPT's estimate (mean of {args.draws})",
        "own figure",
        "training it/s",
        "command wall s",
        "command CPU s",
    ]
    keys = ["full_split", "estimate", "own_figure", "iterations_per_s", "wall_s", "cpu_s"]
    rows = [[seed, side, *(results[side][i][key] for key in keys)] for i, seed in enumerate(args.seeds) for side in sides]
    means = {side: {key: statistics.fmean(run[key] for run in results[side]) for key in keys} for side in sides}
    rows += [["mean", side, *(means[side][key] for key in keys)] for side in sides]
    figures: dict[str, float | str] = {f"seqlab_{key}_mean": value for key, value in means["seqlab"].items()}
    notes = [f"{args.iterations} iterations per run, OMP_NUM_THREADS={args.threads}; seqlab's own figure is its val/loss, nanoGPT's its last logged val loss"]
    if args.nanogpt:
        figures.update({f"nanogpt_{key}_mean": value for key, value in means["nanoGPT"].items()})
        ratios = {key: [a[key] / b[key] for a, b in zip(results["seqlab"], results["nanoGPT"])] for key in ("iterations_per_s", "wall_s", "cpu_s")}
        figures.update(
            iterations_per_s_ratio=statistics.median(ratios["iterations_per_s"]),
            iterations_per_s_ratio_min=min(ratios["iterations_per_s"]),
            iterations_per_s_ratio_max=max(ratios["iterations_per_s"]),
            wall_ratio=statistics.median(ratios["wall_s"]),
            cpu_ratio=statistics.median(ratios["cpu_s"]),
            full_split_difference=means["seqlab"]["full_split"] - means["nanoGPT"]["full_split"],
            estimate_difference=means["seqlab"]["estimate"] - means["nanoGPT"]["estimate"],
        )
        notes += [
            f"seqlab / nanoGPT, median (range) over seeds: training it/s {spread(ratios['iterations_per_s'])}, "
            f"command wall {spread(ratios['wall_s'])}, command CPU {spread(ratios['cpu_s'])}"
        ]
    report("nanoGPT parity: experiment=shakespeare_gpt against nanoGPT's train.py", columns, rows, figures, notes)


if __name__ == "__main__":
    main()
