"""What seqlab costs over a hand-written PyTorch loop: the same model, data, batch size, optimiser and steps.

(a) seqlab: the config `seqlab-train` composes (default callbacks and logger included), built with
    seqlab.runs' builders, trained with `trainer.fit`; validation is off, as the plain loop has none.
(b) plain: a loop written here with the same model, loss, fused AdamW, schedule and gradient clipping.

Three measurements, all in this one process:
- Per step, in lockstep: one `fit` in which, after each of seqlab's steps, the plain loop takes one
  step of its own (a callback runs it, last of all callbacks). seqlab's step is the time from the end
  of one plain step to the start of the next (all of Lightning's and seqlab's per-step work, data
  fetching included); the plain step is its own time. This machine's speed changes by half from one
  second to the next (the other virtual CPU's load); stepping the two in turn puts both under the
  same speed, which rounds of whole runs cannot. Steps are grouped into rounds; the figure is the
  median of the per-round ratios, with their range.
- Lightning's own cost, the same way: the plain loop's model, loss, optimiser and schedule in the
  least LightningModule and Trainer, once with Lightning's automatic optimisation and once with its
  manual one (`--no-bare` leaves both out).
- Per fit: whole `fit` calls against whole plain loops, alternating A B, B A after a warm-up round;
  `fit`'s fixed cost (setting up, the model summary, the end-of-fit plot, teardown) is the fit's CPU
  time less its training loop's.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from harness import SHARED_DATA, Timing, compose_run_config, median, print_table, report_figures, set_threads, timed
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from seqlab import runs
from seqlab.data.language_modeling import IGNORE_INDEX
from seqlab.launch.memory import keep_freed_memory
from seqlab.tasks.optim import build_optimizer

# Training steps only: no validation (the plain loop has none), no epoch limit before max_steps.
TRAINING_ONLY = ["trainer.max_epochs=-1", "+trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "test=false"]

WORKLOADS = {
    "lstm": {"overrides": [], "steps": 100, "round_steps": 20},
    "gpt": {"overrides": ["experiment=shakespeare_gpt"], "steps": 40, "round_steps": 10},
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


def seqlab_run(cfg: DictConfig, datamodule, steps: int, run_dir: Path, loop: Timing | None = None, lockstep: "Lockstep | None" = None) -> Timing:
    """Time of `trainer.fit` for `steps` steps, with the trainer, callbacks and logger of the config;
    `loop`, if given, receives the time of the training loop alone; `lockstep`, if given, runs last
    after each step."""
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
    if lockstep is not None:
        trainer.callbacks.append(lockstep)
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


@dataclass
class PlainWorkload:
    """What the hand-written loop trains: a model, a function giving a fresh pass over the batches, the loss."""

    model: nn.Module
    batches: Callable[[], object]
    loss_of: Callable[[object], torch.Tensor]


def plain_classification(cfg: DictConfig, datamodule) -> PlainWorkload:
    torch.manual_seed(0)
    model = instantiate(cfg.model, **datamodule.model_dims())

    def loss_of(batch) -> torch.Tensor:
        input_ids, lengths, labels = batch
        return F.cross_entropy(model(input_ids, lengths), labels)

    return PlainWorkload(model, plain_classification_batches(datamodule), loss_of)


def plain_language_model(cfg: DictConfig, datamodule) -> PlainWorkload:
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

    return PlainWorkload(model, batches, loss_of)


def plain_workload(cfg: DictConfig, datamodule) -> PlainWorkload:
    return plain_language_model(cfg, datamodule) if hasattr(datamodule, "segments") else plain_classification(cfg, datamodule)


def plain_loop(cfg: DictConfig, datamodule, steps: int) -> Timing:
    """Time of `steps` steps of a hand-written loop: same optimiser, schedule and clipping as the config."""
    workload = plain_workload(cfg, datamodule)
    with timed() as timing:
        for _ in plain_steps(cfg, workload, steps):
            pass
    return timing


def plain_steps(cfg: DictConfig, workload: PlainWorkload, steps: int) -> Iterator[None]:
    """The hand-written loop, paused after each of its `steps` steps."""
    model, batches, loss_of = workload.model, workload.batches, workload.loss_of
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
            yield
    last_loss = loss.item()  # the one sync a loop needs to say where it ended
    assert math.isfinite(last_loss)
    yield


class Lockstep(pl.Callback):
    """Runs one plain step after each of seqlab's steps and times both, in rounds of `round_steps`
    steps: per round, (seqlab CPU s, plain CPU s). The first step of each side is a warm-up. Also
    keeps the Lightning side's CPU s of each step apart by whether it began an epoch: that step
    carries the previous epoch's end (its checkpoint, its epoch metrics)."""

    def __init__(self, plain: Iterator[None], round_steps: int) -> None:
        self.plain = plain
        self.round_steps = round_steps
        self.rounds: list[tuple[float, float]] = []
        self.epoch_first_steps: list[float] = []
        self.other_steps: list[float] = []
        self.steps_per_epoch = 0
        self._seqlab = self._plain = 0.0
        self._steps = 0
        self._mark: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.process_time()
        if self._mark is not None:
            self._seqlab += now - self._mark
            (self.epoch_first_steps if batch_idx == 0 else self.other_steps).append(now - self._mark)
            self.steps_per_epoch = trainer.num_training_batches
        next(self.plain)
        after = time.process_time()
        if self._mark is not None:
            self._plain += after - now
            self._steps += 1
            if self._steps == self.round_steps:
                self.rounds.append((self._seqlab, self._plain))
                self._seqlab = self._plain = 0.0
                self._steps = 0
        self._mark = after


