"""The report seqlab-eval adds to metrics.json, chosen by the kind of task evaluated."""

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


def evaluation_report(trainer: pl.Trainer, task: pl.LightningModule, datamodule: pl.LightningDataModule, run_dir: Path) -> dict[str, Any] | None:
    """Write the task's report plots in `run_dir` and return the report for metrics.json (None when
    the task has no report)."""
    from seqlab.tasks.classification import SequenceClassificationTask

    if not isinstance(task, SequenceClassificationTask):
        return None
    if trainer.world_size > 1:
        log.warning("the classification report needs every test prediction in one process; run seqlab-eval on one device for it")
        return None
    from seqlab.reports.classification import write_classification_report

    probs = torch.cat(trainer.predict(task, dataloaders=datamodule.test_dataloader())).float().cpu()
    labels = torch.as_tensor(datamodule.datasets["test"].labels)
    return write_classification_report(probs, labels, datamodule.label_names, run_dir)
