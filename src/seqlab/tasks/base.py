"""What every seqlab task shares: its model built from the model config and the data's sizes, the
stages, the optimiser and its schedule, the model's size in the log when fitting starts, and a
one-line refusal of a checkpoint that holds another model."""

import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.runs.record import check_checkpoint_fits
from seqlab.tasks.optim import build_optimizer

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class Task(pl.LightningModule):
    """The base of seqlab's tasks: a LightningModule around one model, `net`, and its optimiser.

    `optimizer` is a partial optimiser and `scheduler` a partial schedule (`seqlab.tasks.optim`),
    completed in `configure_optimizers`. A subclass builds `net` with `build_model` and names, in
    `model_kind` and `model_choices`, the models it takes.
    """

    model_kind = "a model"
    model_choices = ""

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer], scheduler: Callable[..., dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def build_model(self, model: Callable[..., nn.Module], dims: Mapping[str, Any]) -> nn.Module:
        """`model(**dims)`: the configured constructor (the `model` group) completed with the sizes the
        model takes from its data. A model of another kind, whose constructor does not take these
        sizes, and a setting the model refuses are each reported in one line."""
        try:
            return model(**dims)
        except TypeError as error:
            raise SeqlabError(f"the model is not {self.model_kind} ({error}): {self.model_choices}") from None
        except ValueError as error:  # models name the argument they refuse first, and it is its key under `model.`
            raise SeqlabError(f"model.{error}") from None

    def on_fit_start(self) -> None:
        count = sum(p.numel() for p in self.net.parameters())
        log.info("model: %s, %s parameters", type(self.net).__name__, f"{count:,}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_fits(self, checkpoint, self.trainer.ckpt_path)

    def create_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser over the model's parameters, weight decay on weights only."""
        return build_optimizer(self.optimizer_factory, self.net)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.create_optimizer()
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total_steps = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, total_steps=total_steps)}
