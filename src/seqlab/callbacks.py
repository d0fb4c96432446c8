"""Callbacks that conf/callbacks configures besides Lightning's own."""

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, updated only as often as it is redrawn (`refresh_rate` times a second).

    Lightning's bar reads the logged metrics after every training batch, converting each to a
    Python number: work for nothing on the batches between two redraws, and on a GPU a wait for
    the step to finish, which stops the host from queueing the next one.
    """

    def __init__(self, refresh_rate: int = 10, **kwargs: Any) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._last_update = float("-inf")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.monotonic()
        final = trainer.is_last_batch or trainer.global_step == trainer.max_steps
        if final or self.refresh_rate <= 0 or now - self._last_update >= 1 / self.refresh_rate:
            self._last_update = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
