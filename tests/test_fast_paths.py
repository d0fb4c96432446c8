"""The fast paths keep their meaning: epoch-level train metrics over every example, compile=true
compiling the inner model in place, a progress bar that reads metrics only when it redraws, and
runs cut short by trainer.max_steps."""

import time
import types

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LambdaCallback
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_f1_score

from conftest import FAST, read_metrics
from data_fixtures import labelled_rows, write_rows
from seqlab import runs
from seqlab.callbacks import ProgressBar
from seqlab.cli.train import train
from seqlab.runs.build import skip_inherited_batch_hooks
from seqlab.tasks.step_logging import logs_this_step

# What TrainingPredictions saw: (class probabilities, labels) of every training batch.
TRAINING_BATCHES: list[tuple[torch.Tensor, torch.Tensor]] = []


class TrainingPredictions(pl.Callback):
    """Before each training step, asks the task (its forward: class probabilities) about the step's batch."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: dict, batch_idx: int) -> None:
        with torch.no_grad():
            TRAINING_BATCHES.append((pl_module(batch["input_ids"], batch["lengths"]), batch["labels"]))


@pytest.mark.parametrize("classes", ["softmax", "sigmoid", "three"])
def test_train_metrics_cover_every_training_example_of_the_epoch(compose_config, in_hydra, tmp_path, classes):
    # Without dropout, the task's forward just before a step gives the probabilities that step trains on.
    TRAINING_BATCHES.clear()
    recorder = f"+callbacks.training_predictions={{_target_: {__name__}.TrainingPredictions}}"
    if classes == "three":
        topics = write_rows(tmp_path / "topics.csv", labelled_rows(600, ("a", "b", "c")), "csv")
        overrides = [*(o for o in FAST if not o.startswith("data.")), "data=text_files", f"data.train_file={topics}"]
    else:
        overrides = [*FAST, f"task.binary_output={classes}"]
    in_hydra(train, compose_config([*overrides, "trainer.max_epochs=1", "model.dropout=0.0", recorder]))

    metrics = read_metrics(tmp_path / "run")
    probs = torch.cat([p for p, _ in TRAINING_BATCHES])
    labels = torch.cat([y for _, y in TRAINING_BATCHES])
    num_classes = probs.size(-1)
    assert num_classes == (3 if classes == "three" else 2)
    assert len(labels) == metrics["data/train_size"]
    assert metrics["train/acc"] == pytest.approx(multiclass_accuracy(probs, labels, num_classes=num_classes).item(), abs=1e-6)
    assert metrics["train/f1"] == pytest.approx(multiclass_f1_score(probs, labels, num_classes=num_classes, average="macro").item(), abs=1e-6)
    if num_classes == 2:
        assert metrics["train/auroc"] == pytest.approx(binary_auroc(probs[:, 1], labels).item(), abs=1e-6)
    else:
        assert "train/auroc" not in metrics


def test_a_run_cut_short_by_max_steps_finishes(compose_config, in_hydra, tmp_path):
    """Early stopping checks after validation, so a run that ends before its first one still ends cleanly."""
    in_hydra(train, compose_config([*FAST, "trainer.max_steps=1"]))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["global_step"] == 1 and "test/acc" in metrics


def test_compile_compiles_the_inner_model_in_place(compose_config):
    cfg = compose_config([*FAST, "compile=true"])
    datamodule = runs.build_datamodule(cfg)
    task = runs.build_task(cfg, datamodule)
    plain = runs.build_task(compose_config(FAST), datamodule)
    assert task.net._compiled_call_impl is not None
    assert plain.net._compiled_call_impl is None
    # Checkpoints keep the plain parameter names, so an uncompiled eval loads them.
    assert list(task.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_a_compiled_model_trains_and_evaluates(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config([*FAST, "compile=true", "trainer.max_epochs=1"]))
    assert read_metrics(tmp_path / "run")["test/acc"] > 0.5


class CountingProgressBar(ProgressBar):
    """seqlab's bar, noting after which training batches it read the logged metrics (Lightning's `get_metrics`)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batch: int | None = None
        self.read_after: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batch = batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.batch = None

    def get_metrics(self, trainer, pl_module) -> dict:
        if self.batch is not None:
            self.read_after.append(self.batch)
        return super().get_metrics(trainer, pl_module)


