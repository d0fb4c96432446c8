"""Sweeps end to end: k-fold cross-validation multiruns and their summaries, in-process CV, the Optuna sweeper."""

import json
import statistics
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import TINY, read_metrics, run_cli
from seqlab.cli.train import train
from seqlab.errors import SeqlabError
from seqlab.sweeps.objective import study_directions
from seqlab.sweeps.optuna_study import open_storage, trial_env_overrides, trial_from_env, trial_values
from seqlab.sweeps.search_space import grid_values, parse_search_space


def fold_means(job_dirs):
    """The mean of every numeric value over the jobs' metrics.json, as the summary must report it."""
    metrics = [read_metrics(d) for d in job_dirs]
    names = {k for m in metrics for k, v in m.items() if isinstance(v, (int, float))}
    return {name: statistics.fmean(m[name] for m in metrics) for name in names}


def assert_means_match(block, job_dirs):
    expected = fold_means(job_dirs)
    assert set(block["metrics"]) | set(block["bookkeeping"]) == set(expected)
    assert {"epoch", "global_step", "data/train_size"} <= set(block["bookkeeping"])  # not among the metrics
    for name, mean in expected.items():
        if name in block["metrics"]:
            assert block["metrics"][name]["mean"] == pytest.approx(mean, rel=1e-9, abs=1e-12), name
        else:  # bookkeeping: its range over the folds
            assert block["bookkeeping"][name]["min"] <= mean <= block["bookkeeping"][name]["max"], name
        assert (block["metrics"].get(name) or block["bookkeeping"][name])["n"] == len(job_dirs)


