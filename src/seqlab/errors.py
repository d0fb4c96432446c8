"""User-facing errors: a one-line message naming the problem and the fix, and a non-zero exit."""

import functools
import os
import sys
from collections.abc import Callable
from typing import Any


class SeqlabError(Exception):
    """A problem with the user's input or config, reported as one line without a traceback."""


def reports_errors(task_function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a SeqlabError raised by a single run into one line on stderr and exit code 1.

    Inside a multirun the error propagates, so the sweeper records the job as failed and the
    other jobs still run. HYDRA_FULL_ERROR=1 keeps the traceback.
    """

    @functools.wraps(task_function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task_function(*args, **kwargs)
        except SeqlabError as error:
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or _in_multirun():
                raise
            sys.stderr.write(f"Error: {error}\n")
            sys.stderr.flush()
            raise SystemExit(1) from None

    return wrapper


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