class BareLightningModule(pl.LightningModule):
    """The plain loop's model, loss, optimiser and schedule as the least a LightningModule can be:
    what Lightning's own loop costs, without anything seqlab adds."""

    def __init__(self, cfg: DictConfig, datamodule) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = instantiate(cfg.model, **datamodule.model_dims())
        self.cfg = cfg

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if "targets" in batch:
            logits = self.net(batch["input_ids"])
            return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX)
        return F.cross_entropy(self.net(batch["input_ids"], batch["lengths"]), batch["labels"])

    def configure_optimizers(self) -> dict:
        optimizer = build_optimizer(instantiate(self.cfg.optimizer), self.net)
        return {"optimizer": optimizer, "lr_scheduler": instantiate(self.cfg.scheduler)(optimizer, total_steps=self.trainer.max_steps)}


class ManualBareLightningModule(BareLightningModule):
    """`BareLightningModule` with Lightning's manual optimisation: the step zeroes, back-propagates,
    clips and steps itself, without Lightning's optimiser closure."""

    def __init__(self, cfg: DictConfig, datamodule) -> None:
        super().__init__(cfg, datamodule)
        self.automatic_optimization = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(optimizer, gradient_clip_val=self.cfg.trainer.get("gradient_clip_val"), gradient_clip_algorithm="norm")
        optimizer.step()
        scheduler.step()
        return loss


def bare_lockstep_rounds(cfg: DictConfig, datamodule, rounds: int, round_steps: int, manual: bool = False) -> Lockstep:
    """As `lockstep_rounds`, with `BareLightningModule` (`manual`: `ManualBareLightningModule`) in a
    `pl.Trainer` that has nothing else: no logger, checkpoints, progress bar, summary or callbacks;
    the same gradient clipping."""
    steps = rounds * round_steps + 1
    lockstep = Lockstep(plain_steps(cfg, plain_workload(cfg, datamodule), steps), round_steps)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        # Manual optimisation clips in the step: Lightning refuses the Trainer's clipping with it.
        gradient_clip_val=None if manual else cfg.trainer.get("gradient_clip_val"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[lockstep],
    )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        trainer.fit((ManualBareLightningModule if manual else BareLightningModule)(cfg, datamodule), datamodule=datamodule)
    return lockstep


def lockstep_rounds(cfg: DictConfig, datamodule, rounds: int, round_steps: int, run_dir: Path) -> Lockstep:
    """The two stepping in turn in one fit; per round of `round_steps` steps, (seqlab CPU s, plain CPU s)."""
    steps = rounds * round_steps + 1
    lockstep = Lockstep(plain_steps(cfg, plain_workload(cfg, datamodule), steps), round_steps)
    seqlab_run(cfg, datamodule, steps, run_dir, lockstep=lockstep)
    return lockstep


