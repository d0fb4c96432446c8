"""seqlab's two changes to how Lightning starts a run's processes: the one module that touches Lightning's launchers.

Lightning keeps its launchers private ("All launchers are protected API", Lightning #14555) and offers
no public way to give a strategy another one, so this module subclasses them and sets
`Strategy._launcher`. tests/test_upstream_apis.py checks what it assumes of them, so a Lightning
release that changes one fails there, by name.

- `RankCommandLauncher` (ddp, fsdp): each extra rank runs a command seqlab gives, not this process's
  command line again (inside a Hydra multirun that would be the whole sweep: Lightning #11300).
- `SpawnLauncherWithProgress` (ddp_spawn): the main process also gets the fit loop's progress back.
"""

import io
import logging
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

log = logging.getLogger(__name__)

# What the launching process sets for its ranks to find each other; a multirun's next job must not inherit it.
LAUNCH_ENV_VARS = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
# How long the launching process waits, after its job, for the extra ranks to exit.
RANK_EXIT_TIMEOUT_S = 120

# The command line that runs an extra rank, and the dir to run it from.
RankCommand = Callable[[], tuple[list[str], str]]


class RankCommandLauncher(_SubprocessScriptLauncher):
    """Lightning's subprocess launcher, starting each extra rank with `command()` rather than this
    process's own command line.

    Lightning's `launch` starts the ranks (`_call_children_scripts`) and then watches `procs`: a rank
    that dies ends this process, which would otherwise wait forever in a collective. After the job,
    `end_job` waits for the ranks and restores the environment, so the next job of a multirun, in the
    same process, starts ranks of its own.
    """

    def __init__(self, cluster_environment: Any, num_processes: int, num_nodes: int, command: RankCommand) -> None:
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.command = command
        self.env_before: dict[str, str | None] = {}

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.env_before = {name: os.environ.get(name) for name in LAUNCH_ENV_VARS}
        os.environ["MASTER_ADDR"] = self.cluster_environment.main_address
        os.environ["MASTER_PORT"] = str(self.cluster_environment.main_port)
        os.environ["NODE_RANK"] = str(self.cluster_environment.node_rank())
        os.environ["LOCAL_RANK"] = str(self.cluster_environment.local_rank())
        os.environ["WORLD_SIZE"] = str(self.num_processes * self.num_nodes)
        command, cwd = self.command()
        log.info("starting %d more ranks for this job: %s", self.num_processes - 1, " ".join(command[1:]))
        for local_rank in range(1, self.num_processes):
            env = {**os.environ, "LOCAL_RANK": str(local_rank)}
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))

    def end_job(self, failed: bool) -> list[str]:
        """Wait for the extra ranks (end them if the job failed: they may wait forever in a collective); close the
        process group; restore the environment. Returns how ranks failed."""
        if not self.procs:
            return []
        procs = list(self.procs)
        # Emptied in place: Lightning's observer watches this list, and a rank exiting now must not end the sweep.
        self.procs.clear()
        failures = []
        for local_rank, proc in enumerate(procs, start=1):
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


def start_extra_ranks_with(strategy: Strategy, command: RankCommand) -> None:
    """A strategy that would start its extra ranks by running this process's command line again runs `command` instead."""
    launcher = strategy.launcher
    if type(launcher) is _SubprocessScriptLauncher:
        strategy._launcher = RankCommandLauncher(launcher.cluster_environment, launcher.num_processes, launcher.num_nodes, command)


def bring_back_fit_progress(strategy: Strategy) -> None:
    """A strategy that spawns its ranks (ddp_spawn) also brings the fit loop's progress back to the main process."""
    launcher = strategy.launcher
    if type(launcher) is _MultiProcessingLauncher:
        strategy._launcher = SpawnLauncherWithProgress(strategy, start_method=launcher._start_method)
