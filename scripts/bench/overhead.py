"""What seqlab costs over a hand-written PyTorch loop: the same model, data, batch size, optimiser and steps.

(a) seqlab: the config `seqlab-train` composes (default callbacks and logger included), built with
    seqlab.runs' builders, trained with `trainer.fit`; validation is off, as the plain loop has none.
(b) plain: a loop written here with the same model, loss, fused AdamW, schedule and gradient clipping.

Rounds alternate A B, B A in this one process, after one warm-up round of each, so load from other
jobs on the machine and what one side leaves behind hit both sides alike; the figure is the median of the per-round ratios.

    python scripts/bench/overhead.py --model lstm
    python scripts/bench/overhead.py --model gpt --data-dir ../shared/data
"""

import argparse
import contextlib
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from harness import SHARED_DATA, Timing, compose_run_config, median, report, set_threads, timed
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from seqlab import runs
from seqlab.tasks.optim import build_optimizer

# Training steps only: no validation (the plain loop has none), no epoch limit before max_steps.
TRAINING_ONLY = ["trainer.max_epochs=-1", "+trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "test=false"]

WORKLOADS = {
    "lstm": {"overrides": [], "steps": 100},
    "gpt": {"overrides": ["experiment=shakespeare_gpt"], "steps": 40},
}


class TrainingLoopTimer(pl.Callback):
    """Times the training loop alone, from the first batch's start to the last batch's end: what
    `fit` costs per step, without what it costs once per run (setting up, the summary, teardown)."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.started: tuple[float, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.started is None:
            self.started = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timing.wall = time.perf_counter() - self.started[0]
        self.timing.cpu = time.process_time() - self.started[1]


def seqlab_run(cfg: DictConfig, datamodule, steps: int, run_dir: Path, loop: Timing | None = None) -> Timing:
    """Time of `trainer.fit` for `steps` steps, with the trainer, callbacks and logger of the config;
    `loop`, if given, receives the time of the training loop alone."""
    with open_dict(cfg):
        cfg.trainer.max_steps = steps
        cfg.paths.output_dir = str(run_dir)
    torch.manual_seed(0)
    task = runs.build_task(cfg, datamodule)
    trainer = runs.build_trainer(cfg, datamodule)
    for callback in trainer.callbacks:
        # Render the progress bar as in a terminal, but into /dev/null so the table stays readable.
        if hasattr(callback, "_console_kwargs"):
            callback._console_kwargs = {"force_terminal": True, "file": open(os.devnull, "w"), "width": 120}
    if loop is not None:
        trainer.callbacks.append(TrainingLoopTimer(loop))
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), timed() as timing:
        trainer.fit(task, datamodule=datamodule)
    assert trainer.global_step == steps, f"seqlab ran {trainer.global_step} steps, not {steps}"
    return timing


def profile_seqlab_run(cfg: DictConfig, datamodule, steps: int, run_dir: Path, out: Path) -> None:
    """Where a seqlab run's time goes, as pyinstrument's call tree (`pip install pyinstrument`)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    with profiler:
        seqlab_run(cfg, datamodule, steps, run_dir)
    tree = profiler.output_text(show_all=False, color=False)
    flat = profiler.output_text(show_all=True, color=False, flat=True)
    out.write_text(f"{tree}\n\nSelf time by function:\n{flat}")
    print(f"profile of a seqlab run of {steps} steps: {out}", file=sys.stderr)


def plain_classification_batches(datamodule) -> Callable[[], object]:
    """A DataLoader over the same encoded texts with a pad_sequence collate, as one writes it by hand."""
    dataset = datamodule.datasets["train"]
    pad_id = datamodule.tokenizer.pad_id
    examples = [(torch.as_tensor(dataset.ids[i], dtype=torch.long), int(dataset.labels[i])) for i in range(len(dataset))]

    def collate(batch):
        ids = [x if len(x) else torch.tensor([pad_id]) for x, _ in batch]
        return (
            pad_sequence(ids, batch_first=True, padding_value=pad_id),
            torch.tensor([len(x) for x in ids]),
            torch.tensor([y for _, y in batch]),
        )

    return lambda: DataLoader(examples, batch_size=datamodule.batch_size, shuffle=True, collate_fn=collate)


def plain_classification(cfg: DictConfig, datamodule, steps: int) -> Timing:
    torch.manual_seed(0)
    model = instantiate(cfg.model, **datamodule.model_dims())

    def loss_of(batch) -> torch.Tensor:
        input_ids, lengths, labels = batch
        return F.cross_entropy(model(input_ids, lengths), labels)

    return plain_loop(cfg, model, plain_classification_batches(datamodule), loss_of, steps)


def plain_language_model(cfg: DictConfig, datamodule, steps: int) -> Timing:
    """nanoGPT's loop: random windows of the training tokens, stacked."""
    torch.manual_seed(0)
    model = instantiate(cfg.model, **datamodule.model_dims())
    data = torch.as_tensor(datamodule.segments["train"][0], dtype=torch.long)
    block, batch_size = datamodule.block_size, datamodule.batch_size

    def batches():
        while True:
            ix = torch.randint(len(data) - block, (batch_size,))
            yield torch.stack([data[i : i + block] for i in ix]), torch.stack([data[i + 1 : i + 1 + block] for i in ix])

    def loss_of(batch) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))

    return plain_loop(cfg, model, batches, loss_of, steps)


