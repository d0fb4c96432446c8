"""A Hydra callback that leaves `job.json` in every multirun job dir: how the job ended, and why.

It runs where the job runs (the main process, a joblib worker or a SLURM node), so whoever
summarises a sweep reads the outcome of every job from files, whichever launcher ran them.
"""

import json
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from seqlab.atomic_files import write_text_atomically
from seqlab.launch.ranks import process_rank
from seqlab.sweeps.hydra_internals import failed_job_error
from seqlab.tags import as_tags

JOB_RECORD = "job.json"


def job_outcome(job_return: JobReturn) -> dict[str, Any]:
    """`status` completed, failed or pruned; `error` (one line) and `traceback` for the others."""
    if job_return.status == JobStatus.COMPLETED:
        value = job_return.return_value
        return {"status": "completed", "return_value": value if isinstance(value, (int, float, list, type(None))) else str(value)}
    error = failed_job_error(job_return)
    status = "pruned" if type(error).__name__ == "TrialPruned" else "failed"
    return {
        "status": status,
        "error": f"{type(error).__name__}: {error}",
        "traceback": "".join(traceback.format_exception(error)) if isinstance(error, BaseException) else None,
    }


class JobRecord(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # Under submitit every rank of a job runs this; one writer per job dir.
        if config.hydra.mode != RunMode.MULTIRUN or process_rank() != 0:
            return
        record = {**job_outcome(job_return), "overrides": list(job_return.overrides or []), "tags": as_tags(config.get("tags"))}
        if config.get("from_sweep"):  # seqlab-train -m from_sweep=DIR: the sweep whose best configuration the job trains
            record["from_sweep"] = config.from_sweep
        write_text_atomically(Path(config.hydra.runtime.output_dir) / JOB_RECORD, json.dumps(record, indent=2) + "\n")
