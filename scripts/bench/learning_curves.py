"""CPU time of drawing the end-of-fit learning curves (seqlab.reports.learning_curves), the largest
part of `fit`'s fixed cost: a classifier's two panels (loss and the monitored metric) and a language
model's one, for a history of `--steps` training losses and a validation every `--steps / 5`.

The figure is drawn `--draws` times in one process after two warm-up draws (fonts and glyphs
cached, as in a process that has drawn once); the median is the figure. To compare two versions
of the plot, run this script against each (e.g. `PYTHONPATH=<other checkout>/src`).
"""

import argparse
import random
import tempfile
import time
from pathlib import Path

from harness import median, report

from seqlab.reports.learning_curves import LearningCurves


def history(steps: int, metric: str | None) -> dict[str, list[list[float]]]:
    """A training loss at every step, and validations (and a train metric per 'epoch') every fifth of the run."""
    rng = random.Random(0)
    every = max(1, steps // 5)
    curves = {
        "train/loss": [[step, 0.7 - 0.3 * step / steps + 0.05 * rng.random()] for step in range(1, steps + 1)],
        "val/loss": [[step, 0.6 - 0.2 * step / steps] for step in range(every, steps + 1, every)],
    }
    if metric:
        curves[f"train/{metric}"] = [[step, 0.7 + 0.2 * step / steps] for step in range(every, steps + 1, every)]
        curves[f"val/{metric}"] = [[step, 0.6 + 0.2 * step / steps] for step in range(every, steps + 1, every)]
    return curves


def draw_cpu_ms(monitor: str, steps: int, draws: int, out: Path) -> tuple[float, int]:
    """Median CPU ms of one draw, and the PNG's size in bytes."""
    metric = monitor.partition("/")[2]
    curves = LearningCurves(out / "learning_curves.png", monitor)
    curves.history = history(steps, None if metric == "loss" else metric)
    times = []
    for _ in range(draws + 2):
        start = time.process_time()
        curves.draw()
        times.append(time.process_time() - start)
    return 1000 * median(times[2:]), curves.path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="training losses in the history (overhead.py's LSTM fit: 100)")
    parser.add_argument("--draws", type=int, default=30, help="timed draws per figure")
    args = parser.parse_args()
    rows, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="seqlab-curves-") as tmp:
        for name, monitor in (("classifier", "val/acc"), ("language_model", "val/loss")):
            cpu_ms, size = draw_cpu_ms(monitor, args.steps, args.draws, Path(tmp) / name)
            rows.append((name, monitor, cpu_ms, size))
            figures[f"{name}_draw_cpu_ms"] = cpu_ms
    report(
        f"learning curves: CPU per draw, {args.steps} steps, median of {args.draws}",
        ["figure", "monitor", "CPU ms", "PNG bytes"],
        rows,
        figures,
        ["a classifier draws two panels (loss, the monitored metric), a language model one (loss)."],
    )


if __name__ == "__main__":
    main()
