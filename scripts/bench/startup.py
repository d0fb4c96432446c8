"""How long seqlab takes to start: `seqlab-train --help`, and a one-step run of the default config,
against `python -c "import torch, pytorch_lightning"` timed in the same run.

Targets: --help under 1 s (it must not import torch); the one-step run under 2x the import time.
Each command runs `--repeats` times, interleaved, and the median counts.

    python scripts/bench/startup.py
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import median, report

# The default run cut to one training step: it still builds the data (generate, fit the tokenizer,
# encode), the task and the trainer with every default callback and logger, fits, then validates
# and tests, and writes metrics.json.
ONE_STEP = ["trainer.max_steps=1"]


def seqlab_train() -> list[str]:
    script = Path(sys.executable).with_name("seqlab-train")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "seqlab.train"]


def wall_time(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    times: dict[str, list[float]] = {"import": [], "import_dynamo": [], "help": [], "one_step": []}
    with tempfile.TemporaryDirectory(prefix="seqlab-startup-") as tmp:
        tmp = Path(tmp)
        commands = {
            "import": [sys.executable, "-c", "import torch, pytorch_lightning"],
            # Not a target: the first torch optimizer (or Lightning's first self.log) imports
            # torch._dynamo, so every training run, plain PyTorch included, pays this too.
            "import_dynamo": [sys.executable, "-c", "import torch, pytorch_lightning, torch._dynamo"],
            "help": [*seqlab_train(), "--help"],
        }
        for index in range(args.repeats):
            for name, command in commands.items():
                times[name].append(wall_time(command, tmp))
            run_dir = tmp / f"one-step-{index}"
            times["one_step"].append(wall_time([*seqlab_train(), *ONE_STEP, f"hydra.run.dir={run_dir}"], tmp))
            if not (run_dir / "metrics.json").is_file():
                raise SystemExit("the one-step run wrote no metrics.json")

    import_s, dynamo_s, help_s, one_step_s = (median(times[name]) for name in ("import", "import_dynamo", "help", "one_step"))
    rows = [
        ('python -c "import torch, pytorch_lightning"', import_s, "", *times["import"]),
        ("... and torch._dynamo (any optimizer imports it)", dynamo_s, f"{dynamo_s / import_s:.2f}x import", *times["import_dynamo"]),
        ("seqlab-train --help", help_s, f"{help_s:.2f} s (target < 1 s)", *times["help"]),
        (f"seqlab-train {' '.join(ONE_STEP)}", one_step_s, f"{one_step_s / import_s:.2f}x import (target < 2x)", *times["one_step"]),
    ]
    report(
        "startup: wall time in seconds (median of the runs)",
        ["command", "median s", "against target", *(f"run {i + 1}" for i in range(args.repeats))],
        rows,
        {"import_s": import_s, "import_with_dynamo_s": dynamo_s, "help_s": help_s, "one_step_s": one_step_s, "one_step_over_import": one_step_s / import_s},
    )


if __name__ == "__main__":
    main()