def plain_loop(cfg: DictConfig, model: nn.Module, batches: Callable[[], object], loss_of: Callable, steps: int) -> Timing:
    """Time of `steps` steps of a hand-written loop: same optimiser, schedule and clipping as the config."""
    with timed() as timing:
        _plain_steps(cfg, model, batches, loss_of, steps)
    return timing


def _plain_steps(cfg: DictConfig, model: nn.Module, batches: Callable[[], object], loss_of: Callable, steps: int) -> None:
    optimizer = build_optimizer(instantiate(cfg.optimizer), model)
    schedule = instantiate(cfg.scheduler)(optimizer, total_steps=steps)["scheduler"] if cfg.get("scheduler") else None
    clip = cfg.trainer.get("gradient_clip_val")
    model.train()
    step = 0
    while step < steps:
        for batch in batches():
            loss = loss_of(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            step += 1
            if step == steps:
                break
    last_loss = loss.item()  # the one sync a loop needs to say where it ended
    assert math.isfinite(last_loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(WORKLOADS), default="lstm")
    parser.add_argument("--steps", type=int, help="training steps per round (default: per model)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds after the warm-up round, A B then B A alternately")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: steady on a shared machine)")
    parser.add_argument("--profile", metavar="FILE", help="also profile one more seqlab run with pyinstrument and write the call tree here")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where the gpt workload finds tinyshakespeare/")
    parser.add_argument("overrides", nargs="*", help="extra seqlab-train overrides, e.g. data.batch_size=32")
    args = parser.parse_args()
    workload = WORKLOADS[args.model]
    steps = args.steps or workload["steps"]

    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "seqlab"):
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="seqlab-overhead-") as tmp:
        tmp = Path(tmp)
        cfg = compose_run_config([*workload["overrides"], f"paths.data_dir={args.data_dir}", *TRAINING_ONLY, *args.overrides], tmp / "run")
        datamodule = runs.build_datamodule(cfg)
        plain = plain_language_model if hasattr(datamodule, "segments") else plain_classification

        seqlab_run(cfg, datamodule, max(5, steps // 10), tmp / "warmup")
        plain(cfg, datamodule, max(5, steps // 10))
        rounds: list[tuple[Timing, Timing, Timing]] = []
        for index in range(args.rounds):
            loop = Timing()
            # A B, then B A: whatever one side leaves behind (garbage, a warm allocator) falls on each side alike.
            if index % 2:
                theirs = plain(cfg, datamodule, steps)
                ours = seqlab_run(cfg, datamodule, steps, tmp / f"round{index}", loop)
            else:
                ours = seqlab_run(cfg, datamodule, steps, tmp / f"round{index}", loop)
                theirs = plain(cfg, datamodule, steps)
            rounds.append((ours, theirs, loop))
            print(
                f"round {index + 1}: seqlab {ours.wall:.2f} s ({ours.cpu:.2f} s CPU, loop {loop.cpu:.2f}), plain {theirs.wall:.2f} s ({theirs.cpu:.2f} s CPU)",
                file=sys.stderr,
                flush=True,
            )
        if args.profile:
            profile_seqlab_run(cfg, datamodule, steps, tmp / "profiled", Path(args.profile))

    rows = [
        (f"round {i + 1}", steps / a.wall, steps / b.wall, b.wall / a.wall, steps / a.cpu, steps / b.cpu, b.cpu / a.cpu, b.cpu / loop.cpu, a.cpu - loop.cpu)
        for i, (a, b, loop) in enumerate(rounds)
    ]
    medians = [median([row[column] for row in rows]) for column in range(1, 9)]
    rows.append(("median", *medians))
    report(
        f"overhead: {args.model}, {steps} training steps per run, batch size {datamodule.batch_size}",
        [
            "",
            "seqlab steps/s",
            "plain steps/s",
            "wall ratio",
            "seqlab steps/CPU-s",
            "plain steps/CPU-s",
            "CPU ratio",
            "CPU ratio, loop only",
            "once per fit, CPU s",
        ],
        rows,
        {
            "seqlab_steps_per_s": medians[0],
            "plain_steps_per_s": medians[1],
            "wall_overhead_ratio": medians[2],
            "seqlab_steps_per_cpu_s": medians[3],
            "plain_steps_per_cpu_s": medians[4],
            "loop_overhead_ratio": medians[6],
            "fit_fixed_cpu_s": medians[7],
            "overhead_ratio": medians[5],
        },
        notes=[
            f"seqlab: trainer.fit through the composed config ({', '.join(TRAINING_ONLY)}); plain: a loop in this script.",
            "ratios are seqlab ÷ plain steps/s, medians over rounds; overhead_ratio uses CPU time, which other jobs on the machine do not inflate.",
            "loop only: seqlab's time from its first batch to its last (fit's setup and teardown left out); once per fit: the rest of fit's CPU time.",
        ],
    )


if __name__ == "__main__":
    main()
