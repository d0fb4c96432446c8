"""Sweeps over parallel text with BLEU as the objective: an Optuna search, cross-validation in one run
(folds of pairs, or of whole groups), and folds as a multirun crossed with a setting. BLEU is better
higher, so each must name the configuration with the higher val/bleu best."""

import csv
import json
import shlex
import statistics
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf

from conftest import read_metrics, run_cli
from parallel_fixtures import parallel_rows, write_parallel_tsv
from seqlab.cli.train import train
from seqlab.sweeps.objective import study_directions
from seqlab.sweeps.optuna_study import write_reports

BOOKS = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon")
# A tiny model on whole words learns some of the word-for-word pairs in a few dozen steps; a learning
# rate of 1e-9 learns nothing, so the better configuration is known.
TINY = [
    "data=parallel_text",
    "task=seq2seq",
    "model=transformer_seq2seq",
    "data/tokenizer=word",
    "data.source_column=en",
    "data.target_column=es",
    "data.batch_size=16",
    "model.hidden_dim=32",
    "model.num_heads=2",
    "model.num_layers=1",
    "trainer.max_epochs=3",
    "trainer.num_sanity_val_steps=0",
    "scheduler.warmup_steps=5",
    "task.test_beam_size=1",
    "test=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
    "threads=1",
]
LEARNS, LEARNS_NOTHING = 1e-2, 1e-9


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    """200 pairs, 40 in each of five books."""
    return write_parallel_tsv(tmp_path / "pairs.tsv", parallel_rows(200, books=BOOKS))


def test_the_optuna_preset_optimises_the_metric_the_task_monitors(compose_config) -> None:
    """hparams_search=optuna on translation searches for the best val/bleu, without optimized_metric on the command line."""
    cfg = compose_config(["hparams_search=optuna", "data=parallel_text", "data.train_file=pairs.tsv", "task=seq2seq", "model=transformer_seq2seq"])
    assert cfg.optimized_metric == "val/bleu"
    assert compose_config(["hparams_search=optuna"]).optimized_metric == "val/acc"


def test_a_bleu_study_maximises_and_its_report_names_val_bleu(tmp_path: Path) -> None:
    """The sweeper's direction for val/bleu, and optimization_results.yaml saying what its values are."""
    OmegaConf.save(OmegaConf.create({"monitor": "val/bleu", "monitor_mode": "max", "optimized_metric": "${monitor}"}), tmp_path / "multirun.yaml")
    study = optuna.create_study(directions=study_directions(None, "val/bleu", "val/bleu", "max"))
    lr = optuna.distributions.FloatDistribution(LEARNS_NOTHING, LEARNS, log=True)
    for value, bleu in ((LEARNS_NOTHING, 0.0), (LEARNS, 12.5)):
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": value}, distributions={"optimizer.lr": lr}, value=bleu))
    write_reports(study, tmp_path, storage="memory")
    results = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert results["optimized_metric"] == "val/bleu" and results["directions"] == ["maximize"]
    assert results["best_params"] == {"optimizer.lr": LEARNS} and results["best_value"] == 12.5


