"""What a run tells about itself: the config tree it prints and saves, its tags in every record, the debug preset."""

import json

import yaml

from conftest import FAST, run_cli
from seqlab.cli.train import train

# A few batches: these runs check records, not learning.
FEW_BATCHES = [*FAST, "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]


def test_the_config_tree_is_printed_and_saved_with_overridden_keys_marked(compose_config, in_hydra, tmp_path, capsys):
    in_hydra(train, compose_config([*FEW_BATCHES, "model=gru", "model.hidden_dim=24"]))
    tree = (tmp_path / "run" / "config_tree.log").read_text()
    assert str(tmp_path / "run") in tree
    assert "hidden_dim: 24  (overridden)" in tree
    assert "model: gru  (overridden)" in tree  # the groups, with the options chosen
    assert "embed_dim: 16  (overridden)" in tree and "num_layers: 1\n" in tree  # a default is not marked
    assert "hidden_dim: 24  (overridden)" in capsys.readouterr().out


def test_print_config_false_prints_and_saves_no_tree(compose_config, in_hydra, tmp_path, capsys):
    in_hydra(train, compose_config([*FEW_BATCHES, "print_config=false"]))
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not (tmp_path / "run" / "config_tree.log").exists()
    assert "(overridden)" not in capsys.readouterr().out


def test_tags_are_recorded_in_metrics_json_and_the_logger_hparams(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config([*FEW_BATCHES, "tags=[baseline,gru-vs-lstm]"]))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["tags"] == ["baseline", "gru-vs-lstm"]
    assert yaml.safe_load((tmp_path / "run" / "csv" / "version_0" / "hparams.yaml").read_text())["tags"] == ["baseline", "gru-vs-lstm"]


def test_a_run_without_tags_records_an_empty_list(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config(FEW_BATCHES))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["tags"] == []


def test_tags_are_recorded_in_job_json_and_the_cv_summary(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", "-m", "data.num_folds=2", "data.fold=0,1", *FEW_BATCHES, "tags=[cv]", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [json.loads((sweep / str(job) / "job.json").read_text())["tags"] for job in (0, 1)] == [["cv"], ["cv"]]
    assert json.loads((sweep / "cv_summary.json").read_text())["tags"] == ["cv"]


def test_tags_are_recorded_in_the_in_process_cv_summary(compose_config, in_hydra, tmp_path):
    in_hydra(train, compose_config([*FEW_BATCHES, "cv.folds=2", "tags=[cv]"]))
    assert json.loads((tmp_path / "run" / "cv_summary.json").read_text())["tags"] == ["cv"]


def test_tags_are_recorded_in_the_optuna_results(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "seqlab-train",
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *FEW_BATCHES,
        "test=false",
        "tags=[search]",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["tags"] == ["search"]


def test_debug_default_composes_anomaly_detection_one_device_and_debug_logging(compose_config):
    from hydra.core.hydra_config import HydraConfig

    cfg = compose_config(["debug=default"])
    assert cfg.trainer.detect_anomaly is True and cfg.trainer.devices == 1
    assert HydraConfig.get().job_logging.root.level == "DEBUG"


def test_a_debug_default_run_completes_and_logs_debug_lines(tmp_path):
    run = tmp_path / "run"
    result = run_cli("seqlab-train", "debug=default", *FEW_BATCHES, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "metrics.json").is_file()
    assert "[DEBUG]" in (run / "train.log").read_text()
