"""The report seqlab-eval adds to metrics.json, chosen by the kind of task evaluated."""

import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from seqlab.data.tokenizers import CharTokenizer
from seqlab.reports.classification import write_classification_report
from seqlab.tasks.classification import SequenceClassificationTask
from seqlab.tasks.language_modeling import LanguageModelingTask

log = logging.getLogger(__name__)


def evaluation_report(
    trainer: pl.Trainer, task: pl.LightningModule, datamodule: pl.LightningDataModule, metrics: dict[str, float], run_dir: Path
) -> dict[str, Any] | None:
    """Write the task's report plots in `run_dir` and return the report for metrics.json (None when
    the task has no report)."""
    if isinstance(task, LanguageModelingTask):
        return language_model_report(metrics["test/loss"], datamodule)
    if not isinstance(task, SequenceClassificationTask):
        return None
    if trainer.world_size > 1:
        log.warning("the classification report needs every test prediction in one process; run seqlab-eval on one device for it")
        return None
    probs = torch.cat(trainer.predict(task, dataloaders=datamodule.test_dataloader())).float().cpu()
    labels = torch.as_tensor(datamodule.datasets["test"].labels)
    return write_classification_report(probs, labels, datamodule.label_names, run_dir)


def language_model_report(loss: float, datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """Loss (nats per predicted token), perplexity, bits per token and bits per character of the test text.

    Bits per character spread the test text's total loss over its characters, so models with
    different tokenizers compare on one scale.
    """
    tokenizer = datamodule.tokenizer
    segments = datamodule.segments["test"]
    tokens = sum(max(len(segment) - 1, 0) for segment in segments)  # every token but a segment's first is predicted
    if isinstance(tokenizer, CharTokenizer):
        characters = tokens
    else:
        characters = sum(len(tokenizer.decode(segment[1:].tolist())) for segment in segments)
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_character": loss * tokens / max(characters, 1) / math.log(2),
        "tokens": tokens,
        "characters": characters,
    }
