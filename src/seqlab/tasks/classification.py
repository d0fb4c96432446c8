"""Sequence classification: cross-entropy (or one logit with BCE for two classes), accuracy, macro F1, AUROC."""

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import AUROC, Accuracy, F1Score, MetricCollection

from seqlab.tasks.base import STAGES, Task
from seqlab.tasks.step_logging import logs_this_step


class SequenceClassificationTask(Task):
    """Wraps a classifier built by `model(**dims)`: the data's sizes (`vocab_size`, `pad_id`, `num_classes`).

    `binary_output="sigmoid"` gives two-class problems one logit trained with BCE (the model is
    built with `num_classes=1`); "softmax" keeps two logits and cross-entropy. Metrics are
    torchmetrics objects, one collection per stage.
    """

    model_kind = "a classifier"
    model_choices = "task=classification takes model=lstm, gru, rnn, transformer, cnn or gpt_classifier"

    def __init__(
        self,
        model: Callable[..., nn.Module],
        dims: Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., dict[str, Any]] | None = None,
        binary_output: str = "softmax",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(optimizer, scheduler)
        if binary_output not in ("softmax", "sigmoid"):
            raise ValueError(f"binary_output must be 'softmax' or 'sigmoid', got {binary_output!r}")
        self.num_classes = dims["num_classes"]
        self.single_logit = self.num_classes == 2 and binary_output == "sigmoid"
        self.net = self.build_model(model, {**dims, "num_classes": 1 if self.single_logit else self.num_classes})
        self.label_smoothing = label_smoothing
        # "train" can't be a ModuleDict key (it is nn.Module.train), hence the suffix.
        self.metrics = nn.ModuleDict({f"{stage}_metrics": self._stage_metrics(stage) for stage in STAGES})
        # The epoch's training outputs so far (a two-class task's logits, else the predicted classes)
        # with their labels, detached and on the model's device; the train metrics take them in one
        # update at the epoch's end (see `on_train_epoch_end`).
        self._train_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _stage_metrics(self, stage: str) -> MetricCollection:
        metrics: dict[str, Any] = {
            "acc": Accuracy(task="multiclass", num_classes=self.num_classes),
            "f1": F1Score(task="multiclass", num_classes=self.num_classes, average="macro"),
        }
        if self.num_classes == 2:
            metrics["auroc"] = AUROC(task="binary")
        return MetricCollection(metrics, prefix=f"{stage}/", compute_groups=False)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, num_classes)."""
        return self.probabilities(self.net(input_ids, lengths))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.single_logit:
            positive = torch.sigmoid(logits.squeeze(-1).float())
            return torch.stack([1 - positive, positive], dim=-1)
        return torch.softmax(logits.float(), dim=-1)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.single_logit:
            targets = labels.float()
            if self.label_smoothing:
                targets = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            return F.binary_cross_entropy_with_logits(logits.squeeze(-1).float(), targets)
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The loss (training), or the class probabilities (validation and test)."""
        logits = self.net(batch["input_ids"], batch["lengths"])
        labels = batch["labels"]
        loss = self.loss(logits, labels)
        batch_size = labels.size(0)
        if stage == "train":
            self._remember_train_outputs(logits.detach(), labels)
            if logs_this_step(self.trainer):
                self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=batch_size, prog_bar=True)
            return loss
        collection = self.metrics[f"{stage}_metrics"]
        probs = self.probabilities(logits.detach())
        self._update_metrics(collection, probs, labels)
        # Under DDP the epoch's loss is averaged over all ranks (torchmetrics syncs the metrics itself).
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=batch_size, prog_bar=True, sync_dist=True)
        self.log_dict(collection, on_step=False, on_epoch=True, batch_size=batch_size, prog_bar=True)
        return probs

    @staticmethod
    def _update_metrics(collection: MetricCollection, probs: torch.Tensor, labels: torch.Tensor) -> None:
        collection["acc"].update(probs, labels)
        collection["f1"].update(probs, labels)
        if "auroc" in collection:
            collection["auroc"].update(probs[:, 1], labels)

    def _remember_train_outputs(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep what the epoch's train metrics need, at most two numbers an example whatever the
        number of classes: a two-class task's logits themselves (its predicted class and positive
        score come from them once an epoch, in `on_train_epoch_end`), otherwise the predicted class."""
        self._train_outputs.append((logits if self.num_classes == 2 else logits.argmax(-1), labels))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_start(self) -> None:
        self._train_outputs = []

    def on_train_epoch_end(self) -> None:
        """Train metrics over the epoch: torchmetrics' per-call checks cost more than a small model's
        training step, so they run once here instead of on every step."""
        if not self._train_outputs:
            return
        outputs = torch.cat([step_outputs for step_outputs, _ in self._train_outputs])
        labels = torch.cat([step_labels for _, step_labels in self._train_outputs])
        self._train_outputs = []
        collection = self.metrics["train_metrics"]
        if self.num_classes == 2:
            # Sigmoid and softmax keep the logits' order; softmax over two is the sigmoid of their difference.
            positive_logit = outputs.squeeze(-1) if self.single_logit else outputs[:, 1] - outputs[:, 0]
            predicted = (positive_logit > 0).long()
        else:
            predicted = outputs
        collection["acc"].update(predicted, labels)
        collection["f1"].update(predicted, labels)
        if "auroc" in collection:
            collection["auroc"].update(torch.sigmoid(positive_logit.float()), labels)
        self.log_dict(collection, on_step=False, on_epoch=True, batch_size=labels.numel())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The batch's class probabilities, which callbacks receive: seqlab-eval's report is drawn from them."""
        return self._step(batch, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch["input_ids"], batch["lengths"])
