"""The classification report of seqlab-eval: per-class precision, recall and F1, the confusion matrix,
and for two classes the ROC curve, computed with torchmetrics and drawn with matplotlib.

The figures are matplotlib `Figure`s saved straight to PNG, without pyplot, so drawing them needs no
display and leaves no window or backend setting behind.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import (
    BinaryAUROC,
    BinaryROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

# The ROC curve is kept at this many thresholds, so its size does not grow with the test set.
ROC_THRESHOLDS = 201


def classification_report(probs: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str]) -> dict[str, Any]:
    """`probs` (N, C) class probabilities and `labels` (N,) label ids -> a JSON-ready report."""
    num_classes = len(label_names)
    per_class = {
        name: MetricClass(num_classes=num_classes, average="none")(probs, labels).tolist()
        for name, MetricClass in (("precision", MulticlassPrecision), ("recall", MulticlassRecall), ("f1", MulticlassF1Score))
    }
    support = torch.bincount(labels, minlength=num_classes).tolist()
    report: dict[str, Any] = {
        "labels": list(label_names),
        "per_class": {
            name: {"precision": per_class["precision"][i], "recall": per_class["recall"][i], "f1": per_class["f1"][i], "support": support[i]}
            for i, name in enumerate(label_names)
        },
        "macro": {metric: sum(values) / num_classes for metric, values in per_class.items()},
        "accuracy": float((probs.argmax(-1) == labels).float().mean()),
        # Rows are true labels, columns predicted labels.
        "confusion_matrix": MulticlassConfusionMatrix(num_classes=num_classes)(probs, labels).tolist(),
    }
    if num_classes == 2:
        positive = probs[:, 1]
        fpr, tpr, thresholds = BinaryROC(thresholds=ROC_THRESHOLDS)(positive, labels)
        report["roc"] = {
            "positive_label": label_names[1],
            "auc": float(BinaryAUROC()(positive, labels)),
            "fpr": fpr.tolist(),
            "tpr": tpr.tolist(),
            "thresholds": thresholds.tolist(),
        }
    return report


def plot_confusion_matrix(report: dict[str, Any], path: Path) -> None:
    names, matrix = report["labels"], np.asarray(report["confusion_matrix"])
    size = max(4.0, 0.6 * len(names) + 2.5)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.subplots()
    row_totals = matrix.sum(1, keepdims=True).clip(min=1)
    image = axes.imshow(matrix / row_totals, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true label")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                share = matrix[i, j] / row_totals[i, 0]
                axes.text(j, i, f"{matrix[i, j]}", ha="center", va="center", color="white" if share > 0.5 else "black", fontsize=9)
    axes.set_title(f"Confusion matrix (accuracy {report['accuracy']:.3f})")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_roc(report: dict[str, Any], path: Path) -> None:
    roc = report["roc"]
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.plot(roc["fpr"], roc["tpr"], label=f"AUC {roc['auc']:.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(f"ROC curve, positive label: {roc['positive_label']}")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_classification_report(probs: torch.Tensor, labels: torch.Tensor, label_names: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """Compute the report and draw confusion_matrix.png (and roc_curve.png for two classes) in `run_dir`."""
    report = classification_report(probs, labels, label_names)
    plot_confusion_matrix(report, run_dir / "confusion_matrix.png")
    report["plots"] = ["confusion_matrix.png"]
    if "roc" in report:
        plot_roc(report, run_dir / "roc_curve.png")
        report["plots"].append("roc_curve.png")
    return report
