"""Multi-process runs under Hydra: every rank runs the same job, in the same run dir.

Lightning starts DDP's (and FSDP's) extra ranks by running the command line again
(`_SubprocessScriptLauncher`). Inside a Hydra multirun that command line is the whole sweep, so each
extra rank would run every job of the sweep, with other hyperparameters and in new dirs (Lightning
#11300, Hydra #2070). `HydraJobLauncher` starts an extra rank as a single run of exactly its job
instead: the job's own overrides, in the job's run dir. Processes that another launcher started
(torchrun, srun, submitit) compose their config themselves; `SameJobOnEveryRank` checks, before
any training, that they all arrived at the same run.
"""

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning_fabric.utilities.distributed import _set_num_threads_if_needed
from omegaconf import OmegaConf
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

# What the launching process sets for its ranks to find each other; a multirun's next job must not inherit it.
LAUNCH_ENV_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# Hydra overrides that belong to the sweep, not to one of its jobs.
SWEEP_KEYS = ("hydra.mode", "hydra.run", "hydra.sweep", "hydra.launcher", "hydra/launcher", "hydra.sweeper", "hydra/sweeper", "hydra.output_subdir", "hydra.job.num", "hydra.job.id")
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
# How long the launching process waits, after its job, for the extra ranks to exit.
RANK_EXIT_TIMEOUT_S = 120


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
    import __main__

    hydra_cfg = HydraConfig.get()
    cwd = hydra_cfg.runtime.cwd
    if getattr(__main__, "__spec__", None) is None:
        program = [sys.executable, os.path.join(cwd, sys.argv[0])]
    else:
        program = [sys.executable, "-m", __main__.__spec__.name]
    # Read unresolved: an override's value may itself be an interpolation, to be resolved in the rank's own config.
    overrides = OmegaConf.to_container(hydra_cfg.overrides, resolve=False)
    hydra_overrides = [o.input_line for o in OverridesParser.create().parse_overrides(overrides["hydra"]) if not _is_sweep_key(o.key_or_group)]
    # A sweep job's number and id, for configs that interpolate them.
    job_ids = [f"hydra.job.{key}={_override_value(hydra_cfg.job[key])}" for key in ("num", "id") if not OmegaConf.is_missing(hydra_cfg.job, key)]
    run_dir = hydra_cfg.runtime.output_dir
    command = [
        *program, *_config_flags(sys.argv[1:]), *hydra_overrides, *overrides["task"], *job_ids,
        f'hydra.run.dir="{run_dir}"', "hydra.output_subdir=null",
    ]
    return command, cwd


class HydraJobLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher, with each extra rank running this Hydra job rather than the command line.

    After the job (`end_job`) it waits for those ranks and clears what it set up, so the next job of
    a multirun, in the same process, starts ranks of its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env_before: dict[str, str | None] = {}
        # Lightning's observer kills this process if an extra rank dies (else it would hang in a
        # collective); emptied at the end of the job, so a rank exiting then does not end the sweep.
        self.observed: list[subprocess.Popen] = []

    def launch(self, function: Any, *args: Any, trainer: pl.Trainer | None = None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(num_devices=self.num_processes, num_nodes=self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.observed.extend(self.procs)
            _ChildProcessObserver(main_pid=os.getpid(), child_processes=self.observed).start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        return function(*args, **kwargs)

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.env_before = {name: os.environ.get(name) for name in LAUNCH_ENV_VARS}
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        command, cwd = hydra_job_command()
        log.info("starting %d more ranks for this job: %s", self.num_processes - 1, " ".join(command[1:]))
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))

    def end_job(self, failed: bool) -> list[str]:
        """Wait for the extra ranks (end them if the job failed: they may wait forever in a collective); close the
        process group; restore the environment. Returns how ranks failed."""
        if not self.procs:
            return []
        self.observed.clear()
        failures = []
        for local_rank, proc in enumerate(self.procs, start=1):
            if failed:
                proc.kill()
            try:
                code = proc.wait(timeout=RANK_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0 and not failed:
                failures.append(f"rank {local_rank} exited with code {code}")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for name, value in self.env_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.procs = []
        return failures


class SpawnLauncherWithProgress(_MultiProcessingLauncher):
    """Lightning's spawn launcher (ddp_spawn), also bringing the fit loop's progress back to the main
    process, whose epoch and global step metrics.json reports (Lightning brings back only metrics and weights)."""

    def get_extra_results(self, trainer: pl.Trainer) -> dict[str, Any]:
        buffer = io.BytesIO()
        torch.save(trainer.fit_loop.state_dict(), buffer)
        return {**super().get_extra_results(trainer), "fit_loop_bytes": buffer.getvalue()}

    def update_main_process_results(self, trainer: pl.Trainer, extra: dict[str, Any]) -> None:
        super().update_main_process_results(trainer, extra)
        if trainer.state.fn == "fit":
            # Bytes the worker just wrote (loop counters and state), not a file from elsewhere.
            trainer.fit_loop.load_state_dict(torch.load(io.BytesIO(extra["fit_loop_bytes"]), weights_only=False))


def prepare_launch(trainer: pl.Trainer) -> None:
    """Start extra ranks as runs of this job; refuse, before any training, ranks that would share a submitit task.

    (A multirun that torchrun or srun started in every rank is refused before the sweep starts:
    seqlab.launch.ranks.RefuseSweepInEveryRank.)
    """
    strategy = trainer.strategy
    if type(strategy.launcher) is _SubprocessScriptLauncher and HydraConfig.initialized():
        old = strategy.launcher
        strategy._launcher = HydraJobLauncher(old.cluster_environment, old.num_processes, old.num_nodes)
    if type(strategy.launcher) is _MultiProcessingLauncher:
        strategy._launcher = SpawnLauncherWithProgress(strategy, start_method=strategy.launcher._start_method)
    environment = getattr(strategy, "cluster_environment", None)
    if environment is None or trainer.world_size == 1:
        return
    if "SUBMITIT_EXECUTOR" in os.environ and isinstance(strategy.launcher, HydraJobLauncher) and not environment.creates_processes_externally:
        raise SeqlabError(
            f"under submitit every rank is a task of the job, but trainer.devices={trainer.num_devices} ranks would share one: "
            "leave hydra.launcher.tasks_per_node to the slurm and submitit_local presets, which set it to trainer.devices"
        )


def end_job(trainer: pl.Trainer | None, failed: bool) -> None:
    """In the process that started a job's ranks: wait for them and clear what they shared, so the next job of
    a multirun starts afresh. A rank that failed fails the job."""
    launcher = getattr(trainer.strategy, "launcher", None) if trainer is not None else None
    if not isinstance(launcher, HydraJobLauncher):
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
