"""The fast paths keep their meaning: epoch-level train metrics over every example, model.compile
compiling the inner model in place, a progress bar that reads metrics only when it redraws, and
runs cut short by trainer.max_steps."""

import types

import pytest
import torch
from pytorch_lightning.callbacks import RichProgressBar
from torchmetrics.functional.classification import binary_auroc, multiclass_accuracy, multiclass_f1_score

from conftest import FAST, read_metrics
from seqlab import runs
from seqlab.callbacks import ProgressBar
from seqlab.tasks.classification import SequenceClassificationTask
from seqlab.cli.train import train


def test_train_metrics_cover_every_training_example_of_the_epoch(compose_config, in_hydra, tmp_path, monkeypatch):
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    remember = SequenceClassificationTask._remember_train_predictions

    def recording(self, logits, labels):
        seen.append((self.probabilities(logits), labels))
        remember(self, logits, labels)

    monkeypatch.setattr(SequenceClassificationTask, "_remember_train_predictions", recording)
    in_hydra(train, compose_config([*FAST, "trainer.max_epochs=1"]))

    metrics = read_metrics(tmp_path / "run")
    probs = torch.cat([p for p, _ in seen])
    labels = torch.cat([y for _, y in seen])
    assert len(labels) == metrics["data/train_size"]
    assert metrics["train/acc"] == pytest.approx(multiclass_accuracy(probs, labels, num_classes=2).item(), abs=1e-6)
    assert metrics["train/f1"] == pytest.approx(multiclass_f1_score(probs, labels, num_classes=2, average="macro").item(), abs=1e-6)
    assert metrics["train/auroc"] == pytest.approx(binary_auroc(probs[:, 1], labels).item(), abs=1e-6)


def test_a_run_cut_short_by_max_steps_finishes(compose_config, in_hydra, tmp_path):
    """Early stopping checks after validation, so a run that ends before its first one still ends cleanly."""
    in_hydra(train, compose_config([*FAST, "trainer.max_steps=1"]))
    metrics = read_metrics(tmp_path / "run")
    assert metrics["global_step"] == 1 and "test/acc" in metrics


def test_model_compile_compiles_the_inner_model_in_place(compose_config):
    cfg = compose_config([*FAST, "model.compile=true"])
    datamodule = runs.build_datamodule(cfg)
    task = runs.build_task(cfg, datamodule)
    plain = runs.build_task(compose_config(FAST), datamodule)
    assert task.net._compiled_call_impl is not None
    assert plain.net._compiled_call_impl is None
    # Checkpoints keep the plain parameter names, so an uncompiled eval loads them.
    assert list(task.state_dict()) == list(plain.state_dict())


@pytest.mark.slow
def test_a_compiled_model_trains_and_evaluates(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config([*FAST, "model.compile=true", "trainer.max_epochs=1"]))
    assert read_metrics(tmp_path / "run")["test/acc"] > 0.5


def test_progress_bar_reads_metrics_only_when_it_redraws(monkeypatch):
    clock = iter(i * 0.01 for i in range(10_000))  # a training batch every 10 ms
    monkeypatch.setattr("seqlab.callbacks.time.monotonic", lambda: next(clock))
    updates = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, trainer, module, outputs, batch, idx: updates.append(idx))

    bar = ProgressBar(refresh_rate=10)
    trainer = types.SimpleNamespace(is_last_batch=False, global_step=0, max_steps=-1)
    for index in range(100):  # one second of batches
        trainer.global_step = index + 1
        trainer.is_last_batch = index == 99
        bar.on_train_batch_end(trainer, None, None, None, index)
    assert 10 <= len(updates) <= 12
    assert updates[0] == 0 and updates[-1] == 99  # the first batch shows at once, the last always


def test_train_loss_is_logged_on_the_steps_that_are_written_and_the_last():
    from seqlab.tasks.step_logging import logs_this_step

    def logged(steps: int, every: int, batches_per_epoch: int, max_steps: int = -1) -> list[int]:
        out = []
        for step in range(steps):  # global_step before the step
            trainer = types.SimpleNamespace(
                global_step=step, log_every_n_steps=every, max_steps=max_steps, fast_dev_run=False,
                is_last_batch=(step + 1) % batches_per_epoch == 0,
            )
            if logs_this_step(trainer):
                out.append(step + 1)
        return out

    assert logged(45, every=20, batches_per_epoch=100) == [20, 40]
    assert logged(45, every=20, batches_per_epoch=25) == [20, 25, 40]
    assert logged(45, every=20, batches_per_epoch=100, max_steps=45) == [20, 40, 45]
