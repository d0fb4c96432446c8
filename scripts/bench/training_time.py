"""A callback that times a fit's training alone, for benchmarks that compare iterations per second.

Lightning's `Timer` counts the validations inside `fit` as training time; nanoGPT's per-iteration
times leave its evaluations out. `TrainingTime` measures from the start to the end of the training
loop and subtracts the validations run in it (with the samples the language model task draws after
each), then writes the figures as JSON to `path` when training ends. Benchmarks add it by override,
with this folder on PYTHONPATH:

    seqlab-train +callbacks.training_time._target_=training_time.TrainingTime +callbacks.training_time.path=times.json
"""

import json
import time
from pathlib import Path

import pytorch_lightning as pl


class TrainingTime(pl.Callback):
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.validation_s = 0.0
        self.validation_cpu_s = 0.0
        self._validation_started: tuple[float, float] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._train_started = (time.perf_counter(), time.process_time())
        self._first_step = trainer.global_step

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check runs before the training loop starts
            self._validation_started = (time.perf_counter(), time.process_time())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._validation_started is not None:
            wall, cpu = self._validation_started
            self.validation_s += time.perf_counter() - wall
            self.validation_cpu_s += time.process_time() - cpu
            self._validation_started = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        wall, cpu = self._train_started
        loop_s, loop_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        figures = {
            "iterations": trainer.global_step - self._first_step,
            "training_s": loop_s - self.validation_s,
            "training_cpu_s": loop_cpu_s - self.validation_cpu_s,
            "validation_s": self.validation_s,
        }
        self.path.write_text(json.dumps(figures))
