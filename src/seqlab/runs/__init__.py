"""A run: built from its config (build), its run dir's files (files), and the record every checkpoint
carries so that a checkpoint alone rebuilds the run (record: `read_run` reads a checkpoint, once),
checked before use (recorded_config); a trained task rebuilt from a checkpoint (trained).

The commands use these through the names below: `runs.build_task(cfg, datamodule)`, `runs.run_dir(cfg)`,
`runs.read_run(ckpt_path)`; and `seqlab.runs.trained` for a trained task.
"""

from seqlab.runs.build import build_datamodule, build_task, build_trainer, restore_datamodule
from seqlab.runs.files import optimized_value, resolve_ckpt_path, run_checkpoint, run_dir, scalar_metrics, write_json, write_resolved_config
from seqlab.runs.record import SavedRun, TrainingProgress, read_run

__all__ = [
    "build_datamodule",
    "build_task",
    "build_trainer",
    "optimized_value",
    "read_run",
    "resolve_ckpt_path",
    "run_checkpoint",
    "restore_datamodule",
    "run_dir",
    "SavedRun",
    "scalar_metrics",
    "TrainingProgress",
    "write_json",
    "write_resolved_config",
]
