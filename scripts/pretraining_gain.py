"""Fine-tuned accuracy against pretraining minutes: what a pretraining run buys, as a figure.

Each fine-tuned run dir (`seqlab-train ... finetune.from_ckpt=<ckpt>`) stands at the training time
of the checkpoint it started from: the minutes of training and validation that Lightning's Timer
kept in that checkpoint (a run with `trainer.max_time` set, as the pretraining presets have).
`--scratch` run dirs, the same classifier trained without pretraining, stand at 0 minutes. Runs
at the same minutes (seeds) are drawn as their mean with error bars from their lowest to their
highest; `--reference NAME=VALUE` adds a horizontal line (another preset's accuracy).

    python scripts/pretraining_gain.py runs/ft_s42 runs/ft_s1 runs/ft_s2 --scratch runs/scratch \\
        --reference "imdb_cnn (from scratch)=0.9039" --out docs/figures/imdb_pretraining_gain.png
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from seqlab.errors import SeqlabError
from seqlab.runs import run_checkpoint


def fail(message: str) -> None:
    sys.exit(f"pretraining_gain.py: {message}")


def run_metric(run_dir: Path, metric: str) -> float:
    path = run_dir / "metrics.json"
    if not path.is_file():
        fail(f"{run_dir} has no metrics.json (pass the run dir of a finished seqlab-train run)")
    metrics = json.loads(path.read_text())
    if metric not in metrics:
        fail(f"{path} has no {metric!r}; it has: {', '.join(sorted(metrics))}")
    return float(metrics[metric])


def pretraining_minutes(run_dir: Path) -> float:
    """Training and validation minutes of the checkpoint the run was fine-tuned from."""
    config_path = run_dir / ".hydra" / "config.yaml"
    if not config_path.is_file():
        fail(f"{run_dir} has no .hydra/config.yaml (pass the run dir of a seqlab-train run)")
    source = OmegaConf.select(OmegaConf.load(config_path), "finetune.from_ckpt", default=None)
    if not source:
        fail(f"{run_dir} was not fine-tuned from a checkpoint (no finetune.from_ckpt); pass it with --scratch")
    checkpoint_path = Path(source)
    if not checkpoint_path.exists():
        fail(f"{run_dir} was fine-tuned from {source}, which is not there (run this from where that run was started)")
    if checkpoint_path.is_dir():  # a pretraining run dir: its best checkpoint, as finetune.from_ckpt read it
        try:
            checkpoint_path = Path(run_checkpoint(checkpoint_path))
        except SeqlabError as error:
            fail(str(error))
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    timer = checkpoint.get("callbacks", {}).get("Timer")
    if not timer:
        fail(f"{source} keeps no training time (Lightning's Timer is there only when trainer.max_time is set)")
    elapsed = timer["time_elapsed"]
    return (elapsed.get("train", 0.0) + elapsed.get("validate", 0.0)) / 60


def draw(points: dict[float, list[float]], references: list[tuple[str, float]], metric: str, title: str, out: Path) -> None:
    minutes = sorted(points)
    means = [sum(points[m]) / len(points[m]) for m in minutes]
    below = [mean - min(points[m]) for m, mean in zip(minutes, means)]
    above = [max(points[m]) - mean for m, mean in zip(minutes, means)]
    figure = Figure(figsize=(5.5, 3.6))
    figure.subplots_adjust(left=0.14, right=0.97, top=0.9, bottom=0.14)
    axes = figure.add_subplot()
    axes.errorbar(minutes, means, yerr=[below, above], marker="o", capsize=3, label="fine-tuned (0: from scratch)")
    for m, mean in zip(minutes, means):
        seeds = len(points[m])
        axes.annotate(f"{mean:.4f}" + (f" ({seeds} seeds)" if seeds > 1 else ""), (m, mean), textcoords="offset points", xytext=(6, -12), fontsize=8)
    for name, value in references:
        axes.axhline(value, linestyle="--", linewidth=1, color="grey")
        axes.annotate(f"{name}: {value:.4f}", (0, value), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    axes.set_xlabel("pretraining minutes (training and validation)")
    axes.set_ylabel(metric)
    axes.set_title(title, fontsize=10)
    axes.margins(x=0.15)  # room for the last point's label
    axes.grid(alpha=0.3)
    axes.legend(loc="center right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("finetuned", nargs="+", type=Path, help="run dirs of fine-tuned runs")
    parser.add_argument("--scratch", nargs="*", type=Path, default=[], help="run dirs of the same classifier without pretraining (0 minutes)")
    parser.add_argument("--metric", default="test/acc")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE", help="a horizontal line, e.g. another preset's accuracy")
    parser.add_argument("--title", default="Fine-tuned accuracy against pretraining time")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()

    references = []
    for reference in args.reference:
        name, _, value = reference.rpartition("=")
        try:
            references.append((name, float(value)))
        except ValueError:
            fail(f"--reference {reference!r}: expected NAME=VALUE with a number")
    points: dict[float, list[float]] = defaultdict(list)
    for run_dir in args.scratch:
        points[0.0].append(run_metric(run_dir, args.metric))
    for run_dir in args.finetuned:
        metric = run_metric(run_dir, args.metric)
        points[round(pretraining_minutes(run_dir), 1)].append(metric)
    for minutes in sorted(points):
        values = ", ".join(f"{value:.4f}" for value in points[minutes])
        print(f"{minutes:6.1f} min: {args.metric} {values}")
    draw(points, references, args.metric, args.title, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
