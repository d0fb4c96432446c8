"""Logger constructors that need a decision Lightning leaves to the user, and the run's config for every logger."""

import logging
import netrc
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_utilities.core.imports import RequirementCache
from pytorch_lightning.loggers import MLFlowLogger, WandbLogger

from seqlab.errors import SeqlabError
from seqlab.tags import as_tags

log = logging.getLogger(__name__)


def _wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_logger(save_dir: str, tags: Sequence[str] | str = (), **kwargs: Any) -> WandbLogger:
    """A WandbLogger writing under the run dir: offline unless WANDB_MODE says otherwise or the user
    has logged in, so a run never stops to ask for an account."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    offline = "WANDB_MODE" not in os.environ and not _wandb_credentials_present()
    return WandbLogger(save_dir=save_dir, offline=offline, tags=as_tags(tags), **kwargs)


def mlflow_installed() -> bool:
    # The module, not the distribution: mlflow-skinny installs the same `mlflow` package.
    return bool(RequirementCache(module="mlflow"))


def mlflow_logger(tracking_uri: str, tags: Sequence[str] | str = (), optional: bool = False, **kwargs: Any) -> MLFlowLogger | None:
    """An MLFlowLogger; each of the run's tags becomes an MLflow run tag of that name.

    A `file:` store in the run dir needs no server; MLflow 3 keeps that store in maintenance mode
    and refuses it unless MLFLOW_ALLOW_FILE_STORE is set, which a user's own setting overrides.
    `optional` (logger=many): without mlflow installed, warn and return None instead of failing.
    """
    if not mlflow_installed():
        if optional:
            log.warning("logger=many: mlflow is not installed, so this run has no MLflow logger (pip install 'seqlab[mlflow]')")
            return None
        raise SeqlabError("logger=mlflow needs mlflow: pip install 'seqlab[mlflow]' (or mlflow-skinny)")
    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, tags=dict.fromkeys(as_tags(tags), ""), **kwargs)


class RunConfigForLoggers(pl.Callback):
    """Hands every logger the run's resolved config and the model's parameter counts (total and
    trainable, under `num_parameters`), once, when the trainer sets up. Each Lightning logger
    flattens the nested config as its backend expects (MLflow `model/hidden_dim`; csv and TensorBoard
    keep it nested in hparams.yaml; wandb in its run config)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.logged = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.logged:
            return
        parameters = list(pl_module.parameters())
        counts = {"total": sum(p.numel() for p in parameters), "trainable": sum(p.numel() for p in parameters if p.requires_grad)}
        for logger in trainer.loggers:
            logger.log_hyperparams({**self.config, "num_parameters": counts})
        self.logged = True


def finish_wandb(failed: bool) -> None:
    """Lightning never ends the wandb run; without this, the next job of a multirun logs into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
