"""A run dir is the whole record of its run: last.ckpt is the last epoch, the dir resumes after a
move or copy, a finished run is never overwritten, and a run that would train nothing writes nothing."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, run_cli
from seqlab.cli.train import train
from seqlab.errors import SeqlabError
from seqlab.runs import run_checkpoint
from seqlab.sweeps.ensemble import ensemble_members

EPOCHS = 4


def overrides(max_epochs: int = EPOCHS) -> list[str]:
    # Without early stopping every run trains to max_epochs.
    return [*[o for o in FAST if not o.startswith("trainer.max_epochs=")], f"trainer.max_epochs={max_epochs}", "callbacks.early_stopping=null"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished run dir, moved after training: the dir its checkpoints were written in is gone."""
    root = tmp_path_factory.mktemp("runs")
    result = run_cli("seqlab-train", *overrides(), f"hydra.run.dir={root / 'a'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(shutil.move(root / "a", root / "trained"))


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "b"))


def stored_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_last_checkpoint_is_the_last_epoch(trained_run):
    metrics = stored_metrics(trained_run)
    last = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == metrics["global_step"]
    # A checkpoint names the epoch it was saved in (counting from 0); metrics.json the epochs trained.
    assert last["epoch"] + 1 == metrics["epoch"] == EPOCHS


def test_metrics_name_the_best_checkpoint_relative_to_the_run_dir(trained_run):
    ckpt_path = stored_metrics(trained_run)["ckpt_path"]
    assert ckpt_path.startswith("checkpoints/best-epoch")
    assert (trained_run / ckpt_path).is_file()


def test_a_copied_run_dir_resumes_as_its_own(trained_run, tmp_path):
    run_dir = copy_of(trained_run, tmp_path)
    result = run_cli("seqlab-train", *overrides(EPOCHS + 1), "ckpt_path=last", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = stored_metrics(run_dir)
    assert metrics["epoch"] == EPOCHS + 1
    assert (run_dir / metrics["ckpt_path"]).is_file()
    # One best checkpoint (top-1 still knows the best of the epochs before the copy) and one last, never last-v1.ckpt.
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [Path(metrics["ckpt_path"]).name, "last.ckpt"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == metrics["global_step"]


def test_resuming_a_finished_run_says_so_and_keeps_its_files(trained_run, tmp_path):
    run_dir = copy_of(trained_run, tmp_path)
    before = {name: (run_dir / name).read_bytes() for name in ("metrics.json", "checkpoints/last.ckpt")}
    result = run_cli("seqlab-train", *overrides(), "ckpt_path=last", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode != 0
    assert f"run dir {run_dir} already finished at epoch {EPOCHS} (metrics.json); raise trainer.max_epochs" in result.stderr
    assert "Traceback" not in result.stderr
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_a_run_that_trains_nothing_is_refused_before_writing_a_file(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("seqlab-train", *overrides(0), f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode != 0
    assert "trainer.max_epochs=0 trains nothing" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "train.log"]  # Hydra's own, written before seqlab starts


@pytest.mark.parametrize("setting", ["trainer.max_steps=0", "+trainer.limit_train_batches=0", "+trainer.limit_train_batches=0.0"])
def test_every_setting_that_trains_nothing_is_refused(compose_config, in_hydra, monkeypatch, tmp_path, setting):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the SeqlabError itself, not the one-line exit
    with pytest.raises(SeqlabError, match=re.escape(f"{setting.removeprefix('+')} trains nothing")):
        in_hydra(train, compose_config([*overrides(), setting]))
    assert list((tmp_path / "run").iterdir()) == []


def test_a_run_dir_names_its_best_checkpoint_and_to_resume_its_last(trained_run, tmp_path):
    best = json.loads((trained_run / "metrics.json").read_text())["ckpt_path"]
    assert run_checkpoint(trained_run) == str(trained_run / best)
    assert run_checkpoint(trained_run, prefer="last") == str(trained_run / "checkpoints" / "last.ckpt")
    with pytest.raises(SeqlabError, match="neither a checkpoint file nor a run dir with checkpoints/"):
        run_checkpoint(tmp_path)
    # As ckpt_path: one run's dir is that run, not a fold ensemble; a dir that is neither is named.
    assert ensemble_members(str(trained_run)) is None
    with pytest.raises(SeqlabError, match="neither a run dir .* nor a sweep dir with folds"):
        ensemble_members(str(tmp_path))
