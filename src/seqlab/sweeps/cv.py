"""k-fold cross-validation: collect the folds' metrics.json, summarise them, write and print the summary.

Two ways to cross-validate write the same summary:
- a multirun over `data.fold` (`seqlab-train -m data.num_folds=5 'data.fold=range(5)'`): the sweeper
  summarises the sweep dir when the jobs end, from the files the jobs wrote (`metrics.json`, and
  `job.json` from `JobRecord`), so any launcher works and a failed fold is reported, not lost;
- `cv.folds=K` in one run: `train_folds` trains the folds in sequence in `fold_<k>/` of the run dir.

`seqlab-cv-summary SWEEP_DIR` re-aggregates a sweep dir, also one whose sweep was interrupted.
"""

import copy
import csv
import io
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seqlab.atomic_files import write_text_atomically
from seqlab.errors import SeqlabError
from seqlab.sweeps.job_record import JOB_RECORD
from seqlab.tags import as_tags

SUMMARY_JSON = "cv_summary.json"
SUMMARY_CSV = "cv_summary.csv"
FOLD_OVERRIDE = "data.fold"


@dataclass
class FoldJob:
    fold: int
    status: str  # completed, failed, or incomplete (no result yet: running, interrupted or killed)
    job_dir: Path
    configuration: list[str] = field(default_factory=list)  # the job's overrides other than data.fold
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    tags: list[str] = field(default_factory=list)  # the job's `tags` setting


def read_fold_job(job_dir: Path, fold: int, configuration: list[str]) -> FoldJob:
    """The outcome of one fold from its dir: metrics.json means it finished; job.json says why not."""
    job = FoldJob(fold=fold, status="incomplete", job_dir=job_dir, configuration=configuration)
    metrics_path, record_path = job_dir / "metrics.json", job_dir / JOB_RECORD
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        job.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        job.status = "completed"
    elif record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("status") != "completed":
            job.status, job.error = "failed", record.get("error")
    return job


def collect_sweep_folds(sweep_dir: Path) -> list[FoldJob]:
    """Every job of a Hydra sweep dir that trained one fold (its config sets `data.fold`)."""
    jobs = []
    for overrides_path in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        job_dir = overrides_path.parent.parent
        config = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()) or {}
        fold = (config.get("data") or {}).get("fold")
        if not isinstance(fold, int):
            continue
        overrides = [str(o) for o in yaml.safe_load(overrides_path.read_text()) or []]
        configuration = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != FOLD_OVERRIDE]
        job = read_fold_job(job_dir, fold, configuration)
        job.tags = as_tags(config.get("tags"))
        jobs.append(job)
    return jobs


def metric_stats(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (n - 1; null for one fold), min, max and count."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {
        "mean": statistics.fmean(finite),
        "std": statistics.stdev(finite) if len(finite) > 1 else None,
        "min": min(finite),
        "max": max(finite),
        "n": len(finite),
    }


def summarize_configuration(jobs: list[FoldJob], root: Path) -> dict[str, Any]:
    completed = [job for job in jobs if job.status == "completed"]
    names = sorted({name for job in completed for name in job.metrics})
    folds = []
    for job in sorted(jobs, key=lambda j: (j.fold, str(j.job_dir))):
        entry = {"fold": job.fold, "status": job.status, "job_dir": _relative(job.job_dir, root), "metrics": job.metrics}
        if job.error:
            entry["error"] = job.error
        folds.append(entry)
    return {
        "overrides": jobs[0].configuration,
        "metrics": {name: metric_stats([job.metrics[name] for job in completed if name in job.metrics]) for name in names},
        "folds": folds,
    }


