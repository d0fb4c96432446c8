"""What a sweep optimises and what it reports: the direction of an Optuna search, searching part of a
preset's space, the best trial or configuration as overrides and a command line, and the CV summary's
statistics (bookkeeping apart, a 95% interval of each mean)."""

import csv
import json
import math
import shlex
import statistics
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import FAST, run_cli
from seqlab.errors import SeqlabError
from seqlab.sweeps.cv import T975, summarize_sweep, t_quantile_975
from seqlab.sweeps.objective import known_direction, study_directions


def optuna_sweep(tmp_path: Path, *overrides: str):
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", "-m", *overrides, "hydra.sweeper.n_trials=2", *FAST, "test=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    return result, sweep


def searched_columns(sweep: Path) -> set[str]:
    with (sweep / "trials.csv").open() as f:
        header = next(csv.reader(f))
    return {column.removeprefix("params_") for column in header if column.startswith("params_")}


def test_the_direction_follows_monitor_mode_then_the_metric_name():
    assert known_direction("val/acc", "val/acc", "max") == "maximize"
    assert known_direction("val/score", "val/score", "min") == "minimize"  # the monitored metric: monitor_mode says
    assert known_direction("test/bleu", "val/loss", "min") == "maximize"
    assert known_direction("val/ppl", "val/acc", "max") == "minimize"
    assert known_direction("val/score", "val/acc", "max") is None

    assert study_directions(None, "val/acc", "val/acc", "max") == ["maximize"]
    assert study_directions(None, ["val/acc", "val/loss"], "val/acc", "max") == ["maximize", "minimize"]
    assert study_directions("max", "val/score", "val/acc", "max") == ["maximize"]  # unknown metric: the given direction
    with pytest.raises(SeqlabError, match=r"whether optimized_metric val/score is better higher or lower: set hydra.sweeper.direction=maximize or minimize"):
        study_directions(None, "val/score", "val/acc", "max")
    with pytest.raises(SeqlabError, match=r"hydra.sweeper.direction\[1\]=maximize but optimized_metric val/loss is better when lower"):
        study_directions(["maximize", "maximize"], ["val/acc", "val/loss"], "val/acc", "max")
    with pytest.raises(SeqlabError, match="one direction per metric"):
        study_directions(["maximize", "minimize"], "val/acc", "val/acc", "max")


def test_a_bare_search_maximises_accuracy_and_names_the_better_trial_best(tmp_path):
    """No direction given: val/acc is monitored with monitor_mode=max, so the study maximises it."""
    result, sweep = optuna_sweep(tmp_path, "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "optimizer.lr=choice(1e-9,3e-3)")
    assert result.returncode == 0, result.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    with (sweep / "trials.csv").open() as f:
        values = {float(row["params_optimizer.lr"]): float(row["value"]) for row in csv.DictReader(f)}
    assert values[3e-3] > values[1e-9]  # an lr of 1e-9 learns nothing
    assert results["directions"] == ["maximize"]
    assert results["best_params"] == {"optimizer.lr": 3e-3} and results["best_value"] == values[3e-3]

    # The best trial's overrides, and the same as a command line, train its configuration again.
    overrides = results["best_overrides"]
    assert overrides == ["optimizer.lr=0.003", *FAST, "test=false"]
    assert shlex.split(results["best_command_line"]) == overrides
    lr = OverridesParser.create().parse_overrides(overrides[:1])[0]
    assert (lr.key_or_group, lr.value()) == ("optimizer.lr", 3e-3)


def test_a_direction_that_contradicts_the_metric_is_refused_before_any_trial(tmp_path):
    result, sweep = optuna_sweep(tmp_path, "hydra/sweeper=optuna", "optimizer.lr=choice(1e-9,3e-3)", "hydra.sweeper.direction=minimize")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: hydra.sweeper.direction=minimize but optimized_metric val/acc is better when higher (monitor_mode=max); "
        "drop the direction or set it to maximize"
    )
    assert not sweep.exists()


def test_a_preset_searched_without_some_of_its_dimensions(tmp_path):
    """lr and dropout only: the preset's other dimensions dropped on the command line."""
    result, sweep = optuna_sweep(tmp_path, "hparams_search=optuna", "~hydra.sweeper.params.optimizer.weight_decay", "~hydra.sweeper.params.model.hidden_dim")
    assert result.returncode == 0, result.stderr[-3000:]
    assert searched_columns(sweep) == {"optimizer.lr", "model.dropout"}


@pytest.mark.slow
def test_a_search_space_of_ones_own_in_a_config_dir(tmp_path):
    """A user's preset beside their project (--config-dir) searches lr alone, maximising val/acc without saying so."""
    preset = tmp_path / "my_conf" / "hparams_search" / "lr_only.yaml"
    preset.parent.mkdir(parents=True)
    preset.write_text(
        "# @package _global_\n"
        "defaults:\n  - override /hydra/sweeper: optuna\n"
        "hydra:\n  sweeper:\n    params:\n      optimizer.lr: tag(log, interval(1e-4, 1e-2))\n"
    )
    result, sweep = optuna_sweep(tmp_path, "--config-dir", str(preset.parents[1]), "hparams_search=lr_only")
    assert result.returncode == 0, result.stderr[-3000:]
    assert searched_columns(sweep) == {"optimizer.lr"}
    assert yaml.safe_load((sweep / "optimization_results.yaml").read_text())["directions"] == ["maximize"]