def fit_rounds(cfg: DictConfig, datamodule, rounds: int, steps: int, tmp: Path) -> list[tuple[Timing, Timing, Timing]]:
    """Per round: (seqlab's fit, the plain loop, seqlab's training loop alone), in A B, B A order."""
    timings = []
    for index in range(rounds):
        loop = Timing()
        # A B, then B A: whatever one side leaves behind (garbage, a warm allocator) falls on each side alike.
        if index % 2:
            theirs = plain_loop(cfg, datamodule, steps)
            ours = seqlab_run(cfg, datamodule, steps, tmp / f"round{index}", loop)
        else:
            ours = seqlab_run(cfg, datamodule, steps, tmp / f"round{index}", loop)
            theirs = plain_loop(cfg, datamodule, steps)
        timings.append((ours, theirs, loop))
        print(
            f"fit round {index + 1}: seqlab {ours.wall:.2f} s ({ours.cpu:.2f} s CPU, loop {loop.cpu:.2f}), plain {theirs.wall:.2f} s ({theirs.cpu:.2f} s CPU)",
            file=sys.stderr,
            flush=True,
        )
    return timings


def epoch_start_extra_ms(lockstep: Lockstep) -> float | None:
    """How much more CPU a step that begins an epoch takes than the median step (ms); None without one."""
    if not lockstep.epoch_first_steps:
        return None
    return 1000 * (median(lockstep.epoch_first_steps) - median(lockstep.other_steps))


def lockstep_table(title: str, side: str, rounds: list[tuple[float, float]], round_steps: int) -> list[tuple]:
    """Print the per-round CPU ms a step of `side` and of the plain loop, and their ratio, with a median row; return the rows."""
    rows = [(f"round {i + 1}", 1000 * ours / round_steps, 1000 * theirs / round_steps, theirs / ours) for i, (ours, theirs) in enumerate(rounds)]
    rows.append(("median", *(median([row[column] for row in rows]) for column in range(1, 4))))
    print_table(title, ["", f"{side} CPU ms/step", "plain CPU ms/step", f"ratio (plain ÷ {side})"], rows)
    return rows


