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
import fnmatch
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
from seqlab.sweeps.objective import command_line, known_direction, rerun_overrides
from seqlab.tags import as_tags

SUMMARY_JSON = "cv_summary.json"
SUMMARY_CSV = "cv_summary.csv"
FOLD_OVERRIDE = "data.fold"
# Values of metrics.json that say how a fold ran, not how well: summarised apart (`bookkeeping`), by range only.
BOOKKEEPING = ("data/*_size", "epoch", "global_step", "step", "lr-*", "*/lr*")
# Student's t quantile t(0.975, df) for df = 1..29, for the 95% interval of a mean of up to 30 folds when
# scipy is not installed; more folds use the normal quantile 1.96.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045)  # fmt: skip


@dataclass
class FoldJob:
    fold: int
    status: str  # completed, failed, or incomplete (no result yet: running, interrupted or killed)
    job_dir: Path
    configuration: list[str] = field(default_factory=list)  # the job's overrides other than data.fold
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    tags: list[str] = field(default_factory=list)  # the job's `tags` setting
    # The job's settings that say which metric its configuration is judged by, and which way is better.
    optimized_metric: Any = None
    monitor: str | None = None
    monitor_mode: str | None = None
    headline_metric: str | None = None  # under cv.protocol=test, the test metric the summary leads with


def headline_metric(config: Any) -> str | None:
    """Under cross-validation for evaluation (`data.fold_split=test`, which cv.protocol=test sets), the
    metric the summary leads with: the test metric that matches the monitored one (val/acc: test/acc)."""
    if (config.get("data") or {}).get("fold_split") != "test":
        return None
    return "test/" + str(config.get("monitor") or "val/acc").split("/", 1)[-1]


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
        job.optimized_metric, job.monitor, job.monitor_mode = (config.get(key) for key in ("optimized_metric", "monitor", "monitor_mode"))
        job.headline_metric = headline_metric(config)
        jobs.append(job)
    return jobs


def is_bookkeeping(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in BOOKKEEPING)


def t_quantile_975(df: int) -> float:
    """Student's t(0.975, df): scipy's when installed, else the table up to 29 degrees of freedom, then 1.96."""
    try:
        from scipy.stats import t
    except ImportError:
        return T975[df - 1] if df <= len(T975) else 1.96
    return float(t.ppf(0.975, df))