@pytest.mark.slow
def test_an_optuna_search_over_parallel_text_maximises_val_bleu_and_its_best_command_line_trains_it_again(pairs_file: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    search = [
        "hparams_search=optuna",
        "optimized_metric=val/bleu",
        "hydra.sweeper.n_trials=2",
        "~hydra.sweeper.params",
        "hydra/sweeper/sampler=grid",
        f"optimizer.lr=choice({LEARNS_NOTHING},{LEARNS})",
    ]
    result = run_cli("seqlab-train", "-m", *search, *TINY, "data.train_file=pairs.tsv", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    with (sweep / "trials.csv").open() as f:
        trials = {float(row["params_optimizer.lr"]): row for row in csv.DictReader(f)}
    for trial in trials.values():
        assert float(trial["value"]) == read_metrics(Path(trial["job_dir"]))["val/bleu"]
    assert float(trials[LEARNS]["value"]) > float(trials[LEARNS_NOTHING]["value"])

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["optimized_metric"] == "val/bleu" and results["directions"] == ["maximize"]
    assert results["best_params"] == {"optimizer.lr": LEARNS}
    assert results["best_value"] == float(trials[LEARNS]["value"])

    rerun = run_cli("seqlab-train", *shlex.split(results["best_command_line"]), f"hydra.run.dir={tmp_path / 'best'}", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_metrics(tmp_path / "best")["val/bleu"] == pytest.approx(results["best_value"])


def assert_val_bleu_summarised_per_fold(run_dir: Path, folds: int) -> list[float]:
    """cv_summary.json's val/bleu: each fold's value from its metrics.json, their mean, std and 95% interval."""
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    values = [read_metrics(run_dir / f"fold_{k}")["val/bleu"] for k in range(folds)]
    assert [fold["metrics"]["val/bleu"] for fold in summary["folds"]] == values
    bleu = summary["metrics"]["val/bleu"]
    assert bleu["n"] == folds and bleu["mean"] == pytest.approx(statistics.fmean(values)) and bleu["std"] == pytest.approx(statistics.stdev(values))
    low, high = bleu["ci95"]
    assert low <= bleu["mean"] <= high
    return values


@pytest.mark.slow
def test_cross_validation_in_one_run_returns_the_mean_val_bleu_of_its_folds(pairs_file: Path, tmp_path: Path, compose_config, in_hydra) -> None:
    cfg = compose_config(["cv.folds=2", *TINY, f"optimizer.lr={LEARNS}", f"data.train_file={pairs_file}", f"paths.data_dir={tmp_path}"])
    value = in_hydra(train, cfg)
    values = assert_val_bleu_summarised_per_fold(tmp_path / "run", folds=2)
    assert value == pytest.approx(statistics.fmean(values)) and value > 0


@pytest.mark.slow
def test_cross_validation_with_a_group_column_validates_on_whole_groups(pairs_file: Path, tmp_path: Path, compose_config, in_hydra) -> None:
    groups = ["data.group_column=ref", r"data.group_pattern='^(.+) \d+:\d+$'", "data.test_groups=[Epsilon]"]
    cfg = compose_config(["cv.folds=2", *TINY, f"optimizer.lr={LEARNS}", *groups, f"data.train_file={pairs_file}", f"paths.data_dir={tmp_path}"])
    in_hydra(train, cfg)
    assert_val_bleu_summarised_per_fold(tmp_path / "run", folds=2)
    sizes = [read_metrics(tmp_path / "run" / f"fold_{k}") for k in range(2)]
    # Epsilon tests in every fold; the other four books (160 pairs) are split by book: two validate in each fold.
    assert [fold["data/test_size"] for fold in sizes] == [40, 40]
    assert [fold["data/val_size"] for fold in sizes] == [80, 80]
    assert [fold["data/train_size"] for fold in sizes] == [80, 80]


@pytest.mark.slow
def test_folds_as_a_multirun_name_the_configuration_with_the_higher_mean_val_bleu_best(pairs_file: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    folds = ["data.num_folds=2", "data.fold=range(2)", f"optimizer.lr={LEARNS_NOTHING},{LEARNS}"]
    result = run_cli("seqlab-train", "-m", *folds, *TINY, "data.train_file=pairs.tsv", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep / "cv_summary.json").read_text())
    means = {configuration["label"]: configuration["metrics"]["val/bleu"]["mean"] for configuration in summary["configurations"]}
    assert means[f"optimizer.lr={LEARNS}"] > means[f"optimizer.lr={LEARNS_NOTHING}"]
    best = summary["best_configuration"]
    assert (best["metric"], best["direction"], best["label"]) == ("val/bleu", "maximize", f"optimizer.lr={LEARNS}")
