"""A run: built from its config (build), its run dir's files (files), and the record every checkpoint
carries so that a checkpoint alone rebuilds the run (record), checked before use (recorded_config).

The commands use these through the names below: `runs.build_task(cfg, datamodule)`, `runs.run_dir(cfg)`.
"""

from seqlab.runs.build import build_datamodule, build_task, build_trainer, model_config, restore_datamodule
from seqlab.runs.files import optimized_value, resolve_ckpt_path, run_dir, scalar_metrics, write_json, write_resolved_config

__all__ = [
    "build_datamodule",
    "build_task",
    "build_trainer",
    "model_config",
    "optimized_value",
    "resolve_ckpt_path",
    "restore_datamodule",
    "run_dir",
    "scalar_metrics",
    "write_json",
    "write_resolved_config",
]
