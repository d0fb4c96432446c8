"""The `shakespeare_gpt` preset (nanoGPT's CPU config: 4 layers, 4 heads, 128 wide, block 64, batch 12,
2000 iterations) run through `seqlab-train`, against nanoGPT's reported figures.

nanoGPT's README reports val loss 1.88 after "about 3 minutes" on a laptop CPU for this config. The
run uses the real command line; a Lightning Timer callback added by override times fitting, which
includes the validations every 500 steps (nanoGPT's time includes its evaluations too).

seqlab's val/loss covers the whole validation split, every character once. nanoGPT's figure is an
estimate from 20 batches of 12 random windows; the script also draws that estimate `--draws` times
from the trained model, so the two figures can be compared with the estimate's spread in view.

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

import numpy as np
import torch
import torch.nn.functional as F
from harness import SHARED_DATA, report
from startup import seqlab_train

NANOGPT_VAL_LOSS = 1.88
NANOGPT_SECONDS = 180.0
# nanoGPT's CPU command: --eval_iters=20 batches of --batch_size=12 windows of --block_size=64.
NANOGPT_EVAL_BATCHES = 20
NANOGPT_BATCH_SIZE = 12


@torch.no_grad()
def nanogpt_estimates(ckpt_path: str, data_dir: str, draws: int, seed: int = 0) -> torch.Tensor:
    """`draws` independent copies of nanoGPT's estimate_loss() on the validation split, for the checkpoint's model."""
    from omegaconf import OmegaConf

    from seqlab.runs.trained import LANGUAGE_MODEL, load_trained_task

    loaded = load_trained_task(ckpt_path, OmegaConf.create({"data_dir": data_dir}), LANGUAGE_MODEL, "nanogpt_parity")
    loaded.datamodule.setup("validate")
    val = torch.from_numpy(np.concatenate(loaded.datamodule.segments["val"]).astype(np.int64))
    block_size = loaded.datamodule.block_size
    generator = torch.Generator().manual_seed(seed)
    estimates = torch.empty(draws)
    for draw in range(draws):
        batch_losses = []
        for _ in range(NANOGPT_EVAL_BATCHES):
            starts = torch.randint(len(val) - block_size, (NANOGPT_BATCH_SIZE,), generator=generator)
            windows = torch.stack([val[start : start + block_size + 1] for start in starts])
            logits = loaded.task.net(windows[:, :-1])
            batch_losses.append(F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten()))
        estimates[draw] = torch.stack(batch_losses).mean()
    return estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="holds tinyshakespeare/input.txt (downloaded there when absent)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for the run (default 1: steady on a shared machine)")
    parser.add_argument("--run-dir", help="keep the run here (default: a temporary dir)")
    parser.add_argument("--draws", type=int, default=200, help="copies of nanoGPT's 20-batch val estimate to draw (0: none)")
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
        estimates = nanogpt_estimates(str(run_dir / metrics["ckpt_path"]), str(Path(args.data_dir).resolve()), args.draws) if args.draws else None

    steps = int(metrics["global_step"])
    rows = [
        ("iterations", steps, 2000),
        ("fit time (s)", fit_s, f"~{NANOGPT_SECONDS:.0f} (a laptop CPU)"),
        ("iterations/s", steps / fit_s, f"~{2000 / NANOGPT_SECONDS:.1f}"),
        ("val/loss", metrics["val/loss"], NANOGPT_VAL_LOSS),
        ("wall time of the command (s)", wall_s, ""),
    ]
    figures = {"iterations": steps, "fit_s": fit_s, "wall_s": wall_s, "iterations_per_s": steps / fit_s, "val_loss": metrics["val/loss"]}
    if estimates is not None:
        low, high = torch.quantile(estimates, torch.tensor([0.05, 0.95])).tolist()
        share = (estimates <= NANOGPT_VAL_LOSS).float().mean().item()
        rows += [
            (f"nanoGPT-style val estimate, mean of {args.draws} draws", estimates.mean().item(), NANOGPT_VAL_LOSS),
            ("  its standard deviation", estimates.std().item(), ""),
            ("  5th to 95th percentile", f"{low:.3f} to {high:.3f}", ""),
            (f"  share of draws <= {NANOGPT_VAL_LOSS}", share, ""),
        ]
        figures.update(
            nanogpt_estimate_mean=estimates.mean().item(),
            nanogpt_estimate_std=estimates.std().item(),
            nanogpt_estimate_p05=low,
            nanogpt_estimate_p95=high,
            nanogpt_estimate_share_at_or_below_target=share,
        )
    report(
        "nanoGPT parity: experiment=shakespeare_gpt",
        ["", "seqlab", "nanoGPT"],
        rows,
        figures,
        notes=[f"command: seqlab-train {' '.join(command[len(seqlab_train()) :])}", f"OMP_NUM_THREADS={args.threads}"],
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
