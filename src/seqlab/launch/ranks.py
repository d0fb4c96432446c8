"""Which rank a process is, for log lines and for the files only rank 0 writes.

Light on purpose: Hydra's logging config and the config tree's resolvers use it before torch is imported.
"""

import logging
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

# Where each launcher puts a process's global rank: torchrun, Lightning's own extra ranks, SLURM
# tasks (Lightning reads them in this order), then submitit's local executor.
RANK_ENV_VARS = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "SUBMITIT_LOCAL_GLOBALID")


def process_rank() -> int:
    """This process's global rank: Lightning's once it has set it, else what the launcher put in the environment."""
    rank = getattr(rank_zero_only, "rank", None)
    if rank is not None:
        return int(rank)
    for name in RANK_ENV_VARS:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


class RankFormatter(logging.Formatter):
    """Gives log records `%(rank)s`, so lines from all ranks of a run, in one console or log file, say whose they are."""

    def format(self, record: logging.LogRecord) -> str:
        record.rank = process_rank()
        return super().format(record)


def _on_rank_zero(value: object) -> object:
    return value if process_rank() == 0 else None


def register_resolvers() -> None:
    """`${on_rank_zero:x}` is x on rank 0 and null elsewhere: only rank 0 writes the run dir's .hydra files."""
    if not OmegaConf.has_resolver("on_rank_zero"):
        OmegaConf.register_new_resolver("on_rank_zero", _on_rank_zero)


def started_as_one_of_several_ranks() -> bool:
    """Whether torchrun (or another env:// launcher) or srun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE") or 1) > 1 or int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1) > 1


class RefuseSweepInEveryRank(Callback):
    """Stops a multirun that torchrun or srun started once per rank: each rank would run the whole sweep,
    each in sweep dirs of its own. Runs before the sweep creates anything."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if started_as_one_of_several_ranks() and "SUBMITIT_EXECUTOR" not in os.environ:
            if process_rank() == 0:
                sys.stderr.write(
                    "Error: a multirun started by torchrun or srun runs the whole sweep in every rank: sweep with "
                    "hydra/launcher=slurm (one SLURM allocation per job) on a cluster, or with trainer=ddp or "
                    "trainer=ddp_spawn on one machine\n"
                )
            raise SystemExit(1)
