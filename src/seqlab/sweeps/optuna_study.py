"""The Optuna side of seqlab's sweeper: storages, the study, how a job's outcome becomes a trial's state, reports.

A study lives in a storage every trial's process can reach: a database URL (`sqlite:///study.db`),
a journal file (any other value: a path; safe for many processes on a shared filesystem), or, when
none is given, a journal file in the sweep dir. Jobs find their trial through environment variables
the sweeper sets for them (`hydra.job.env_set`), so pruning works whichever launcher runs them.
"""

import csv
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.visualization import matplotlib as optuna_plots

from seqlab.errors import SeqlabError
from seqlab.sweeps.objective import command_line, rerun_overrides
from seqlab.sweeps.search_space import override_value
from seqlab.tags import as_tags

log = logging.getLogger(__name__)

ENV_STORAGE = "SEQLAB_OPTUNA_STORAGE"
ENV_STUDY = "SEQLAB_OPTUNA_STUDY"
ENV_TRIAL_NUMBER = "SEQLAB_OPTUNA_TRIAL_NUMBER"
DEFAULT_JOURNAL = "optuna_study.journal"
RESULTS_YAML = "optimization_results.yaml"
TRIALS_CSV = "trials.csv"


def resolve_storage(storage: str | None, sweep_dir: Path) -> str:
    """An absolute storage spec, the same in every process whatever its working directory."""
    if not storage:
        return str((sweep_dir / DEFAULT_JOURNAL).resolve())
    if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(storage[len("sqlite:///") :]).resolve())
    if "://" in storage:
        return storage
    return str(Path(storage).resolve())


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    Path(spec).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(spec))


def trial_from_env(pruner: optuna.pruners.BasePruner | None) -> optuna.trial.Trial | None:
    """This job's trial, when an Optuna sweep launched it; None in any other run."""
    number = os.environ.get(ENV_TRIAL_NUMBER)
    if number is None:
        return None
    storage = open_storage(os.environ[ENV_STORAGE])
    study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), int(number))
    # As Study.ask builds it: the trial the sweeper asked for, reopened in this job's process.
    return optuna.trial.Trial(study, trial_id)


def trial_env_overrides(storage: str, study_name: str, trial: optuna.trial.Trial) -> list[str]:
    """The overrides that give a trial's job the environment `trial_from_env` reads."""
    env = {ENV_STORAGE: storage, ENV_STUDY: study_name, ENV_TRIAL_NUMBER: str(trial.number)}
    return [f"++hydra.job.env_set.{key}='{value}'" for key, value in env.items()]


def trial_values(return_value: Any, n_objectives: int) -> list[float]:
    """The objective values a job returned, checked against the study's directions."""
    values = list(return_value) if isinstance(return_value, (list, tuple)) or OmegaConf.is_list(return_value) else [return_value]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise SeqlabError(f"a trial must return {n_objectives} number(s) (optimized_metric), got {return_value!r}") from None
    if len(values) != n_objectives:
        raise SeqlabError(
            f"the study has {n_objectives} objective(s) but the trial returned {len(values)}: set optimized_metric to as many metrics as hydra.sweeper.direction has entries"
        )
    if not all(math.isfinite(v) for v in values):
        raise SeqlabError(f"the trial returned {values}")
    return values


# -- reports ---------------------------------------------------------------------------------


def write_reports(study: optuna.Study, out_dir: Path, storage: str) -> None:
    """Best parameters and value (YAML), every trial (CSV), and plots of the search (PNG).

    The YAML also names the sweep's `optimized_metric` (what the values are) and `tags`, from the
    sweep's config that Hydra keeps in multirun.yaml, and the best trial's overrides (`best_overrides`,
    less data.fold, data.num_folds and hydra.*) and as one command-line fragment
    (`best_command_line`), to train that configuration again.
    """
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    config = sweep_config(out_dir)
    results: dict[str, Any] = {
        "name": "optuna",
        "study_name": study.study_name,
        "storage": storage,
        "optimized_metric": config.get("optimized_metric"),
        "directions": [d.name.lower() for d in study.directions],
        "trials": states,
        "tags": as_tags(config.get("tags")),
    }
    if completed and len(study.directions) == 1:
        best = study.best_trial
        overrides = rerun_overrides(trial_overrides(best))
        results.update(
            best_params=best.params,
            best_value=best.value,
            best_trial=best.number,
            best_job_dir=best.user_attrs.get("job_dir"),
            best_overrides=overrides,
            best_command_line=command_line(overrides),
        )
    elif completed:
        results["solutions"] = [{"trial": t.number, "params": t.params, "values": t.values, "job_dir": t.user_attrs.get("job_dir")} for t in study.best_trials]
    OmegaConf.save(OmegaConf.create(results), out_dir / RESULTS_YAML)
    _write_trials_csv(trials, len(study.directions), out_dir / TRIALS_CSV)
    _plot(study, out_dir, len(completed))


def trial_overrides(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The overrides a trial's job ran with; its sampled parameters alone for a trial of an older seqlab's study."""
    return trial.user_attrs.get("overrides") or [f"{name}={override_value(value)}" for name, value in trial.params.items()]


def sweep_config(sweep_dir: Path) -> DictConfig:
    """The sweep's config as Hydra keeps it in multirun.yaml; empty when there is none."""
    config_path = sweep_dir / "multirun.yaml"
    return OmegaConf.load(config_path) if config_path.is_file() else OmegaConf.create()


def _write_trials_csv(trials: list[optuna.trial.FrozenTrial], n_objectives: int, path: Path) -> None:
    param_names = sorted({name for t in trials for name in t.params})
    value_columns = ["value"] if n_objectives == 1 else [f"value_{i}" for i in range(n_objectives)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["number", "state", *value_columns, *(f"params_{n}" for n in param_names), "duration_s", "datetime_start", "job_dir", "error"])
        for t in trials:
            values = t.values or [None] * n_objectives
            duration = t.duration.total_seconds() if t.duration else None
            writer.writerow(
                [
                    t.number,
                    t.state.name,
                    *values,
                    *(t.params.get(n) for n in param_names),
                    duration,
                    t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                    t.user_attrs.get("job_dir"),
                    t.user_attrs.get("error"),
                ]
            )


def _plot(study: optuna.Study, out_dir: Path, n_completed: int) -> None:
    """Optimisation history and parameter importances; a plot the study cannot support yet is skipped."""
    plt.switch_backend("agg")  # files only, whatever display the machine has
    multi = len(study.directions) > 1
    plots = {
        "optimization_history.png": lambda: optuna_plots.plot_optimization_history(
            study, **({"target": lambda t: t.values[0], "target_name": "objective 0"} if multi else {})
        ),
        "param_importances.png": lambda: optuna_plots.plot_param_importances(
            study, **({"target": lambda t: t.values[0], "target_name": "objective 0"} if multi else {})
        ),
    }
    if multi:
        plots["pareto_front.png"] = lambda: optuna_plots.plot_pareto_front(study)
    for name, plot in plots.items():
        if name == "param_importances.png" and n_completed < 2:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = plot()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.tight_layout()
            figure.savefig(out_dir / name, dpi=120)
            plt.close(figure)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            log.warning("%s not drawn: %s", name, error)
