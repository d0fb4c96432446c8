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

PANEL_INCHES = (6, 4)
STAGE_STYLES = {"train": {"color": "C0", "linewidth": 1, "alpha": 0.8}, "val": {"color": "C1", "marker": "o", "linewidth": 2}}
FEW_POINTS = 20
DPI = 100
TITLE_NAME_CHARS = 20


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
        figure = self.figure()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # zlib level 3 instead of PIL's 6: a quarter less time encoding, for a file about a tenth larger.
        figure.savefig(self.path, dpi=DPI, pil_kwargs={"compress_level": 3})

    def figure(self) -> Figure:
        """The recorded curves as a figure: one panel for the loss, one for the monitored metric."""
        metrics = [m for m in self._metric_names() if any(name.endswith(f"/{m}") for name in self.history)]
        width, height = PANEL_INCHES[0] * len(metrics), PANEL_INCHES[1]
        figure = Figure(figsize=(width, height))
        axes = figure.subplots(1, len(metrics), squeeze=False)
        for axis, metric in zip(axes[0], metrics):
            for stage, style in STAGE_STYLES.items():
                series = self.history.get(f"{stage}/{metric}")
                if series:
                    steps, values = zip(*series)
                    # A series of a few points (train metrics come once an epoch) gets markers: a line of one point draws nothing.
                    marker = style.get("marker") or ("." if len(series) <= FEW_POINTS else None)
                    axis.plot(steps, values, label=stage, **{**style, "marker": marker})
            axis.set_xlabel("step")
            axis.set_ylabel(metric)  # no title of its own: the label names the metric, and a title is placed by measuring the ticks
            # At most five ticks an axis: each tick is a line and a text to lay out and draw.
            axis.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            axis.yaxis.set_major_locator(MaxNLocator(5))
            axis.grid(alpha=0.3)
        # One legend for the figure, in the top margin: the stages look the same in every panel, and a
        # legend inside a panel can cover a curve (and "best" placement searches every point for room).
        handles: dict[str, Any] = {}
        for axis in axes[0]:
            for handle, label in zip(*axis.get_legend_handles_labels()):
                handles.setdefault(label, handle)
        figure.legend(handles.values(), handles.keys(), loc="upper right", bbox_to_anchor=(1 - 0.15 / width, 1), ncols=len(handles), frameon=False)
        # The run dir's name, its end if long, so the title stays clear of the legend in a one-panel figure.
        name = self.path.parent.name
        name = name if len(name) <= TITLE_NAME_CHARS else "…" + name[-(TITLE_NAME_CHARS - 1) :]
        figure.suptitle(f"Learning curves ({name})", x=0.8 / width, ha="left", fontsize="medium")
        # Fixed margins in inches (room for tick labels, axis labels, the title and legend) rather than
        # tight_layout, which draws the figure once more to measure them.
        figure.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.45 / height, wspace=0.25)
        return figure
