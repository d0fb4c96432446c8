"""Loggers write inside the run dir; wandb runs offline without an account and is always finished."""

import json
import struct

import pytest
import wandb
import yaml

from conftest import FAST
from seqlab import loggers
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


def wandb_run_tags_and_config(path):
    """The tags and config an offline wandb run stored in its run file, which wandb syncs later.

    The file is wandb's record log: a 7-byte header, then 32 KiB blocks of chunks (crc32, length,
    type: 1 whole record, 2/3/4 its first/middle/last part), each record a protobuf `Record`.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    raw, position, pending, records = path.read_bytes(), 7, b"", []
    while position + 7 <= len(raw):
        left_in_block = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7]) if left_in_block >= 7 else (0, 0, 0)
        if kind == 0:  # padding at the end of a block
            position += left_in_block
            continue
        pending += raw[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            records.append(Record.FromString(pending))
            pending = b""
    tags = [tag for record in records if record.HasField("run") for tag in record.run.tags]
    config = {item.key: json.loads(item.value_json) for record in records if record.HasField("config") for item in record.config.update}
    return tags, config


def test_every_logger_records_the_run_config_tags_and_parameter_counts(compose_config, in_hydra, tmp_path, no_wandb_account):
    """csv and TensorBoard keep the config in hparams.yaml, wandb in its run's config, MLflow as run params."""
    pytest.importorskip("mlflow")
    in_hydra(train, compose_config([*FAST, "logger=many", "trainer.max_epochs=1", "model.hidden_dim=24", "tags=[baseline,lstm]"]))
    run = tmp_path / "run"
    for hparams_path in (run / "csv" / "version_0" / "hparams.yaml", run / "tensorboard" / "version_0" / "hparams.yaml"):
        hparams = yaml.safe_load(hparams_path.read_text())
        assert hparams["model"]["hidden_dim"] == 24 and hparams["optimizer"]["lr"] > 0, hparams_path
        assert hparams["tags"] == ["baseline", "lstm"]
        assert hparams["num_parameters"]["total"] >= hparams["num_parameters"]["trainable"] > 0

    [wandb_run_file] = (run / "wandb").glob("offline-run-*/run-*.wandb")
    wandb_tags, wandb_config = wandb_run_tags_and_config(wandb_run_file)
    assert wandb_tags == ["baseline", "lstm"]
    assert wandb_config["model"]["hidden_dim"] == 24 and wandb_config["tags"] == ["baseline", "lstm"]
    assert wandb_config["num_parameters"]["total"] > 0

    [mlflow_run] = [p.parent for p in (run / "mlruns").glob("*/*/params")]
    assert (mlflow_run / "params" / "model" / "hidden_dim").read_text() == "24"
    assert int((mlflow_run / "params" / "num_parameters" / "trainable").read_text()) > 0
    assert {"baseline", "lstm"} <= {p.name for p in (mlflow_run / "tags").iterdir()}


def test_mlflow_logs_metrics_to_a_file_store_in_the_run_dir(compose_config, in_hydra, tmp_path):
    pytest.importorskip("mlflow")
    in_hydra(train, compose_config([*FAST, "logger=mlflow", "trainer.max_epochs=1"]))
    [mlflow_run] = [p.parent for p in (tmp_path / "run" / "mlruns").glob("*/*/metrics")]
    assert (mlflow_run / "metrics" / "val" / "acc").is_file()
    assert (mlflow_run / "params" / "seed").read_text() == "42"


def test_many_loggers_go_on_without_mlflow_with_one_warning(compose_config, in_hydra, tmp_path, no_wandb_account, monkeypatch, caplog):
    monkeypatch.setattr(loggers, "mlflow_installed", lambda: False)
    in_hydra(train, compose_config([*FAST, "logger=many", "trainer.max_epochs=1"]))
    assert (tmp_path / "run" / "metrics.json").is_file() and not (tmp_path / "run" / "mlruns").exists()
    assert [r.getMessage() for r in caplog.records if r.name == "seqlab.loggers"] == [
        "logger=many: mlflow is not installed, so this run has no MLflow logger (pip install 'seqlab[mlflow]')"
    ]


def test_logger_mlflow_without_mlflow_names_the_extra(compose_config, in_hydra, monkeypatch, capsys):
    monkeypatch.setattr(loggers, "mlflow_installed", lambda: False)
    with pytest.raises(SystemExit):
        in_hydra(train, compose_config([*FAST, "logger=mlflow", "trainer.max_epochs=1"]))
    assert "Error: logger=mlflow needs mlflow: pip install 'seqlab[mlflow]'" in capsys.readouterr().err
