"""What seqlab's sweeps take from Hydra that Hydra does not publish, each used only through here.

tests/test_upstream_apis.py checks the first two, and tests/test_from_sweep.py the third, so a Hydra
release that changes one fails there, by name.

- Hydra's basic sweeper (the cartesian product of the overrides, launched in batches) is published
  only as the config `hydra/sweeper=basic`; its class lives under `hydra._internal`. seqlab's
  cross-validation sweeper runs it, built from that config, and wraps the launcher it sets up.
- A failed job's exception: the public `JobReturn.return_value` raises it, after writing "Error
  executing job with overrides ..." to stderr (Hydra #1465, which made a sweep go on past failed
  jobs), and seqlab reports failed jobs in one line each. Hydra keeps it in `_return_value`.
- The command line as `hydra.main` reads it (`overrides`, `multirun`, ...): `seqlab-train
  from_sweep=DIR` rewrites its overrides before Hydra starts. Hydra's parser is in `hydra._internal.utils`.
"""

import argparse
from collections.abc import Callable
from typing import Any

from hydra._internal.utils import get_args_parser
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.utils import get_class


def basic_sweeper(max_batch_size: int | None, params: Any) -> Sweeper:
    """Hydra's basic sweeper, of the class that `hydra/sweeper=basic` names."""
    Plugins.instance()  # the plugin scan imports the sweeper's module, which registers its config
    target = ConfigStore.instance().load("hydra/sweeper/basic.yaml").node["_target_"]
    # Looked up on every call: each plugin scan executes the module again, replacing the class.
    return get_class(target)(max_batch_size=max_batch_size, params=params)


def wrap_launcher(sweeper: Sweeper, wrap: Callable[[Launcher], Any]) -> None:
    """Have a basic sweeper that is set up launch its jobs through `wrap(the launcher it set up)`."""
    sweeper.launcher = wrap(sweeper.launcher)


def failed_job_error(job_return: JobReturn) -> Any:
    """What a job that did not complete raised."""
    return job_return._return_value


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The arguments `hydra.main` reads from `argv` (sys.argv without the program): `overrides`, `multirun`, ..."""
    return get_args_parser().parse_args(argv)
