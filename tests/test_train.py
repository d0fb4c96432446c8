"""seqlab-train and seqlab-eval end to end: the run dir, metrics.json, eval reproducing the test metrics, resume."""

import json

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from conftest import FAST, read_metrics, run_cli
from seqlab.cli.eval import evaluate
from seqlab.cli.train import train


def test_default_run_from_the_command_line_then_eval(tmp_path):
    """The README's main job: the built-in default reaches test accuracy >= 0.9; eval reproduces it."""
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    result = run_cli("seqlab-train", f"hydra.run.dir={run_dir}", "callbacks.progress_bar=null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["test/acc"] >= 0.9
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert metrics["ckpt_path"].startswith(str(run_dir / "checkpoints"))
    assert {"val/loss", "val/acc", "test/loss", "epoch", "global_step", "data/train_size", "data/val_size", "data/test_size"} <= set(metrics)
    # Lightning's and the logger's files stay in the run dir, never in the launch folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "run"] or not (tmp_path / "lightning_logs").exists()

    result = run_cli("seqlab-eval", f"ckpt_path={metrics['ckpt_path']}", f"hydra.run.dir={eval_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(eval_dir)["test/acc"] == metrics["test/acc"]
    assert read_metrics(eval_dir)["test/loss"] == metrics["test/loss"]
    assert not (tmp_path / "lightning_logs").exists() and not (tmp_path / "outputs").exists()


def test_run_dir_holds_config_tokenizer_labels_and_checkpoints(compose_config, in_hydra, tmp_path):
    cfg = compose_config(FAST)
    value = in_hydra(train, cfg)
    run_dir = tmp_path / "run"
    metrics = read_metrics(run_dir)
    assert value == metrics["val/acc"]
    assert metrics["data/train_size"] == 600 and metrics["data/val_size"] == 100 and metrics["data/test_size"] == 200
    assert json.loads((run_dir / "labels.json").read_text()) == {"negative": 0, "positive": 1}
    assert (run_dir / "tokenizer.json").is_file()
    assert "${" not in (run_dir / ".hydra" / "config.yaml").read_text()  # resolved


@pytest.mark.parametrize(
    ("overrides", "bar", "summary"),
    [
        ([], "ProgressBar", "RichModelSummary"),
        (["callbacks.progress_bar=null", "callbacks.model_summary=null"], None, None),
        (["callbacks.progress_bar=null", "+trainer.enable_progress_bar=true"], "RichProgressBar", "RichModelSummary"),
    ],
)
def test_removing_the_progress_bar_or_summary_callback_removes_it(compose_config, overrides, bar, summary):
    """Lightning adds its own bar and summary when no callback is one; removing ours must not bring Lightning's back."""
    from pytorch_lightning.callbacks import ModelSummary

    from seqlab import runs

    trainer = runs.build_trainer(compose_config(overrides))
    assert (type(trainer.progress_bar_callback).__name__ if trainer.progress_bar_callback else None) == bar
    summaries = [type(c).__name__ for c in trainer.callbacks if isinstance(c, ModelSummary)]
    assert summaries == ([summary] if summary else [])


def test_checkpoint_holds_plain_containers_and_loads_weights_only(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config(FAST))
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    record = checkpoint["seqlab"]
    assert isinstance(record["config"], dict) and record["label_names"] == ["negative", "positive"]
    assert "DictConfig" not in repr(checkpoint.get("hyper_parameters", {}))


def test_eval_reproduces_test_metrics_with_overrides_applied(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config(FAST))
    trained = read_metrics(tmp_path / "run")
    cfg = compose_config(
        [f"ckpt_path={trained['ckpt_path']}", "data.eval_batch_size=7", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval"
    )
    evaluated = in_hydra(evaluate, cfg)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)
    assert read_metrics(tmp_path / "eval")["ckpt_path"] == trained["ckpt_path"]


class StopAfterEpoch(pl.Callback):
    """Ends fitting after `epoch` epochs, as an interrupted run would; the checkpoint is written first."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epoch:
            trainer.should_stop = True


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_resumed_run_ends_with_the_metrics_of_an_uninterrupted_one(compose_config, in_hydra, tmp_path, model):
    overrides = [*FAST, f"model={model}", "trainer.max_epochs=3", "callbacks.early_stopping=null", "model.dropout=0.3"]

    in_hydra(train, compose_config(overrides, run_dir=tmp_path / "whole"))
    whole = read_metrics(tmp_path / "whole")

    cfg = compose_config(overrides, run_dir=tmp_path / "resumed")
    with open_dict(cfg):
        cfg.callbacks.stop_after = {"_target_": f"{__name__}.StopAfterEpoch", "epoch": 1}
    in_hydra(train, cfg)
    assert read_metrics(tmp_path / "resumed")["epoch"] == 1
    in_hydra(train, compose_config([*overrides, "ckpt_path=last"], run_dir=tmp_path / "resumed"))
    resumed = read_metrics(tmp_path / "resumed")

    assert resumed["epoch"] == whole["epoch"] == 3
    assert resumed["global_step"] == whole["global_step"]
    for name in ("train/loss", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert resumed[name] == whole[name], name


def test_a_run_without_validation_finishes_and_tests(compose_config, in_hydra, tmp_path):
    # trainer.limit_val_batches=0 turns validation off: Lightning's validate returns no results then.
    value = in_hydra(train, compose_config([*FAST, "+trainer.limit_val_batches=0", "optimized_metric=test/acc"]))
    metrics = read_metrics(tmp_path / "run")
    assert "val/acc" not in metrics and value == metrics["test/acc"]
