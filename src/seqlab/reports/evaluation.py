"""The report seqlab-eval adds to metrics.json, chosen by the kind of task evaluated; for a fold
ensemble, the ensemble's and each member's metrics on the same test set."""

import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_f1_score

from seqlab.data.tokenizers import CharTokenizer
from seqlab.reports.classification import write_classification_report
from seqlab.reports.translation import translation_report
from seqlab.tasks.classification import SequenceClassificationTask
from seqlab.tasks.language_modeling import LanguageModelingTask
from seqlab.tasks.seq2seq import Seq2SeqTask

log = logging.getLogger(__name__)


def evaluation_report(
    trainer: pl.Trainer,
    task: pl.LightningModule,
    datamodule: pl.LightningDataModule,
    metrics: dict[str, float],
    run_dir: Path,
    test_predictions: "CollectedTestPredictions",
) -> dict[str, Any] | None:
    """Write the task's report plots in `run_dir` and return the report for metrics.json (None when
    the task has no report). A classifier's report is drawn from `test_predictions`, which the test
    loop filled."""
    if isinstance(task, LanguageModelingTask):
        return language_model_report(metrics["test/loss"], datamodule)
    if isinstance(task, Seq2SeqTask):
        return translation_report(task, metrics, run_dir)
    if not isinstance(task, SequenceClassificationTask):
        return None
    if trainer.world_size > 1:
        log.warning("the classification report needs every test prediction in one process; run seqlab-eval on one device for it")
        return None
    probs, labels = test_predictions.gathered()
    return write_classification_report(probs.float(), labels, datamodule.label_names, run_dir)


class CollectedTestPredictions(pl.Callback):
    """Keeps each test batch's class probabilities (what a classifier's `test_step` returns) and labels,
    so the report needs no second pass over the test set. They stay on the device until the test
    ends: a copy per batch would wait for each batch on a GPU."""

    def __init__(self) -> None:
        self.probs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, torch.Tensor):
            self.probs.append(outputs)
            self.labels.append(batch["labels"])

    def gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) probabilities and (N,) labels of the test texts, in the order the loader gave them."""
        return torch.cat(self.probs).cpu(), torch.cat(self.labels).cpu()


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The test metrics the classification task logs, from (N, C) probabilities: accuracy, macro F1,
    AUROC (two classes) and the loss, as the negative log-likelihood of the true labels."""
    num_classes = probs.size(1)
    metrics = {
        "test/acc": multiclass_accuracy(probs, labels, num_classes, average="micro"),
        "test/f1": multiclass_f1_score(probs, labels, num_classes, average="macro"),
    }
    if num_classes == 2:
        metrics["test/auroc"] = binary_auroc(probs[:, 1], labels)
    metrics["test/loss"] = torch.nn.functional.nll_loss(probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), labels)
    return {name: float(value) for name, value in metrics.items()}


def ensemble_evaluation(
    member_probs: Sequence[torch.Tensor], member_names: Sequence[str], labels: torch.Tensor, label_names: Sequence[str], run_dir: Path
) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, Any]]:
    """A fold ensemble on one test set: the metrics of the mean of the members' probabilities, each
    member's metrics (rows of `member` and its metrics), and the classification report of the ensemble
    (its plots written in `run_dir`)."""
    rows = [{"member": name, **classification_metrics(probs, labels)} for name, probs in zip(member_names, member_probs)]
    ensemble_probs = torch.stack(list(member_probs)).mean(0)
    metrics = classification_metrics(ensemble_probs, labels)
    return metrics, rows, write_classification_report(ensemble_probs.float(), labels, label_names, run_dir)


def print_ensemble_table(metrics: dict[str, float], rows: list[dict[str, Any]]) -> None:
    """Each member's test metrics, their mean and the ensemble's, as one Rich table."""
    names = [name for name in metrics if name.startswith("test/")]
    table = Table(title=f"fold ensemble of {len(rows)} members, test set", title_justify="left")
    table.add_column("member")
    for name in names:
        table.add_column(name.removeprefix("test/"), justify="right")
    for index, row in enumerate(rows):
        table.add_row(row["member"], *(f"{row[name]:.4f}" for name in names), end_section=index == len(rows) - 1)
    table.add_row("mean of members", *(f"{statistics.fmean(row[name] for row in rows):.4f}" for name in names))
    table.add_row("[bold]ensemble[/bold]", *(f"[bold]{metrics[name]:.4f}[/bold]" for name in names))
    Console().print(table)


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
