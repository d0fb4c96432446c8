"""How long seqlab takes to start: `seqlab-train --help`, and a one-step run of the default config,
against `python -c "import torch, pytorch_lightning"` timed in the same run.

Targets: --help under 1 s (it must not import torch); the one-step run under 2x the import time.
Each command runs `--repeats` times, interleaved, and the median counts.

    python scripts/bench/startup.py
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Timing, median, report

# The default run cut to one training step: it still builds the data (generate, fit the tokenizer,
# encode), the task and the trainer with every default callback and logger, fits, then validates
# and tests, and writes metrics.json.
ONE_STEP = ["trainer.max_steps=1"]


def seqlab_train() -> list[str]:
    script = Path(sys.executable).with_name("seqlab-train")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "seqlab.cli.train"]


def run_timed(command: list[str], cwd: Path, threads: int) -> Timing:
    """Wall time of the command, and the CPU time (user + system) its processes used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return Timing(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the commands (default 1: steady on a shared machine)")
    args = parser.parse_args()

    times: dict[str, list[Timing]] = {"import": [], "help": [], "one_step": []}
    with tempfile.TemporaryDirectory(prefix="seqlab-startup-") as tmp:
        tmp = Path(tmp)
        commands = {
            "import": [sys.executable, "-c", "import torch, pytorch_lightning"],
            "help": [*seqlab_train(), "--help"],
        }
        for index in range(args.repeats):
            for name, command in commands.items():
                times[name].append(run_timed(command, tmp, args.threads))
            run_dir = tmp / f"one-step-{index}"
            times["one_step"].append(run_timed([*seqlab_train(), *ONE_STEP, f"hydra.run.dir={run_dir}"], tmp, args.threads))
            if not (run_dir / "metrics.json").is_file():
                raise SystemExit("the one-step run wrote no metrics.json")

    wall = {name: median([t.wall for t in runs]) for name, runs in times.items()}
    cpu = {name: median([t.cpu for t in runs]) for name, runs in times.items()}
    labels = {
        "import": 'python -c "import torch, pytorch_lightning"',
        "help": "seqlab-train --help",
        "one_step": f"seqlab-train {' '.join(ONE_STEP)}",
    }
    targets = {
        "import": "",
        "help": "< 1 s",
        "one_step": f"< 2x import: {wall['one_step'] / wall['import']:.2f}x wall, {cpu['one_step'] / cpu['import']:.2f}x CPU",
    }
    rows = [(labels[name], wall[name], cpu[name], targets[name], ", ".join(f"{t.wall:.2f}" for t in times[name])) for name in times]
    report(
        f"startup: seconds, medians of {args.repeats} interleaved runs",
        ["command", "wall s", "CPU s", "target", "wall s of each run"],
        rows,
        {
            "import_s": wall["import"],
            "help_s": wall["help"],
            "help_cpu_s": cpu["help"],
            "one_step_s": wall["one_step"],
            "one_step_over_import_cpu": cpu["one_step"] / cpu["import"],
            "one_step_over_import": wall["one_step"] / wall["import"],
        },
        notes=[
            "CPU s: user + system time of the command's processes, which other jobs on the machine do not inflate.",
            f"OMP_NUM_THREADS={args.threads} for every command.",
        ],
    )


if __name__ == "__main__":
    main()