def ratio_figures(name: str, title: str, side: str, lockstep: Lockstep, round_steps: int) -> dict[str, float]:
    """Print `side`'s lockstep table; its median ratio and range as figures named after `name`."""
    rows = lockstep_table(title, side, lockstep.rounds, round_steps)
    ratios = [row[3] for row in rows[:-1]]
    return {f"{name}_step_ratio": rows[-1][3], f"{name}_ratio_min": min(ratios), f"{name}_ratio_max": max(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(WORKLOADS), default="lstm")
    parser.add_argument("--rounds", type=int, default=12, help="lockstep rounds (per-step figure)")
    parser.add_argument("--round-steps", type=int, help="steps per lockstep round (default: per model)")
    parser.add_argument("--fit-rounds", type=int, default=4, help="whole-fit rounds after the warm-up round, A B then B A alternately (0: none)")
    parser.add_argument("--steps", type=int, help="training steps per whole-fit round (default: per model)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: steady on a shared machine)")
    parser.add_argument("--no-bare", dest="bare", action="store_false", help="leave out the bare Lightning modules and Trainer (Lightning's own cost)")
    parser.add_argument("--profile", metavar="FILE", help="also profile one more seqlab run with pyinstrument and write the call tree here")
    parser.add_argument("--data-dir", default=str(SHARED_DATA), help="where the gpt workload finds tinyshakespeare/")
    parser.add_argument("overrides", nargs="*", help="extra seqlab-train overrides, e.g. data.batch_size=32")
    args = parser.parse_args()
    workload = WORKLOADS[args.model]
    steps = args.steps or workload["steps"]
    round_steps = args.round_steps or workload["round_steps"]

    set_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "seqlab"):
        logging.getLogger(name).setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="seqlab-overhead-") as tmp:
        tmp = Path(tmp)
        cfg = compose_run_config([*workload["overrides"], f"paths.data_dir={args.data_dir}", *TRAINING_ONLY, *args.overrides], tmp / "run")
        datamodule = runs.build_datamodule(cfg)
        # As seqlab-train does. It tunes the process's malloc, so the plain loop here runs with it too:
        # the ratios compare the loops, not the allocators (docs/benchmarks.md measures that on its own).
        keep_freed_memory(cfg.keep_freed_memory)

        seqlab_run(cfg, datamodule, max(5, steps // 10), tmp / "warmup")
        plain_loop(cfg, datamodule, max(5, steps // 10))
        per_step = lockstep_rounds(cfg, datamodule, args.rounds, round_steps, tmp / "lockstep")
        bare_per_step = bare_lockstep_rounds(cfg, datamodule, args.rounds, round_steps) if args.bare else None
        manual_per_step = bare_lockstep_rounds(cfg, datamodule, args.rounds, round_steps, manual=True) if args.bare else None
        per_fit = fit_rounds(cfg, datamodule, args.fit_rounds, steps, tmp)
        if args.profile:
            profile_seqlab_run(cfg, datamodule, steps, tmp / "profiled", Path(args.profile))

    step_rows = lockstep_table(
        f"per step, in lockstep: {args.model}, {args.rounds} rounds of {round_steps} steps, batch size {datamodule.batch_size}",
        "seqlab",
        per_step.rounds,
        round_steps,
    )
    step_ratios = [row[3] for row in step_rows[:-1]]
    figures: dict[str, float] = {
        "seqlab_cpu_ms_per_step": step_rows[-1][1],
        "plain_cpu_ms_per_step": step_rows[-1][2],
        "step_ratio_min": min(step_ratios),
        "step_ratio_max": max(step_ratios),
    }
    notes = [
        "per step: after each seqlab step the plain loop takes one; seqlab's step runs from the end of one plain step to the start of the next.",
    ]
    if (extra := epoch_start_extra_ms(per_step)) is not None:
        figures.update(epoch_start_extra_cpu_ms=extra, steps_per_epoch=per_step.steps_per_epoch)
        notes.append("epoch start: a step that begins an epoch (it carries the last epoch's end: checkpoint, epoch metrics) less the median step, CPU ms.")
    if bare_per_step is not None:
        title = "Lightning's own cost, in lockstep: a bare LightningModule and Trainer"
        figures.update(ratio_figures("bare_lightning", f"{title}, {args.rounds} rounds of {round_steps} steps", "bare Lightning", bare_per_step, round_steps))
        if (extra := epoch_start_extra_ms(bare_per_step)) is not None:
            figures["bare_lightning_epoch_start_extra_cpu_ms"] = extra
        figures.update(
            ratio_figures(
                "bare_manual", f"{title}, manual optimisation, {args.rounds} rounds of {round_steps} steps", "bare manual", manual_per_step, round_steps
            )
        )
        notes.append(
            "bare Lightning: the same model, loss, optimiser, schedule and clipping in the least LightningModule, in a Trainer without logger, checkpoints, bar, summary or callbacks; "
            "bare manual: the same with manual optimisation (the step zeroes, back-propagates, clips and steps itself)."
        )
    if per_fit:
        fit_rows = [
            (f"round {i + 1}", steps / a.wall, steps / b.wall, b.wall / a.wall, b.cpu / a.cpu, a.cpu - loop.cpu) for i, (a, b, loop) in enumerate(per_fit)
        ]
        fit_rows.append(("median", *(median([row[column] for row in fit_rows]) for column in range(1, 6))))
        print_table(
            f"per fit: {args.model}, {steps} training steps per run",
            ["", "seqlab steps/s", "plain steps/s", "wall ratio", "CPU ratio", "once per fit, CPU s"],
            fit_rows,
        )
        figures.update(fit_wall_ratio=fit_rows[-1][3], fit_cpu_ratio=fit_rows[-1][4], fit_fixed_cpu_s=fit_rows[-1][5])
        notes.append(
            f"per fit: trainer.fit through the composed config ({', '.join(TRAINING_ONLY)}) against a loop in this script; "
            "once per fit: fit's CPU time less its training loop's (setting up, the model summary, the end-of-fit plot, teardown)."
        )
    figures["step_ratio"] = median(step_ratios)
    report_figures(figures, notes)


if __name__ == "__main__":
    main()
