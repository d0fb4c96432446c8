"""Fold ensembles: the trained folds of a cross-validation, used together as one classifier.

`ckpt_path=` of seqlab-eval, -predict and -export names an ensemble in one of three ways:
- a multirun sweep dir whose jobs set `data.fold` (`seqlab-train -m data.num_folds=5 'data.fold=range(5)'`);
- a run dir of in-process cross-validation (`seqlab-train cv.folds=5`), which holds `fold_<k>/`;
- a list of checkpoints or run dirs (`ckpt_path='[a/checkpoints/best.ckpt,b]'`).

Each fold's checkpoint is the one its `metrics.json` names (the best), else its `checkpoints/last.ckpt`.
A fold that failed or did not finish is refused, naming it, unless `ensemble.allow_missing=true`:
then the ensemble is the finished folds, and a warning names the others.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from seqlab.errors import SeqlabError
from seqlab.runs.files import run_checkpoint
from seqlab.sweeps.cv import FoldJob, collect_sweep_folds, read_fold_job

log = logging.getLogger(__name__)

FOLD_DIR = re.compile(r"fold_(\d+)")
# How commands name the ensemble in their errors about its members' kind.
ENSEMBLE_USE = "a fold ensemble (which averages class probabilities: classifiers only)"


@dataclass(frozen=True)
class EnsembleMember:
    name: str  # fold_<k> for a sweep's fold, else the checkpoint or run dir as given
    ckpt_path: str


def ensemble_members(ckpt_path: Any, allow_missing: bool = False) -> list[EnsembleMember] | None:
    """The members named by a `ckpt_path` setting; None when it names one checkpoint file, one run's dir or `last`."""
    if isinstance(ckpt_path, (list, tuple, ListConfig)):
        if not ckpt_path:
            raise SeqlabError("ckpt_path=[] names no checkpoint: list the members' checkpoints or run dirs")
        return [EnsembleMember(str(entry), run_checkpoint(Path(str(entry)))) for entry in ckpt_path]
    if ckpt_path is None or not Path(str(ckpt_path)).is_dir():
        return None
    sweep_dir = Path(str(ckpt_path))
    if (sweep_dir / "checkpoints").is_dir():  # one run's dir: its best checkpoint, not an ensemble
        return None
    jobs = fold_jobs(sweep_dir)
    finished = [job for job in jobs if job.status == "completed"]
    unfinished = [f"fold {job.fold} {job.status} ({job.job_dir}{': ' + job.error if job.error else ''})" for job in jobs if job.status != "completed"]
    if not finished:
        raise SeqlabError(f"sweep dir {sweep_dir} has no finished fold ({'; '.join(unfinished)}): an ensemble needs at least one fold's metrics.json")
    if unfinished and not allow_missing:
        raise SeqlabError(
            f"sweep dir {sweep_dir}: {'; '.join(unfinished)}; finish those folds, or add ensemble.allow_missing=true to use the other {len(finished)}"
        )
    if unfinished:
        log.warning("fold ensemble of %d folds without %s", len(finished), "; ".join(unfinished))
    return [EnsembleMember(f"fold_{job.fold}", run_checkpoint(job.job_dir)) for job in finished]


def fold_jobs(sweep_dir: Path) -> list[FoldJob]:
    """The folds of an in-process CV run dir (fold_<k>/) or of a multirun sweep dir, in fold order."""
    fold_dirs = [(int(match.group(1)), path) for path in sweep_dir.iterdir() if path.is_dir() and (match := FOLD_DIR.fullmatch(path.name))]
    if fold_dirs:
        return [read_fold_job(path, fold, []) for fold, path in sorted(fold_dirs)]
    jobs = collect_sweep_folds(sweep_dir)
    if not jobs:
        raise SeqlabError(
            f"ckpt_path={sweep_dir} is neither a run dir (no checkpoints/) nor a sweep dir with folds (fold_<k>/ dirs, or multirun jobs that set data.fold): "
            "pass a checkpoint file, a run dir, a cross-validation sweep dir, or a list of checkpoints"
        )
    configurations = sorted({" ".join(job.configuration) for job in jobs})
    if len(configurations) > 1:
        raise SeqlabError(
            f"sweep dir {sweep_dir} holds the folds of {len(configurations)} configurations ({' | '.join(configurations)}): "
            "pass one configuration's checkpoints as a list, ckpt_path='[a.ckpt,b.ckpt]'"
        )
    return sorted(jobs, key=lambda job: job.fold)
