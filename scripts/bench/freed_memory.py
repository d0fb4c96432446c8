"""What `keep_freed_memory` saves: whole `seqlab-train` commands with it on (the default) and off,
alternating, each timed from outside (wall, CPU of the process, page faults) and inside (a Lightning
Timer over the fit).

    python scripts/bench/freed_memory.py [--runs 3] [overrides ...]

Default: the default run (LSTM on generated reviews); e.g. `experiment=shakespeare_gpt
paths.data_dir=../shared/data trainer.max_steps=500` for the GPT.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import median, report
from startup import seqlab_train


def run(overrides: list[str], keep: bool, run_dir: Path, threads: int) -> dict[str, float]:
    command = [
        *seqlab_train(),
        f"hydra.run.dir={run_dir}",
        f"keep_freed_memory={str(keep).lower()}",
        f"threads={threads}",
        "test=false",
        "+callbacks.timer._target_=pytorch_lightning.callbacks.Timer",
        *overrides,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "page_faults": after.ru_minflt - before.ru_minflt,
        "fit_s": checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"],
        "steps": metrics["global_step"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each setting, alternating (kept, system, system, kept, ...)")
    parser.add_argument("--threads", type=int, default=1, help="threads= and OMP_NUM_THREADS for the runs")
    parser.add_argument("overrides", nargs="*", help="seqlab-train overrides for both settings")
    args = parser.parse_args()

    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="seqlab-freed-memory-") as tmp:
        for index in range(args.runs):
            for keep in (True, False) if index % 2 == 0 else (False, True):
                figures = run(args.overrides, keep, Path(tmp) / f"{keep}-{index}", args.threads)
                results[keep].append(figures)
                print(f"keep_freed_memory={keep}: {figures}", file=sys.stderr, flush=True)

    def med(keep: bool, name: str) -> float:
        return median([figures[name] for figures in results[keep]])

    steps = results[True][0]["steps"]
    rows = [
        (
            "on (default)" if keep else "off",
            med(keep, "fit_s"),
            steps / med(keep, "fit_s"),
            med(keep, "wall_s"),
            med(keep, "cpu_s"),
            med(keep, "page_faults") / steps,
        )
        for keep in (True, False)
    ]
    report(
        f"seqlab-train {' '.join(args.overrides) or '(the default run)'}: {steps} steps, {args.runs} runs each, medians",
        ["keep_freed_memory", "fit s", "steps/s", "command wall s", "command CPU s", "page faults per step"],
        rows,
        {
            "fit_speedup": med(False, "fit_s") / med(True, "fit_s"),
            "wall_speedup": med(False, "wall_s") / med(True, "wall_s"),
            "page_faults_per_step_kept": med(True, "page_faults") / steps,
            "page_faults_per_step_system": med(False, "page_faults") / steps,
        },
        notes=["fit s: the Timer callback's training time (validation included); page faults: minor faults of the whole command."],
    )


if __name__ == "__main__":
    main()
