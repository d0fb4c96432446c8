"""A Lightning callback that lets an Optuna sweep's pruner stop an unpromising trial early."""

import logging

import optuna
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from seqlab.sweeps.optuna_study import trial_from_env

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """Reports `monitor` to this job's Optuna trial after every validation; prunes when the pruner says so.

    The trial and the pruner come from the sweep that launched the job (see seqlab.sweeps.optuna_study);
    in a run no Optuna sweep launched, the callback does nothing. A pruned run ends with
    `optuna.TrialPruned`, which the sweeper records as a pruned trial, not a failed one.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial = None
        self.reports = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        pruner_cfg = HydraConfig.get().sweeper.get("pruner") if HydraConfig.initialized() else None
        self.trial = trial_from_env(instantiate(pruner_cfg) if pruner_cfg else None)
        self.reports = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trial is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            log.warning("OptunaPruning: %s was not logged; this validation is not reported", self.monitor)
            return
        step = self.reports
        self.trial.report(float(value), step=step)
        self.reports += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial {self.trial.number} pruned after validation {step + 1} ({self.monitor}={float(value):.4f})")
