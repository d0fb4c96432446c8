"""Multi-process runs under Hydra: every rank runs the same job, in the same run dir.

Lightning starts DDP's (and FSDP's) extra ranks by running the command line again. Inside a Hydra
multirun that command line is the whole sweep, so each extra rank would run every job of the sweep,
with other hyperparameters and in new dirs (Lightning #11300, Hydra #2070). seqlab starts an extra
rank as a single run of exactly its job instead (`hydra_job_command`: the job's own overrides, in
the job's run dir), through `seqlab.launch.lightning_launchers`. Processes that another launcher
started (torchrun, srun, submitit) compose their config themselves; `SameJobOnEveryRank` checks,
before any training, that they all arrived at the same run.
"""

import hashlib
import json
import os
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from seqlab.errors import SeqlabError
from seqlab.launch.lightning_launchers import RankCommandLauncher, bring_back_fit_progress, start_extra_ranks_with

# Hydra overrides that belong to the sweep, not to one of its jobs.
SWEEP_KEYS = (
    "hydra.mode",
    "hydra.run",
    "hydra.sweep",
    "hydra.launcher",
    "hydra/launcher",
    "hydra.sweeper",
    "hydra/sweeper",
    "hydra.output_subdir",
    "hydra.job.num",
    "hydra.job.id",
)
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")


def _is_sweep_key(key: str) -> bool:
    return any(key == sweep_key or key.startswith(sweep_key + ".") for sweep_key in SWEEP_KEYS)


def _config_flags(argv: list[str]) -> list[str]:
    """The command line's --config-path/--config-name/--config-dir, which every job of a sweep shares."""
    flags, args = [], iter(argv)
    for arg in args:
        name, has_value, value = arg.partition("=")
        if name in CONFIG_FLAGS:
            flags += [name, value if has_value else next(args, "")]
    return flags


def _override_value(value: Any) -> str:
    return str(value) if isinstance(value, int) else json.dumps(str(value))


def hydra_job_command() -> tuple[list[str], str]:
    """The command that runs this Hydra job, and only it, as a single run in its run dir; and the dir to run it from."""
    hydra_cfg = HydraConfig.get()
    cwd = hydra_cfg.runtime.cwd
    main = sys.modules["__main__"]
    if getattr(main, "__spec__", None) is None:
        program = [sys.executable, os.path.join(cwd, sys.argv[0])]
    else:
        program = [sys.executable, "-m", main.__spec__.name]
    # Read unresolved: an override's value may itself be an interpolation, to be resolved in the rank's own config.
    overrides = OmegaConf.to_container(hydra_cfg.overrides, resolve=False)
    hydra_overrides = [o.input_line for o in OverridesParser.create().parse_overrides(overrides["hydra"]) if not _is_sweep_key(o.key_or_group)]
    # A sweep job's number and id, for configs that interpolate them.
    job_ids = [f"hydra.job.{key}={_override_value(hydra_cfg.job[key])}" for key in ("num", "id") if not OmegaConf.is_missing(hydra_cfg.job, key)]
    run_dir = hydra_cfg.runtime.output_dir
    command = [
        *program,
        *_config_flags(sys.argv[1:]),
        *hydra_overrides,
        *overrides["task"],
        *job_ids,
        f'hydra.run.dir="{run_dir}"',
        "hydra.output_subdir=null",
    ]
    return command, cwd


def prepare_launch(trainer: pl.Trainer) -> None:
    """Start extra ranks as runs of this job; refuse, before any training, ranks that would share a submitit task.

    (A multirun that torchrun or srun started in every rank is refused before the sweep starts:
    seqlab.launch.ranks.RefuseSweepInEveryRank.)
    """
    strategy = trainer.strategy
    if HydraConfig.initialized():
        start_extra_ranks_with(strategy, hydra_job_command)
    bring_back_fit_progress(strategy)
    environment = getattr(strategy, "cluster_environment", None)
    if environment is None or trainer.world_size == 1:
        return
    if "SUBMITIT_EXECUTOR" in os.environ and isinstance(strategy.launcher, RankCommandLauncher) and not environment.creates_processes_externally:
        raise SeqlabError(
            f"under submitit every rank is a task of the job, but trainer.devices={trainer.num_devices} ranks would share one: "
            "leave hydra.launcher.tasks_per_node to the slurm and submitit_local presets, which set it to trainer.devices"
        )


def end_job(trainer: pl.Trainer | None, failed: bool) -> None:
    """In the process that started a job's ranks: wait for them and clear what they shared, so the next job of
    a multirun starts afresh. A rank that failed fails the job."""
    launcher = getattr(trainer.strategy, "launcher", None) if trainer is not None else None
    if not isinstance(launcher, RankCommandLauncher):
        return
    failures = launcher.end_job(failed)
    if failures:
        raise SeqlabError(f"{'; '.join(failures)} (its log lines are in train.log in the run dir)")


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


class SameJobOnEveryRank(pl.Callback):
    """Stops every rank, before any training, unless all of them composed the same run: run dir, config, tokenizer.

    Ranks that torchrun or srun started each compose their config from their own command line; a
    timestamped run dir or a mistyped override would otherwise make them train different runs.
    """

    def __init__(self, fingerprints: dict[str, str]) -> None:
        self.fingerprints = fingerprints
        self.checked = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.checked or trainer.world_size == 1 or not torch.distributed.is_initialized():
            return
        self.checked = True
        reference = trainer.strategy.broadcast(self.fingerprints, src=0)
        differing = sorted(name for name, value in self.fingerprints.items() if reference.get(name) != value)
        gathered: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, differing)
        mismatches = [f"rank {rank} has another {', '.join(names)}" for rank, names in enumerate(gathered) if names]
        if mismatches:
            raise SeqlabError(
                f"the ranks of this run composed different runs ({'; '.join(mismatches)} than rank 0): give every rank "
                "the same overrides and the same hydra.run.dir (docs/clusters.md)"
            )