class TenMillisecondSteps(pl.LightningModule):
    """A module whose every training step takes 10 ms and logs its loss to the progress bar."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        time.sleep(0.01)
        loss = (self.weight - batch).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.ones(60, 1))


def test_progress_bar_reads_metrics_only_when_it_redraws():
    bar = CountingProgressBar(refresh_rate=10)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False)
    start = time.monotonic()
    trainer.fit(TenMillisecondSteps())
    elapsed = time.monotonic() - start

    reads = bar.read_after
    assert reads[0] == 0 and reads[-1] == 59  # the first batch shows at once, the last always
    # About 10 redraws a second over the 0.6 s or more of training: a few, not one per batch.
    assert 3 <= len(reads) <= 2 + 10 * elapsed, (len(reads), elapsed)


def test_train_loss_is_logged_on_the_steps_that_are_written_and_the_last():
    def logged(steps: int, every: int, batches_per_epoch: int, max_steps: int = -1) -> list[int]:
        out = []
        for step in range(steps):  # global_step before the step
            trainer = types.SimpleNamespace(
                global_step=step,
                log_every_n_steps=every,
                max_steps=max_steps,
                fast_dev_run=False,
                is_last_batch=(step + 1) % batches_per_epoch == 0,
            )
            if logs_this_step(trainer):
                out.append(step + 1)
        return out

    assert logged(45, every=20, batches_per_epoch=100) == [20, 40]
    assert logged(45, every=20, batches_per_epoch=25) == [20, 25, 40]
    assert logged(45, every=20, batches_per_epoch=100, max_steps=45) == [20, 40, 45]


@pytest.mark.parametrize(("overrides", "profiler"), [([], "UnprofiledRun"), (["debug=profiler"], "SimpleProfiler")])
def test_hooks_run_in_one_reused_no_op_context_unless_a_profiler_is_chosen(compose_config, overrides, profiler):
    """Lightning wraps every hook call in `profiler.profile(name)`, about 190 a step: without a
    profiler chosen, seqlab's hands back one no-op context instead of building one per call."""
    trainer = runs.build_trainer(compose_config(overrides))
    assert type(trainer.profiler).__name__ == profiler
    if profiler == "UnprofiledRun":
        assert trainer.profiler.profile("[Callback]a.on_train_batch_end") is trainer.profiler.profile("[LightningModule]b.training_step")


class BatchEndCounter(pl.Callback):
    """Overrides one per-batch hook, and counts how often Lightning names it (each hook call
    formats the callback's state_key) between two of its training batches."""

    def __init__(self) -> None:
        self.state_key_reads = 0
        self.reads_at_batch_end: list[int] = []

    @property
    def state_key(self) -> str:
        self.state_key_reads += 1
        return type(self).__qualname__

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object, batch: object, batch_idx: int) -> None:
        self.reads_at_batch_end.append(self.state_key_reads)


def test_callbacks_are_called_only_for_the_per_batch_hooks_they_override(compose_config):
    """Lightning calls all six per-step hooks of every callback, overridden or not; seqlab's trainer
    leaves out the ones a callback inherits as no-ops, and still calls the ones it overrides."""
    counter = f"+callbacks.batch_end_counter={{_target_: {__name__}.BatchEndCounter}}"
    cfg = compose_config([*FAST, "trainer.max_epochs=1", counter])
    datamodule = runs.build_datamodule(cfg)
    trainer = runs.build_trainer(cfg, datamodule)
    trainer.fit(runs.build_task(cfg, datamodule), datamodule=datamodule)

    reads = next(callback for callback in trainer.callbacks if isinstance(callback, BatchEndCounter)).reads_at_batch_end
    assert len(reads) == trainer.global_step > 2
    assert {later - earlier for earlier, later in zip(reads, reads[1:])} == {1}


def test_hooks_a_callback_sets_on_itself_are_kept():
    """LambdaCallback takes its hooks as functions and sets them on the instance, not its class."""
    called = []
    callback = LambdaCallback(on_train_batch_end=lambda *args: called.append(args))
    skip_inherited_batch_hooks([callback])
    assert callback.on_train_batch_start is None
    callback.on_train_batch_end(1, 2)
    assert called == [(1, 2)]
