"""Hydra's basic sweeper (the cartesian product of the overrides) that summarises cross-validation
and reports failed jobs in one line each.

When the sweep crosses `data.fold`, the sweep dir gets cv_summary.json/.csv and the console the
table, also when a job failed: Hydra's sweeper then raises and skips `on_multirun_end`, so the
summary is written here, on the way out, before the error ends the command with a non-zero exit.

Hydra's sweeper raises the first failed job's exception, which Hydra prints with its traceback;
jobs that failed with a SeqlabError are instead reported one line each (see seqlab.errors).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from seqlab.errors import FailedJobs, SeqlabError, reports_sweep_errors, traceback_requested
from seqlab.sweeps.cv import summarize_sweep
from seqlab.sweeps.hydra_internals import basic_sweeper, failed_job_error, wrap_launcher


class CrossValidationBasicSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        self.basic = basic_sweeper(max_batch_size=max_batch_size, params=params)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        wrap_launcher(self.basic, FailedJobsLauncher)

    @reports_sweep_errors
    def sweep(self, arguments: list[str]) -> Any:
        try:
            return self.basic.sweep(arguments)
        finally:
            summarize_sweep(Path(self.config.hydra.sweep.dir).resolve())


class FailedJobsLauncher:
    """The sweep's launcher, raising FailedJobs once every job of a batch has ended and some failed
    with a SeqlabError; other failures reach Hydra's sweeper, which raises them with their traceback."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed and not traceback_requested() and all(isinstance(failed_job_error(r), SeqlabError) for r in failed):
            raise FailedJobs(returns)
        return returns