def summarize(jobs: list[FoldJob], root: Path) -> dict[str, Any]:
    """The summary of fold jobs, one block per configuration (the overrides other than the fold).

    With a single configuration its `metrics` and `folds` are also at the top level.
    """
    by_configuration: dict[tuple[str, ...], list[FoldJob]] = {}
    for job in jobs:
        by_configuration.setdefault(tuple(job.configuration), []).append(job)
    blocks = [summarize_configuration(group, root) for group in by_configuration.values()]
    shared = set.intersection(*(set(block["overrides"]) for block in blocks)) if blocks else set()
    for block in blocks:
        # What tells this configuration from the others (empty when there is one).
        block["label"] = " ".join(o for o in block["overrides"] if o not in shared)
    statuses = [job.status for job in jobs]
    summary: dict[str, Any] = {
        "dir": str(root),
        "tags": list(dict.fromkeys(tag for job in jobs for tag in job.tags)),
        "num_folds": len({job.fold for job in jobs}),
        "status": "failed" if "failed" in statuses else "incomplete" if "incomplete" in statuses else "completed",
        "configurations": blocks,
    }
    if len(blocks) == 1:
        summary["metrics"], summary["folds"] = blocks[0]["metrics"], blocks[0]["folds"]
    return summary


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per configuration (its distinguishing overrides) and metric: the statistics, then each fold's value."""
    folds = sorted({entry["fold"] for block in summary["configurations"] for entry in block["folds"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["configuration", "metric", "mean", "std", "min", "max", "n", *(f"fold_{k}" for k in folds)])
    for block in summary["configurations"]:
        per_fold = {entry["fold"]: entry["metrics"] for entry in block["folds"] if entry["status"] == "completed"}
        for name, stats in block["metrics"].items():
            writer.writerow(
                [block["label"], name, *(stats[k] for k in ("mean", "std", "min", "max", "n")), *(per_fold.get(k, {}).get(name, "") for k in folds)]
            )
    return out.getvalue()


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    write_text_atomically(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out_dir / SUMMARY_CSV, summary_csv(summary))


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if value == int(value) else f"{value:.4f}"


def print_summary(summary: dict[str, Any]) -> None:
    """One Rich table per configuration: each metric's mean ± std over the folds, min, max and n."""
    # Rich when a table is printed: Hydra imports this module (with the sweeper) for every command, --help too (20 ms).
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for block in summary["configurations"]:
        title = f"cross-validation, {len(block['folds'])} folds" + (f": {block['label']}" if block["label"] else "")
        table = Table(title=title, title_justify="left")
        for column in ("metric", "mean", "± std", "min", "max", "n"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for name, stats in block["metrics"].items():
            table.add_row(name, _format(stats["mean"]), _format(stats["std"]), _format(stats["min"]), _format(stats["max"]), str(stats["n"]))
        console.print(table)
        for entry in block["folds"]:
            if entry["status"] != "completed":
                console.print(f"[red]fold {entry['fold']} {entry['status']}[/red] ({entry['job_dir']}): {entry.get('error') or 'no result'}")
    console.print(f"summary: {Path(summary['dir']) / SUMMARY_JSON}, {SUMMARY_CSV}")


def summarize_sweep(sweep_dir: Path, show: bool = True) -> dict[str, Any] | None:
    """Write cv_summary.json/.csv in a sweep dir whose jobs trained folds; None when none did."""
    jobs = collect_sweep_folds(sweep_dir)
    if not jobs:
        return None
    summary = summarize(jobs, sweep_dir)
    write_summary(sweep_dir, summary)
    if show:
        print_summary(summary)
    return summary


# -- in-process cross-validation ---------------------------------------------------------------


def _mean_objective(values: list[Any]) -> float | list[float] | None:
    if any(v is None for v in values):
        return None
    if isinstance(values[0], (list, tuple)):
        return [statistics.fmean(column) for column in zip(*values)]
    return statistics.fmean(values)


def train_folds(cfg: Any, train_run: Callable[[Any], Any]) -> float | list[float] | None:
    """Train folds 0..cv.folds-1 in sequence, each a full run in `fold_<k>/` of this run dir.

    Writes cv_summary.json/.csv in the run dir (also when a fold fails, which ends the run) and
    returns the mean over the folds of what each run returns (`optimized_metric`).
    `ckpt_path=last` resumes: finished folds are kept, an interrupted one continues from its last
    checkpoint.
    """
    from omegaconf import open_dict

    from seqlab.runs import optimized_value

    num_folds = int(cfg.cv.folds)
    if num_folds < 2:
        raise SeqlabError(f"cv.folds must be at least 2, got {num_folds}")
    if cfg.get("ckpt_path") not in (None, "last"):
        raise SeqlabError("with cv.folds, ckpt_path can only be last (resume each fold from its own last checkpoint)")
    root = Path(cfg.paths.output_dir)
    jobs = [FoldJob(fold=k, status="incomplete", job_dir=root / f"fold_{k}", tags=as_tags(cfg.get("tags"))) for k in range(num_folds)]
    values, trained_folds = [], 0
    try:
        for job in jobs:
            fold_cfg = copy.deepcopy(cfg)
            with open_dict(fold_cfg):
                fold_cfg.cv.folds = None
                fold_cfg.data.num_folds = num_folds
                fold_cfg.data.fold = job.fold
                fold_cfg.paths.output_dir = str(job.job_dir)
                # Every fold trains the same architecture: its summary table once per run (each fold still
                # logs its parameter count, which its vocabulary changes).
                if trained_folds and (fold_cfg.get("callbacks") or {}).get("model_summary") is not None:
                    fold_cfg.callbacks.model_summary = None
                if cfg.get("ckpt_path") == "last":
                    fold_cfg.ckpt_path = "last" if (job.job_dir / "checkpoints" / "last.ckpt").is_file() else None
            job.job_dir.mkdir(parents=True, exist_ok=True)
            finished = read_fold_job(job.job_dir, job.fold, [])
            if cfg.get("ckpt_path") == "last" and finished.status == "completed":
                values.append(optimized_value(fold_cfg, finished.metrics))
            else:
                trained_folds += 1
                try:
                    values.append(train_run(fold_cfg))
                except Exception as error:
                    job.status, job.error = "failed", f"{type(error).__name__}: {error}"
                    raise
                finished = read_fold_job(job.job_dir, job.fold, [])
            job.status, job.metrics = finished.status, finished.metrics
    finally:
        summary = summarize(jobs, root)
        write_summary(root, summary)
        print_summary(summary)
    return _mean_objective(values)


# -- seqlab-cv-summary ---------------------------------------------------------------------


def folds_without_result(summary: dict[str, Any]) -> list[str]:
    """Each fold of the summary's configurations that has no result: failed, incomplete, or missing (a
    fold below the jobs' `data.num_folds` with no job dir, as a sweep stopped before it leaves)."""
    root = Path(summary["dir"])
    unfinished = []
    for block in summary["configurations"]:
        where = f"{block['label']}: " if block["label"] else ""
        status = {entry["fold"]: entry["status"] for entry in block["folds"]}
        config = yaml.safe_load((root / block["folds"][0]["job_dir"] / ".hydra" / "config.yaml").read_text()) or {}
        num_folds = (config.get("data") or {}).get("num_folds")
        expected = set(range(num_folds)) if isinstance(num_folds, int) else set()
        for fold in sorted(expected | set(status)):
            reason = {"failed": "failed", "incomplete": "incomplete (no result)", None: "missing (no job dir)"}.get(status.get(fold))
            if reason:
                unfinished.append(f"{where}fold {fold} {reason}")
    return unfinished
