"""seqlab-train from_sweep=DIR: the best configuration of a sweep trained again on the full training data, in a new run dir."""

import json
from pathlib import Path

import pytest
import yaml

from conftest import TINY, read_metrics, run_cli, running_service
from seqlab.errors import SeqlabError
from seqlab.sweeps.best_configuration import read_best_configuration


def overrides_of(run_dir: Path) -> list[str]:
    return yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())


def config_of(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())


@pytest.fixture(scope="module")
def optuna_sweep(tmp_path_factory) -> Path:
    """A 2-trial Optuna search over the learning rate, the best of which from_sweep trains again."""
    cwd = tmp_path_factory.mktemp("optuna")
    sweep = cwd / "sweep"
    result = run_cli("seqlab-train", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY, f"hydra.sweep.dir={sweep}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep


# 22 s of five commands; the default suite keeps the expansion itself (the next test) under its 10 minutes.
@pytest.mark.slow
def test_optuna_sweep_best_trial_retrained_evaluated_exported_and_served(optuna_sweep, tmp_path):
    """The commands of docs/sweeps.md, "From a sweep to the model you ship"."""
    results = yaml.safe_load((optuna_sweep / "optimization_results.yaml").read_text())
    run_dir = tmp_path / "best"
    result = run_cli("seqlab-train", f"from_sweep={optuna_sweep}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    config = config_of(run_dir)
    assert config["optimizer"]["lr"] == results["best_params"]["optimizer.lr"]
    assert config["model"]["hidden_dim"] == 16 and config["data"]["train_size"] == 300  # the sweep's fixed overrides too
    assert config["data"]["fold"] is None and config["data"]["num_folds"] is None and config["data"]["merge_val"] is True
    assert config["from_sweep"] == str(optuna_sweep.resolve())
    assert f"from_sweep={optuna_sweep.resolve()}" in overrides_of(run_dir)
    assert "hparams_search=optuna" not in overrides_of(run_dir)  # the search itself is not part of the model
    metrics = read_metrics(run_dir)
    assert metrics["from_sweep"] == str(optuna_sweep.resolve())
    assert Path(metrics["ckpt_path"]).is_file() and "test/acc" in metrics
    assert f"from_sweep: the best configuration of {optuna_sweep.resolve()}" in (run_dir / "train.log").read_text()

    result = run_cli("seqlab-eval", f"ckpt_path={metrics['ckpt_path']}", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_metrics(tmp_path / "eval")["test/acc"] == metrics["test/acc"]

    bundle = tmp_path / "bundle"
    result = run_cli(
        "seqlab-export", f"ckpt_path={metrics['ckpt_path']}", "format=safetensors", f"output_dir={bundle}", f"hydra.run.dir={tmp_path / 'export'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bundle / "model.safetensors").is_file()
    httpx = pytest.importorskip("httpx")  # the optional `serve` extra
    with running_service(f"bundle={bundle}", cwd=tmp_path) as url:
        predictions = httpx.post(f"{url}/predict", json={"texts": ["a moving film", "a dull mess"]}, timeout=30).json()
    assert len(predictions["predictions"]) == 2


def test_the_command_line_wins_over_the_sweep(optuna_sweep, tmp_path):
    result = run_cli("seqlab-train", f"from_sweep={optuna_sweep}", "optimizer.lr=0.123", "model=gru", "data.merge_val=false", "--cfg", "job", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load(result.stdout)
    assert config["optimizer"]["lr"] == 0.123
    assert config["model"]["_target_"].endswith("RNNClassifier") and config["model"]["cell"] == "gru"
    assert config["model"]["hidden_dim"] == 16  # the sweep's other overrides still apply
    assert config["data"]["merge_val"] is False


@pytest.mark.slow
def test_several_seeds_of_the_best_configuration_as_a_multirun(optuna_sweep, tmp_path):
    sweep = tmp_path / "seeds"
    result = run_cli("seqlab-train", "-m", f"from_sweep={optuna_sweep}", "seed=1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for job, seed in (("0", 1), ("1", 2)):
        assert config_of(sweep / job)["seed"] == seed
        assert read_metrics(sweep / job)["from_sweep"] == str(optuna_sweep.resolve())
        assert json.loads((sweep / job / "job.json").read_text())["from_sweep"] == str(optuna_sweep.resolve())
    assert not (sweep / "optimization_results.yaml").exists()  # retrained, not searched again


@pytest.mark.slow
def test_in_process_cross_validation_then_from_sweep(tmp_path):
    cv_run = tmp_path / "cv"
    result = run_cli("seqlab-train", "cv.folds=2", *TINY, "optimizer.lr=0.004", f"hydra.run.dir={cv_run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "all"
    result = run_cli("seqlab-train", f"from_sweep={cv_run}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    config = config_of(run_dir)
    assert config["cv"]["folds"] is None and config["data"]["fold"] is None
    assert config["optimizer"]["lr"] == 0.004
    # No fold held out: the training data and the validation split pooled, validation drawn from them.
    assert config["data"]["merge_val"] is True
    metrics = read_metrics(run_dir)
    assert metrics["data/train_size"] + metrics["data/val_size"] == 300 + 50
    assert not (run_dir / "fold_0").exists()


def write_fold_job(job_dir: Path, overrides: list[str], fold: int, val_loss: float) -> None:
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"data.fold={fold}"]))
    config = {"data": {"fold": fold, "num_folds": 2}, "optimized_metric": "val/loss", "monitor": "val/acc", "monitor_mode": "max"}
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / "metrics.json").write_text(json.dumps({"val/loss": val_loss}))


def test_crossed_cross_validation_picks_the_configuration_with_the_best_mean(tmp_path):
    """Lower is better for a loss: the configuration with the lowest mean val/loss over its folds wins."""
    for job, (lr, fold, val_loss) in enumerate([("0.01", 0, 0.3), ("0.01", 1, 0.5), ("0.001", 0, 0.35), ("0.001", 1, 0.36)]):
        write_fold_job(tmp_path / str(job), ["experiment=sst2_lstm", f"optimizer.lr={lr}", "data.num_folds=2", "hydra/launcher=joblib"], fold, val_loss)
    with pytest.raises(SeqlabError, match="is not a sweep dir"):  # a folder that holds fold jobs, not the sweep's own dir
        read_best_configuration(tmp_path)
    (tmp_path / "multirun.yaml").write_text("{}\n")  # as Hydra's sweepers leave it
    best = read_best_configuration(tmp_path)
    assert best.overrides == ["experiment=sst2_lstm", "optimizer.lr=0.001"]
    assert best.searched == ["optimizer.lr=0.001"]


def test_refusals(tmp_path):
    result = run_cli("seqlab-train", f"from_sweep={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1 and "is not a sweep dir" in result.stderr and "Traceback" not in result.stderr

    result = run_cli("seqlab-train", f"from_sweep={tmp_path / 'missing'}", cwd=tmp_path)
    assert result.returncode == 1 and "does not exist" in result.stderr

    (tmp_path / "optimization_results.yaml").write_text(yaml.safe_dump({"name": "optuna", "trials": {"fail": 2}}))
    result = run_cli("seqlab-train", f"from_sweep={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1 and "no completed trial" in result.stderr

    result = run_cli("seqlab-train", "-m", f"from_sweep={tmp_path}", cwd=tmp_path)
    assert result.returncode == 1 and "seed=1,2,3" in result.stderr

    result = run_cli("seqlab-train", f"from_sweep={tmp_path},{tmp_path}", cwd=tmp_path)
    assert result.returncode == 1 and "one sweep dir" in result.stderr

    with pytest.raises(SeqlabError, match="no completed trial"):
        read_best_configuration(tmp_path)
