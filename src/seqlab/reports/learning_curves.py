"""Learning curves: train and validation loss and the monitored metric over steps, drawn when fitting ends.

The figure is a matplotlib `Figure` saved straight to PNG, without pyplot, so drawing it needs no
display and leaves no window or backend setting behind.
"""

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pytorch_lightning.utilities import rank_zero_only


def _value(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class LearningCurves(pl.Callback):
    """Records the training loss at every optimiser step, `val/loss` and the monitored metric at every
    validation, and the training value of that metric at every epoch end; draws them to `path`
    when fitting ends. The history is saved in checkpoints, so a resumed run draws the whole run."""

    def __init__(self, path: str | Path, monitor: str) -> None:
        self.path = Path(path)
        self.monitor = monitor
        self.history: dict[str, list[list[float]]] = {}  # series name -> [[step, value], ...]
        self._pending_losses: list[tuple[int, torch.Tensor]] = []
        self._epoch_end_step: int | None = None

    def _record(self, name: str, step: int, value: float | None) -> None:
        if value is None:
            return
        series = self.history.setdefault(name, [])
        if series and series[-1][0] == step:
            series[-1][1] = value
        else:
            series.append([step, value])

    def _metric_names(self) -> list[str]:
        stage, _, metric = self.monitor.partition("/")
        names = ["loss"]
        if metric and metric != "loss":
            names.append(metric)
        return names

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The step's own loss, kept as a tensor until the epoch ends: tasks log train/loss only every
        # log_every_n_steps, and reading a GPU value every step would wait for the GPU every step.
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._pending_losses.append((trainer.global_step, loss.detach()))

    def _flush_losses(self) -> None:
        if not self._pending_losses:
            return
        steps, losses = zip(*self._pending_losses)
        self._pending_losses = []
        for step, value in zip(steps, torch.stack([loss.float() for loss in losses]).cpu().tolist()):
            self._record("train/loss", step, value if math.isfinite(value) else None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_losses()
        self._epoch_end_step = trainer.global_step

    def _record_train_metrics(self, trainer: pl.Trainer) -> None:
        """The epoch's training metrics, which the task logs in its own epoch-end hook, after this callback's."""
        if self._epoch_end_step is None:
            return
        for metric in self._metric_names()[1:]:
            self._record(f"train/{metric}", self._epoch_end_step, _value(trainer.callback_metrics, f"train/{metric}"))
        self._epoch_end_step = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record_train_metrics(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for metric in self._metric_names():
            self._record(f"val/{metric}", trainer.global_step, _value(trainer.callback_metrics, f"val/{metric}"))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_losses()
        self._record_train_metrics(trainer)
        self.draw()

    def state_dict(self) -> dict[str, Any]:
        self._flush_losses()
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {name: [list(point) for point in series] for name, series in state_dict["history"].items()}

    @rank_zero_only
    def draw(self) -> None:
        if not self.history:
            return
        metrics = [m for m in self._metric_names() if any(name.endswith(f"/{m}") for name in self.history)]
        figure = Figure(figsize=(6 * len(metrics), 4))
        axes = figure.subplots(1, len(metrics), squeeze=False)
        for axis, metric in zip(axes[0], metrics):
            for stage, style in (("train", {"linewidth": 1, "alpha": 0.8}), ("val", {"marker": "o", "linewidth": 2})):
                series = self.history.get(f"{stage}/{metric}")
                if series:
                    steps, values = zip(*series)
                    axis.plot(steps, values, label=f"{stage}/{metric}", **style)
            axis.set_xlabel("step")
            axis.set_ylabel(metric)  # no title of its own: the label names the metric, and a title is placed by measuring the ticks
            # At most five ticks an axis: each tick is a line and a text to lay out and draw.
            axis.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            axis.yaxis.set_major_locator(MaxNLocator(5))
            axis.grid(alpha=0.3)
            # A fixed corner, away from where curves end (a loss falls, the monitored metric usually
            # rises): "best" searches every plotted point for the emptiest one, a cost that grows with the steps.
            axis.legend(loc="upper right" if metric == "loss" else "lower right")
        figure.suptitle(f"Learning curves ({self.path.parent.name})")
        # Fixed margins (room for the tick labels, axis labels and titles) rather than tight_layout,
        # which draws the figure once more to measure them.
        figure.subplots_adjust(left=0.1 / len(metrics), right=1 - 0.03 / len(metrics), bottom=0.13, top=0.9, wspace=0.25)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(self.path, dpi=110)
