"""Hydra's basic sweeper (the cartesian product of the overrides) that summarises cross-validation.

When the sweep crosses `data.fold`, the sweep dir gets cv_summary.json/.csv and the console the
table, also when a job failed: Hydra's sweeper then raises and skips `on_multirun_end`, so the
summary is written here, on the way out, before the error ends the command with a non-zero exit.
"""

from pathlib import Path
from typing import Any

from hydra._internal.core_plugins import basic_sweeper
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class CrossValidationBasicSweeper(Sweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        # Looked up when called: Hydra's plugin scan re-executes its plugin modules, replacing the class.
        self.basic = basic_sweeper.BasicSweeper(max_batch_size=max_batch_size, params=params)
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.basic.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from seqlab.sweeps.cv import summarize_sweep

        try:
            return self.basic.sweep(arguments)
        finally:
            summarize_sweep(Path(self.config.hydra.sweep.dir).resolve())
