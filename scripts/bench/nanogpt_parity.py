"""The `shakespeare_gpt` preset (nanoGPT's CPU config: 4 layers, 4 heads, 128 wide, block 64, batch 12,
2000 iterations) run through `seqlab-train`, against nanoGPT's reported figures.

nanoGPT's README reports val loss 1.88 after "about 3 minutes" on a laptop CPU for this config. The
run uses the real command line; a Lightning Timer callback added by override times fitting, which
includes the validations every 500 steps (nanoGPT's time includes its evaluations too).

    python scripts/bench/nanogpt_parity.py --data-dir ../shared/data
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness import SHARED_DATA, report
from startup import seqlab_train

NANOGPT_VAL_LOSS = 1.88
NANOGPT_SECONDS = 180.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="holds tinyshakespeare/input.txt (downloaded there when absent)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (default 1: steady on a shared machine)")
    parser.add_argument("--run-dir", help="keep the run here (default: a temporary dir)")
    parser.add_argument("overrides", nargs="*", help="extra overrides, e.g. trainer.max_steps=200 for a quick check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="seqlab-nanogpt-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "run"
        command = [
            *seqlab_train(),
            "experiment=shakespeare_gpt",
            f"paths.data_dir={Path(args.data_dir).resolve()}",
            f"hydra.run.dir={run_dir}",
            "+callbacks.timer._target_=pytorch_lightning.callbacks.Timer",
            *args.overrides,
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        wall_s = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        fit_s = checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"]

    steps = int(metrics["global_step"])
    rows = [
        ("iterations", steps, 2000),
        ("fit time (s)", fit_s, f"~{NANOGPT_SECONDS:.0f} (a laptop CPU)"),
        ("iterations/s", steps / fit_s, f"~{2000 / NANOGPT_SECONDS:.1f}"),
        ("val/loss", metrics["val/loss"], NANOGPT_VAL_LOSS),
        ("wall time of the command (s)", wall_s, ""),
    ]
    report(
        "nanoGPT parity: experiment=shakespeare_gpt",
        ["", "seqlab", "nanoGPT"],
        rows,
        {"iterations": steps, "fit_s": fit_s, "wall_s": wall_s, "iterations_per_s": steps / fit_s, "val_loss": metrics["val/loss"]},
        notes=[f"command: seqlab-train {' '.join(command[len(seqlab_train()):])}", f"OMP_NUM_THREADS={args.threads}"],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