def metric_stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1; null for one fold), the mean's 95% confidence interval
    (Student's t; null for one fold), min, max and count."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None, "ci95": None, "min": None, "max": None, "n": 0}
    mean, n = statistics.fmean(finite), len(finite)
    std = statistics.stdev(finite) if n > 1 else None
    half_width = t_quantile_975(n - 1) * std / math.sqrt(n) if std is not None else None
    return {
        "mean": mean,
        "std": std,
        "ci95": [mean - half_width, mean + half_width] if half_width is not None else None,
        "min": min(finite),
        "max": max(finite),
        "n": n,
    }


def bookkeeping_stats(values: list[float]) -> dict[str, Any]:
    """The range of a bookkeeping value over the folds, and its count."""
    finite = [v for v in values if math.isfinite(v)]
    return {"min": min(finite, default=None), "max": max(finite, default=None), "n": len(finite)}


def summarize_configuration(jobs: list[FoldJob], root: Path) -> dict[str, Any]:
    completed = [job for job in jobs if job.status == "completed"]
    names = sorted({name for job in completed for name in job.metrics})
    folds = []
    for job in sorted(jobs, key=lambda j: (j.fold, str(j.job_dir))):
        entry = {"fold": job.fold, "status": job.status, "job_dir": _relative(job.job_dir, root), "metrics": job.metrics}
        if job.error:
            entry["error"] = job.error
        folds.append(entry)
    values = {name: [job.metrics[name] for job in completed if name in job.metrics] for name in names}
    return {
        "overrides": jobs[0].configuration,
        "metrics": {name: metric_stats(values[name]) for name in names if not is_bookkeeping(name)},
        "bookkeeping": {name: bookkeeping_stats(values[name]) for name in names if is_bookkeeping(name)},
        "folds": folds,
    }


def best_configuration(blocks: list[dict[str, Any]], jobs: list[FoldJob]) -> dict[str, Any] | None:
    """The configuration whose mean `optimized_metric` is best, among those whose every fold completed.

    None when the jobs name no optimized_metric (the folds of one in-process run), a list of metrics, or
    one that is better neither higher nor lower as far as seqlab knows, or when no configuration has a
    mean of it.
    """
    metric, monitor, monitor_mode = jobs[0].optimized_metric, jobs[0].monitor, jobs[0].monitor_mode
    direction = known_direction(metric, monitor, monitor_mode) if isinstance(metric, str) else None
    scored = [
        block
        for block in blocks
        if all(entry["status"] == "completed" for entry in block["folds"]) and (block["metrics"].get(metric) or {}).get("mean") is not None
    ]
    if direction is None or not scored:
        return None
    pick = max if direction == "maximize" else min
    best = pick(scored, key=lambda block: block["metrics"][metric]["mean"])
    overrides = rerun_overrides(best["overrides"])
    return {
        "overrides": overrides,
        "command_line": command_line(overrides),
        "label": best["label"],
        "metric": metric,
        "direction": direction,
        "mean": best["metrics"][metric]["mean"],
    }


def summarize(jobs: list[FoldJob], root: Path) -> dict[str, Any]:
    """The summary of fold jobs, one block per configuration (the overrides other than the fold).

    With a single configuration its `metrics` and `folds` are also at the top level.
    """
    by_configuration: dict[tuple[str, ...], list[FoldJob]] = {}
    for job in jobs:
        by_configuration.setdefault(tuple(job.configuration), []).append(job)
    blocks = [summarize_configuration(group, root) for group in by_configuration.values()]
    for block, group in zip(blocks, by_configuration.values()):
        add_headline(block, next((job.headline_metric for job in group if job.headline_metric), None))
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
    if jobs and (best := best_configuration(blocks, jobs)):
        summary["best_configuration"] = best
    if len(blocks) == 1:
        summary["metrics"], summary["bookkeeping"], summary["folds"] = blocks[0]["metrics"], blocks[0]["bookkeeping"], blocks[0]["folds"]
        if "headline" in blocks[0]:
            summary["headline"] = blocks[0]["headline"]
    return summary


def add_headline(block: dict[str, Any], metric: str | None) -> None:
    """`headline`: the mean of `metric` over the configuration's folds, with its std, 95% interval and n."""
    if metric is None:
        return
    stats = block["metrics"].get(metric) or metric_stats([])
    block["headline"] = {"metric": metric, **{key: stats[key] for key in ("mean", "std", "ci95", "n")}}


def headline_line(headline: dict[str, Any]) -> str:
    """The headline as the console shows it: `test/acc 0.8123 ± 0.0150 (95% CI 0.7750 – 0.8496), 5 folds`."""
    interval = "" if headline["ci95"] is None else f" (95% CI {_format(headline['ci95'][0])} – {_format(headline['ci95'][1])})"
    return f"{headline['metric']} {_format(headline['mean'])} ± {_format(headline['std'])}{interval}, {headline['n']} folds"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def summary_csv(summary: dict[str, Any]) -> str:
    """One row per configuration (its distinguishing overrides), block (`metrics` or `bookkeeping`) and
    value: the statistics (a bookkeeping value's range only), then each fold's value."""
    folds = sorted({entry["fold"] for block in summary["configurations"] for entry in block["folds"]})
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ("mean", "std", "ci95_low", "ci95_high", "min", "max", "n")
    writer.writerow(["configuration", "block", "metric", *columns, *(f"fold_{k}" for k in folds)])
    for block in summary["configurations"]:
        per_fold = {entry["fold"]: entry["metrics"] for entry in block["folds"] if entry["status"] == "completed"}
        for kind in ("metrics", "bookkeeping"):
            for name, stats in block[kind].items():
                low, high = stats.get("ci95") or (None, None)
                row = {**stats, "ci95_low": low, "ci95_high": high}
                writer.writerow([block["label"], kind, name, *(row.get(k, "") for k in columns), *(per_fold.get(k, {}).get(name, "") for k in folds)])
    return out.getvalue()


def write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    write_text_atomically(out_dir / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    write_text_atomically(out_dir / SUMMARY_CSV, summary_csv(summary))


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return str(int(value)) if value == int(value) else f"{value:.4f}"


def print_summary(summary: dict[str, Any]) -> None:
    """One Rich table per configuration: each metric's mean ± std over the folds, its 95% interval, min,
    max and n, then the bookkeeping values' ranges; last the best configuration."""
    # Rich when a table is printed: Hydra imports this module (with the sweeper) for every command, --help too (20 ms).
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for block in summary["configurations"]:
        if "headline" in block:
            where = f" ({block['label']})" if block["label"] else ""
            console.print(f"headline{where}: {headline_line(block['headline'])}", style="bold", highlight=False)
        title = f"cross-validation, {len(block['folds'])} folds" + (f": {block['label']}" if block["label"] else "")
        table = Table(title=title, title_justify="left")
        for column in ("metric", "mean", "± std", "95% CI", "min", "max", "n"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for name, stats in block["metrics"].items():
            interval = "-" if stats["ci95"] is None else f"{_format(stats['ci95'][0])} – {_format(stats['ci95'][1])}"
            table.add_row(name, _format(stats["mean"]), _format(stats["std"]), interval, _format(stats["min"]), _format(stats["max"]), str(stats["n"]))
        console.print(table)
        if block["bookkeeping"]:
            ranges = [
                f"{name} {_format(stats['min'])}" + (f"–{_format(stats['max'])}" if stats["max"] != stats["min"] else "")
                for name, stats in block["bookkeeping"].items()
            ]
            console.print("bookkeeping: " + ", ".join(ranges), highlight=False, soft_wrap=True)
        for entry in block["folds"]:
            if entry["status"] != "completed":
                console.print(f"[red]fold {entry['fold']} {entry['status']}[/red] ({entry['job_dir']}): {entry.get('error') or 'no result'}")
    best = summary.get("best_configuration")
    if best and len(summary["configurations"]) > 1:
        console.print(f"best configuration: {best['label']} (mean {best['metric']} {_format(best['mean'])}, {best['direction']})", highlight=False)
        console.print(f"  train it again: seqlab-train {best['command_line']}", highlight=False, soft_wrap=True)
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
    # The folds share this run's one configuration: no optimized_metric to pick a best one by.
    jobs = [
        FoldJob(fold=k, status="incomplete", job_dir=root / f"fold_{k}", tags=as_tags(cfg.get("tags")), headline_metric=headline_metric(cfg))
        for k in range(num_folds)
    ]
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
