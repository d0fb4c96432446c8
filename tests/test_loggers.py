"""Loggers write inside the run dir; wandb runs offline without an account and is always finished."""

import pytest
import wandb

from conftest import FAST
from seqlab.cli.train import train
from seqlab.errors import SeqlabError


@pytest.fixture
def no_wandb_account(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_runs_offline_in_the_run_dir_and_is_finished(compose_config, in_hydra, tmp_path, no_wandb_account):
    in_hydra(train, compose_config([*FAST, "logger=wandb", "trainer.max_epochs=1"]))
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*")), "wandb wrote no offline run in the run dir"
    assert wandb.run is None


def test_wandb_is_finished_when_the_run_fails(compose_config, in_hydra, tmp_path, no_wandb_account):
    with pytest.raises((SeqlabError, SystemExit)):
        in_hydra(train, compose_config([*FAST, "logger=wandb", "trainer.max_epochs=1", "optimized_metric=val/nope"]))
    assert wandb.run is None
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_tensorboard_and_csv_write_in_the_run_dir(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config([*FAST, "logger=many", "~logger.wandb", "trainer.max_epochs=1"]))
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((tmp_path / "run" / "csv").rglob("metrics.csv"))