# -- the cross-validation summary ------------------------------------------------------------------

# Two learning rates crossed with two folds: 3e-3 has the better accuracy, 1e-3 the lower loss.
FOLD_METRICS = {
    "1e-3": [{"val/acc": 0.80, "val/loss": 0.30}, {"val/acc": 0.84, "val/loss": 0.34}],
    "3e-3": [{"val/acc": 0.90, "val/loss": 0.50}, {"val/acc": 0.86, "val/loss": 0.56}],
}


def write_crossed_sweep(sweep: Path, optimized_metric: str) -> None:
    """Job dirs as a sweep `-m data.num_folds=2 'data.fold=range(2)' optimizer.lr=1e-3,3e-3` leaves them."""
    job = 0
    for lr, folds in FOLD_METRICS.items():
        for fold, metrics in enumerate(folds):
            job_dir = sweep / str(job)
            (job_dir / ".hydra").mkdir(parents=True)
            overrides = ["data.num_folds=2", f"data.fold={fold}", f"optimizer.lr={lr}", "+data.note='two words'"]
            config = {"data": {"fold": fold, "num_folds": 2}, "monitor": "val/acc", "monitor_mode": "max", "optimized_metric": optimized_metric}
            (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
            bookkeeping = {"epoch": 2 + fold, "global_step": 20, "data/train_size": 300, "lr-AdamW/pg1": 0.001, "train/lr": 0.001}
            (job_dir / "metrics.json").write_text(json.dumps({**metrics, **bookkeeping, "ckpt_path": "checkpoints/best.ckpt"}))
            job += 1


@pytest.mark.parametrize(("optimized_metric", "best_lr"), [("val/acc", "3e-3"), ("val/loss", "1e-3")])
def test_cv_summary_names_the_best_configuration_by_the_metrics_direction(tmp_path, optimized_metric, best_lr):
    write_crossed_sweep(tmp_path, optimized_metric)
    summary = summarize_sweep(tmp_path, show=False)
    best = summary["best_configuration"]
    assert best["overrides"] == [f"optimizer.lr={best_lr}", "+data.note='two words'"]  # no data.fold, no data.num_folds
    assert shlex.split(best["command_line"]) == best["overrides"]
    assert best["metric"] == optimized_metric
    assert best["mean"] == pytest.approx(statistics.fmean(m[optimized_metric] for m in FOLD_METRICS[best_lr]))
    assert json.loads((tmp_path / "cv_summary.json").read_text())["best_configuration"] == best


def test_cv_summary_keeps_bookkeeping_apart_and_gives_each_mean_a_95_interval(tmp_path, capsys):
    write_crossed_sweep(tmp_path, "val/acc")
    summary = summarize_sweep(tmp_path)
    block = next(b for b in summary["configurations"] if "optimizer.lr=3e-3" in b["overrides"])
    assert set(block["metrics"]) == {"val/acc", "val/loss"}
    assert block["bookkeeping"] == {
        "data/train_size": {"min": 300, "max": 300, "n": 2},
        "epoch": {"min": 2, "max": 3, "n": 2},
        "global_step": {"min": 20, "max": 20, "n": 2},
        "lr-AdamW/pg1": {"min": 0.001, "max": 0.001, "n": 2},
        "train/lr": {"min": 0.001, "max": 0.001, "n": 2},
    }
    acc = block["metrics"]["val/acc"]
    half_width = 12.706 * statistics.stdev([0.90, 0.86]) / math.sqrt(2)  # Student's t(0.975, 1 df)
    assert acc["ci95"] == pytest.approx([0.88 - half_width, 0.88 + half_width], rel=1e-4)

    with (tmp_path / "cv_summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["metric"] for row in rows if row["block"] == "bookkeeping"} == set(block["bookkeeping"])
    row = next(r for r in rows if r["block"] == "metrics" and r["metric"] == "val/acc" and r["configuration"].startswith("optimizer.lr=3e-3"))
    assert [float(row["ci95_low"]), float(row["ci95_high"])] == pytest.approx(acc["ci95"])

    printed = capsys.readouterr().out
    assert "95% CI" in printed and "bookkeeping: data/train_size 300, epoch 2–3" in printed
    assert "best configuration: optimizer.lr=3e-3 (mean val/acc 0.8800, maximize)" in printed
    assert f"train it again: seqlab-train {summary['best_configuration']['command_line']}" in printed


def test_the_t_table_used_without_scipy_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df, value in enumerate(T975, start=1):
        assert value == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=1e-3)
        assert t_quantile_975(df) == pytest.approx(value, abs=1e-3)
