"""Callbacks that conf/callbacks configures besides Lightning's own."""

import fnmatch
import time
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, RichProgressBar

from seqlab.errors import SeqlabError


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, updated only as often as it is redrawn (`refresh_rate` times a second).

    Lightning's bar reads the logged metrics after every training batch, converting each to a
    Python number: work for nothing on the batches between two redraws, and on a GPU a wait for
    the step to finish, which stops the host from queueing the next one.
    """

    def __init__(self, refresh_rate: int = 5, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._last_update = float("-inf")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        final = trainer.is_last_batch or trainer.global_step == trainer.max_steps
        if final or self.refresh_rate <= 0 or now - self._last_update >= 1 / self.refresh_rate:
            self._last_update = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class MaxNorm(Callback):
    """After every optimiser step, rescale each row of the matching weights whose L2 norm exceeds
    `max_norm` back to `max_norm` (Kim 2014 caps the classifier head's rows at 3).

    `parameters` are glob patterns over the task's parameter names, such as "net.head.weight"; a row
    is a weight's slice along its first dimension (one class of a head, one filter of a convolution).
    """

    def __init__(self, parameters: Sequence[str], max_norm: float) -> None:
        if isinstance(parameters, str):
            parameters = [parameters]
        if not max_norm > 0:
            raise SeqlabError(f"callbacks.max_norm.max_norm must be positive, got {max_norm}")
        self.patterns = list(parameters)
        self.max_norm = float(max_norm)
        self.weights: list[torch.nn.Parameter] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        named = list(pl_module.named_parameters())
        self.weights = [parameter for name, parameter in named if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)]
        if not self.weights:
            examples = ", ".join(name for name, _ in named[:5])
            raise SeqlabError(f"callbacks.max_norm.parameters {self.patterns} match none of the model's parameters (such as {examples})")

    @torch.no_grad()
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        for weight in self.weights:
            weight.renorm_(2, 0, self.max_norm)
