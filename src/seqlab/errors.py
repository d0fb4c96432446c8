"""User-facing errors: a one-line message naming the problem and the fix, and a non-zero exit.

Besides seqlab's own `SeqlabError`, two mistakes in a config reach seqlab as library exceptions:
a setting left at `???` (OmegaConf's MissingMandatoryValue) and a constructor refusing its
arguments (Hydra's InstantiationException around Lightning's or torch's ValueError). Both become
one line naming the config key. HYDRA_FULL_ERROR=1 keeps the traceback of any of them.
"""

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn


class SeqlabError(Exception):
    """A problem with the user's input or config, reported as one line without a traceback."""


class FailedJobs(Exception):
    """Jobs of a multirun that failed with a SeqlabError (`returns`: the JobReturns of their batch)."""

    def __init__(self, returns: Sequence[Any]) -> None:
        super().__init__("jobs of the multirun failed")
        self.returns = returns


def traceback_requested() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with_errors(messages: Sequence[str]) -> NoReturn:
    for message in messages:
        sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def as_seqlab_error(error: Exception, cfg: Any = None) -> SeqlabError | None:
    """The one-line form of a mistake in the config (see the module docstring); None for anything else,
    which keeps its traceback. `cfg` lets a constructor's error name the setting it refused."""
    # Hydra and OmegaConf only once there is an error: data and model modules import SeqlabError without them.
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, InstantiationException) and isinstance(error.__cause__, (SeqlabError, MissingMandatoryValue)):
        error = error.__cause__
    if isinstance(error, SeqlabError):
        return error
    if isinstance(error, MissingMandatoryValue):
        key = error.full_key
        return SeqlabError(f"{key} is mandatory: pass {key}={_placeholder(key)}")
    if isinstance(error, InstantiationException) and _refused_arguments(error.__cause__):
        full_key = re.search(r"\nfull_key: (\S+)$", str(error))
        group = full_key.group(1) if full_key else "config"
        cause = str(error.__cause__).strip().splitlines()[0]
        return SeqlabError(f"{_setting_named(cfg, group, cause)}: {cause}")
    return None


def _placeholder(key: str) -> str:
    name = key.rpartition(".")[2]
    if name.endswith("files"):
        return "[<path>,...]"
    return "<path>" if name.endswith(("file", "path", "dir")) else "<value>"


def _refused_arguments(cause: BaseException | None) -> bool:
    """A constructor's refusal of its arguments, as torch, torchmetrics and Lightning raise it."""
    if isinstance(cause, (ValueError, TypeError)):
        return True
    return type(cause).__name__ == "MisconfigurationException"  # Lightning's; importing it here would import Lightning


def _setting_named(cfg: Any, group: str, message: str) -> str:
    """`group.key` when the message names exactly one key of the config group, else the group."""
    from omegaconf import DictConfig, OmegaConf  # only once there is an error, as in as_seqlab_error

    node = OmegaConf.select(cfg, group, default=None) if isinstance(cfg, DictConfig) else None
    if not isinstance(node, DictConfig):
        return group
    named = [key for key in node if re.search(rf"\b{re.escape(str(key))}\b", message)]
    return f"{group}.{named[0]}" if len(named) == 1 else group


def reports_errors(task_function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a mistake made by a single run into one line on stderr and exit code 1.

    Inside a multirun the error propagates as a SeqlabError, so the sweeper records the job as
    failed, the other jobs still run, and seqlab's sweepers report it in one line.
    """

    @functools.wraps(task_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task_function(*args, **kwargs)
        except Exception as error:
            seqlab_error = as_seqlab_error(error, args[0] if args else None)
            if seqlab_error is None or traceback_requested():
                raise
            if _in_multirun():
                if seqlab_error is error:
                    raise
                raise seqlab_error from error
            exit_with_errors([str(seqlab_error)])

    return wrapper


def reports_sweep_errors(sweep: Callable[..., Any]) -> Callable[..., Any]:
    """For a sweeper's `sweep`: jobs that failed with a SeqlabError, or the sweeper's own SeqlabError,
    end the command with one line each and exit code 1, instead of Hydra's traceback."""

    @functools.wraps(sweep)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return sweep(*args, **kwargs)
        except FailedJobs as failed:
            exit_with_errors(failed_job_lines(failed.returns))
        except SeqlabError as error:
            if traceback_requested():
                raise
            exit_with_errors([str(error)])

    return wrapper


def failed_job_lines(returns: Sequence[Any]) -> list[str]:
    """One line per failed job of a batch, naming it by the overrides that set it apart from the others."""
    # Hydra only once a job failed, as in as_seqlab_error.
    from hydra.core.utils import JobStatus

    from seqlab.sweeps.hydra_internals import failed_job_error

    shared = set.intersection(*(set(r.overrides or ()) for r in returns)) if len(returns) > 1 else set()
    lines = []
    for index, job in enumerate(returns):
        if job.status != JobStatus.FAILED:
            continue
        number = job.hydra_cfg.hydra.job.num if job.hydra_cfg is not None else index
        label = " ".join(o for o in job.overrides or () if o not in shared) or " ".join(job.overrides or ())
        lines.append(f"job {number} ({label}) failed: {failed_job_error(job)}")
    return lines


def _in_multirun() -> bool:
    # Hydra only once there is an error, as in as_seqlab_error.
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