@pytest.mark.slow
def test_kfold_multirun_summary_with_a_failed_fold_then_re_aggregation(tmp_path):
    """3 folds train; a 4th (out of range) fails: it is listed as failed, the others are summarised, the exit is non-zero."""
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", "-m", "data.num_folds=3", "data.fold=range(4)", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode != 0
    assert "cross-validation, 4 folds" in result.stdout

    summary = json.loads((sweep / "cv_summary.json").read_text())
    assert summary["status"] == "failed" and len(summary["configurations"]) == 1
    folds = {entry["fold"]: entry for entry in summary["folds"]}
    assert [folds[k]["status"] for k in range(4)] == ["completed"] * 3 + ["failed"]
    assert "data.fold must be in 0..2" in folds[3]["error"]
    completed = [sweep / folds[k]["job_dir"] for k in range(3)]
    assert_means_match(summary, completed)
    val_acc = [read_metrics(d)["val/acc"] for d in completed]
    assert summary["metrics"]["val/acc"]["std"] == pytest.approx(statistics.stdev(val_acc))
    assert summary["metrics"]["val/acc"]["min"] == min(val_acc) and summary["metrics"]["val/acc"]["max"] == max(val_acc)
    rows = (sweep / "cv_summary.csv").read_text().splitlines()
    assert rows[0].split(",")[:10] == ["configuration", "block", "metric", "mean", "std", "ci95_low", "ci95_high", "min", "max", "n"]
    assert any(",metrics,val/acc," in row for row in rows) and any(",bookkeeping,epoch," in row for row in rows)

    # seqlab-cv-summary rebuilds the same summary from the files alone.
    (sweep / "cv_summary.json").unlink()
    (sweep / "cv_summary.csv").unlink()
    result = run_cli("seqlab-cv-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert json.loads((sweep / "cv_summary.json").read_text()) == summary

    # An interrupted sweep: a fold that left no result is incomplete, and the rest still summarised.
    (completed[2] / "metrics.json").unlink()
    (completed[2] / "job.json").unlink()
    result = run_cli("seqlab-cv-summary", str(sweep), cwd=tmp_path)
    resummarised = json.loads((sweep / "cv_summary.json").read_text())
    assert [entry["status"] for entry in resummarised["folds"]] == ["completed", "completed", "incomplete", "failed"]
    assert_means_match(resummarised, completed[:2])

    result = run_cli("seqlab-cv-summary", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "not a sweep dir" in result.stderr


@pytest.mark.slow
def test_kfold_with_joblib_crossed_with_a_two_value_sweep(tmp_path):
    """Folds run in parallel processes; one summary block per model, never mixing them."""
    sweep = tmp_path / "sweep"
    result = run_cli(
        "seqlab-train",
        "-m",
        "model=lstm,gru",
        "data.num_folds=3",
        "data.fold=range(3)",
        *TINY,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((sweep / "cv_summary.json").read_text())
    assert "metrics" not in summary  # two configurations: no mixed top-level statistics
    blocks = {block["label"]: block for block in summary["configurations"]}
    assert set(blocks) == {"model=lstm", "model=gru"}
    for label, block in blocks.items():
        assert sorted(entry["fold"] for entry in block["folds"]) == [0, 1, 2]
        job_dirs = [sweep / entry["job_dir"] for entry in block["folds"]]
        for job_dir in job_dirs:
            assert label in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        assert_means_match(block, job_dirs)
    assert "cross-validation, 3 folds: model=lstm" in result.stdout and "cross-validation, 3 folds: model=gru" in result.stdout


def test_in_process_cv_trains_folds_in_sequence_and_returns_the_mean(compose_config, in_hydra, tmp_path):
    cfg = compose_config([*TINY, "cv.folds=2"])
    value = in_hydra(train, cfg)
    run_dir = tmp_path / "run"
    fold_dirs = [run_dir / "fold_0", run_dir / "fold_1"]
    assert value == pytest.approx(statistics.fmean(read_metrics(d)["val/acc"] for d in fold_dirs))
    summary = json.loads((run_dir / "cv_summary.json").read_text())
    assert [entry["status"] for entry in summary["folds"]] == ["completed", "completed"]
    assert_means_match(summary, fold_dirs)
    # Each fold validated on its own half of the training data.
    assert read_metrics(fold_dirs[0])["data/val_size"] + read_metrics(fold_dirs[1])["data/val_size"] == 300


def test_search_space_syntax_and_range_bounds():
    space = parse_search_space(
        [
            "a=range(1,4)",
            "b=range(0,1,0.25)",
            "c=int(interval(2,8))",
            "d=tag(log,interval(1e-4,1e-1))",
            "e=choice(lstm,gru)",
            "f=3",
            "g=tag(log,int(interval(2,64)))",
            "h=range(5,1,-2)",
        ]
    )
    d = space.distributions
    assert d["a"] == optuna.distributions.IntDistribution(1, 3)  # Hydra's range excludes its end
    assert grid_values("a", d["a"]) == [1, 2, 3]
    assert d["b"] == optuna.distributions.FloatDistribution(0.0, 0.75, step=0.25)
    assert grid_values("b", d["b"]) == [0.0, 0.25, 0.5, 0.75]
    assert d["c"] == optuna.distributions.IntDistribution(2, 8)  # an interval includes both ends
    assert d["d"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["e"] == optuna.distributions.CategoricalDistribution(["lstm", "gru"])
    assert d["g"] == optuna.distributions.IntDistribution(2, 64, log=True)
    assert d["h"] == optuna.distributions.IntDistribution(3, 5, step=2)
    assert space.fixed == ["f=3"]
    with pytest.raises(SeqlabError, match="grid sampler needs a finite set of values for d"):
        space.grid()
    assert space.trial_overrides({"a": 2, "e": "gru"}) == ["a=2", "e=gru", "f=3"]
    # A value with Hydra's special characters reaches the trial unchanged.
    for value in ("x y,z", "a=b", "(1)", 1e-05, True):
        (sampled, _) = space.trial_overrides({"e": value})
        assert OverridesParser.create().parse_overrides([sampled])[0].value() == value, sampled


def test_a_trial_job_reports_to_the_trial_the_sweeper_asked_for(tmp_path, monkeypatch):
    """The sweeper hands each job its trial through environment variables; the job's reports reach that trial."""
    storage = str(tmp_path / "study.journal")
    study = optuna.create_study(storage=open_storage(storage), study_name="s")
    asked = [study.ask() for _ in range(3)]
    for override in OverridesParser.create().parse_overrides(trial_env_overrides(storage, "s", asked[1])):
        monkeypatch.setenv(override.key_or_group.rpartition(".")[2], str(override.value()))

    trial = trial_from_env(pruner=None)
    assert trial.number == asked[1].number
    trial.report(0.25, step=0)
    assert [t.intermediate_values for t in study.get_trials()] == [{}, {0: 0.25}, {}]


@pytest.mark.slow
def test_optuna_sqlite_study_grows_by_n_trials_each_run(tmp_path):
    db = tmp_path / "study.db"
    for run in range(2):
        sweep = tmp_path / f"sweep{run}"
        result = run_cli(
            "seqlab-train",
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=1",
            f"hydra.sweeper.storage=sqlite:///{db}",
            "hydra.sweeper.study_name=resumed",
            *TINY,
            "test=false",
            f"hydra.sweep.dir={sweep}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="resumed", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # The preset's search space, less model.hidden_dim, which TINY fixes (the command line wins).
    assert set(study.trials[1].params) == {"optimizer.lr", "optimizer.weight_decay", "model.dropout"}
    assert study.trials[1].params != study.trials[0].params  # the resumed sampler does not repeat itself

    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params
    rows = (sweep / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("number,state,value,params_")
    assert (sweep / "optimization_history.png").stat().st_size > 0
    assert (sweep / "param_importances.png").stat().st_size > 0
    # Each trial's job returned the metric the study records.
    assert read_metrics(Path(results["best_job_dir"]))["val/acc"] == results["best_value"]


def test_optuna_pruning_prunes_a_trial_running_in_another_process(tmp_path):
    """A good trial, then one that cannot learn (lr=0): the median pruner stops the second after its first epoch.

    The grid seed fixes that order; joblib runs the trials in worker processes, which report
    through the study's journal file.
    """
    sweep = tmp_path / "sweep"
    result = run_cli(
        "seqlab-train",
        "-m",
        "hparams_search=optuna_pruning",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.sampler.seed=1",
        "optimizer.lr=choice(0.01,0.0)",
        "model.dropout=0.1",
        "optimizer.weight_decay=0.01",
        "model.hidden_dim=16",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "optimized_metric=val/loss",
        "hydra.sweeper.direction=minimize",
        *TINY,
        "data.batch_size=16",
        "trainer.max_epochs=2",
        "test=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="train", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna_study.journal")))
    )
    first, second = study.trials
    assert first.params["optimizer.lr"] == 0.01 and first.state == optuna.trial.TrialState.COMPLETE
    assert len(first.intermediate_values) == 2
    assert second.state == optuna.trial.TrialState.PRUNED
    assert len(second.intermediate_values) == 1  # stopped after its first validation
    assert json.loads((sweep / "1" / "job.json").read_text())["status"] == "pruned"
    assert "PRUNED" in (sweep / "trials.csv").read_text()


@pytest.mark.slow
def test_optuna_failed_trial_is_recorded_and_the_sweep_goes_on_within_max_failure_rate(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "seqlab-train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "optimizer.lr=choice(0.01,-1.0)",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0.5",
        *TINY,
        "test=false",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(
        study_name="train", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep / "optuna_study.journal")))
    )
    states = {t.params["optimizer.lr"]: t.state for t in study.trials}
    assert states == {0.01: optuna.trial.TrialState.COMPLETE, -1.0: optuna.trial.TrialState.FAIL}
    failed = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    assert "learning rate" in failed.user_attrs["error"].lower()

    # With no failure allowed, the same search stops with an error once a trial fails.
    result = run_cli(
        "seqlab-train",
        "-m",
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "optimizer.lr=choice(0.01,-1.0)",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "test=false",
        f"hydra.sweep.dir={tmp_path / 'strict'}",
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "max_failure_rate=0.0" in result.stderr
    assert (tmp_path / "strict" / "trials.csv").is_file()


def test_multi_objective_values_are_checked_against_the_directions():
    assert study_directions(["max", "minimize"], ["val/acc", "val/loss"], "val/acc", "max") == ["maximize", "minimize"]
    assert trial_values([0.9, 0.3], 2) == [0.9, 0.3]
    assert trial_values(0.5, 1) == [0.5]
    with pytest.raises(SeqlabError, match="2 objective"):
        trial_values(0.5, 2)
    with pytest.raises(SeqlabError, match="minimize or maximize"):
        study_directions("up", "val/acc", "val/acc", "max")
