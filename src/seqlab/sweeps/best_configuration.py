"""The best configuration of a finished sweep, as the overrides that train it again: what
`seqlab-train from_sweep=DIR` reads.

Three kinds of dir hold one:
- an Optuna sweep dir: `optimization_results.yaml` names the best trial's job dir;
- a cross-validation multirun (one job per `data.fold`, crossed or not with other overrides): the
  `best_configuration` of its summary, the configuration whose folds have the best mean of `optimized_metric`;
- the run dir of an in-process cross-validation (`cv.folds=K`): the run's own configuration.

The overrides are a job's whole command line as Hydra recorded it (`.hydra/overrides.yaml`: the
sweep's fixed overrides and the trial's values), less what made the job one part of a sweep: its fold
(`data.fold`, `data.num_folds`, `cv.*`) and the sweep's machinery (`hydra.*`, and the `hparams_search`
and `crossval` presets, which configure the sweeper; the values they searched are in the overrides).
"""

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from seqlab.errors import SeqlabError
from seqlab.sweeps.cv import SUMMARY_JSON, collect_sweep_folds, summarize
from seqlab.sweeps.objective import rerun_overrides
from seqlab.sweeps.optuna_study import RESULTS_YAML


@dataclass
class BestConfiguration:
    sweep_dir: Path
    overrides: list[str]  # the overrides that train it again, sweep-only keys left out
    searched: list[str]  # what the sweep chose, as overrides (for the log)
    chosen_by: str  # how it was chosen, in words


def read_best_configuration(sweep_dir: str | Path) -> BestConfiguration:
    """The best configuration of an Optuna sweep dir, a cross-validation sweep dir or an in-process CV run dir."""
    sweep_dir = Path(sweep_dir).resolve()
    if not sweep_dir.is_dir():
        raise SeqlabError(f"from_sweep={sweep_dir} does not exist; pass the dir a sweep wrote (outputs/train-multirun/<date>/<time>)")
    if (sweep_dir / RESULTS_YAML).is_file():
        return _best_optuna_trial(sweep_dir)
    if (sweep_dir / ".hydra" / "overrides.yaml").is_file() and (sweep_dir / SUMMARY_JSON).is_file():
        return _in_process_cross_validation(sweep_dir)
    return _best_cross_validated_configuration(sweep_dir)


def _read_overrides(job_dir: Path) -> list[str]:
    return [str(o) for o in yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []]


def _best_optuna_trial(sweep_dir: Path) -> BestConfiguration:
    results = yaml.safe_load((sweep_dir / RESULTS_YAML).read_text()) or {}
    if "solutions" in results:
        raise SeqlabError(
            f"from_sweep={sweep_dir}: a multi-objective study has no single best trial; retrain one of its solutions "
            f"(their job dirs are in {RESULTS_YAML}) with seqlab-train and that job's .hydra/overrides.yaml"
        )
    if not results.get("best_job_dir"):
        raise SeqlabError(f"from_sweep={sweep_dir}: the Optuna study has no completed trial (trials: {results.get('trials') or {}}); nothing to retrain")
    job_dir = Path(results["best_job_dir"])
    if not job_dir.is_dir():  # the sweep dir was moved: the trial's job dir moved with it
        job_dir = sweep_dir / job_dir.name
    if not (job_dir / ".hydra" / "overrides.yaml").is_file():
        raise SeqlabError(f"from_sweep={sweep_dir}: the best trial's job dir {results['best_job_dir']} (or {job_dir}) has no .hydra/overrides.yaml")
    searched = [f"{name}={value}" for name, value in (results.get("best_params") or {}).items()]
    return BestConfiguration(
        sweep_dir=sweep_dir,
        overrides=rerun_overrides(_read_overrides(job_dir)),
        searched=searched,
        chosen_by=f"Optuna trial {results.get('best_trial')}, value {results.get('best_value')}",
    )


def _in_process_cross_validation(run_dir: Path) -> BestConfiguration:
    summary = json.loads((run_dir / SUMMARY_JSON).read_text())
    completed = [entry for entry in summary.get("folds", []) if entry["status"] == "completed"]
    if not completed:
        raise SeqlabError(f"from_sweep={run_dir}: no fold of this cross-validation run completed; nothing to retrain")
    overrides = rerun_overrides(_read_overrides(run_dir))
    return BestConfiguration(sweep_dir=run_dir, overrides=overrides, searched=overrides, chosen_by=f"cross-validated over {len(completed)} folds")


def _best_cross_validated_configuration(sweep_dir: Path) -> BestConfiguration:
    # Summarised from the fold jobs' own files, as cv_summary.json is: also a sweep interrupted before it wrote one.
    # Hydra's multirun.yaml marks the dir as the sweep's own, not a folder that holds sweeps among other things.
    is_sweep = (sweep_dir / "multirun.yaml").is_file() or (sweep_dir / SUMMARY_JSON).is_file()
    jobs = collect_sweep_folds(sweep_dir) if is_sweep else []
    if not jobs:
        raise SeqlabError(
            f"from_sweep={sweep_dir} is not a sweep dir: no {RESULTS_YAML} (Optuna), no {SUMMARY_JSON} and no fold jobs (cross-validation); "
            "pass the dir that seqlab-train -m wrote, or the run dir of a cv.folds=K run"
        )
    best = summarize(jobs, sweep_dir).get("best_configuration")
    if best is None:
        raise SeqlabError(
            f"from_sweep={sweep_dir}: no configuration has every fold completed with a mean of optimized_metric={jobs[0].optimized_metric} "
            "(one metric, better higher or lower as seqlab knows it); nothing to retrain"
        )
    return BestConfiguration(
        sweep_dir=sweep_dir,
        overrides=best["overrides"],
        searched=best["label"].split(),
        chosen_by=f"the best mean {best['metric']} over its folds, {best['mean']:.4f}",
    )
