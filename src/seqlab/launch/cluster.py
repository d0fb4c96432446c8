"""Jobs that submitit runs (hydra/launcher=slurm or submitit_local): ranks, preemption, requeue and resume.

Each rank of a submitit job is one of its tasks. When the job is preempted or nears its time limit,
submitit signals it; every rank then stops at the next batch boundary, rank 0 saves
checkpoints/last.ckpt, and submitit requeues the job (the launcher's `checkpoint` resubmits the
same job, in the same run dir). The requeued job finds that checkpoint and resumes from it.
"""

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_utilities.core.rank_zero import rank_zero_only
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def under_submitit() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ


def adopt_task_ranks() -> None:
    """Under submitit's local executor, tell torch.distributed and Lightning which rank this task is.

    On SLURM Lightning reads the ranks from SLURM's variables itself. Call before anything decides
    whether it is rank 0.
    """
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or int(os.environ.get("SUBMITIT_LOCAL_NTASKS", "1")) < 2:
        return
    from submitit.helpers import TorchDistributedEnvironment  # the optional `cluster` extra, present when submitit runs the job

    # Every task sees all of the job's devices; Lightning picks this rank's one.
    environment = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    # Lightning took the rank from the environment when it was imported, before the export.
    rank_zero_only.rank = environment.rank


def trainer_plugins() -> list[Any]:
    """Under submitit on SLURM, Lightning must not requeue the job itself on SIGUSR1 too: submitit does."""
    if not under_submitit():
        return []
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """A submitit job whose run dir already holds its last checkpoint was requeued or resubmitted: it resumes there."""
    if not under_submitit() or cfg.get("ckpt_path") is not None:
        return None
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    log.info("resuming from %s, this job's own last checkpoint (the job was requeued or resubmitted)", path)
    return str(path)


def callbacks(cfg: DictConfig) -> list[Any]:
    if not under_submitit():
        return []
    return [CheckpointAndRequeue(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")]


class CheckpointAndRequeue(pl.Callback):
    """On submitit's preemption/time-limit signal: every rank stops at the next batch boundary, the
    checkpoint is saved, and submitit's own handler requeues the job.

    Saving inside the signal handler could catch the model halfway through an optimizer step, and
    ranks that saw the signal at different batches would wait for each other forever; so the
    handler only notes the signal, and the ranks agree on stopping after each batch.
    """

    def __init__(self, ckpt_path: Path) -> None:
        from submitit import JobEnvironment  # the optional `cluster` extra, present when submitit runs the job

        self.ckpt_path = ckpt_path
        self.signum = signal.Signals["SIG" + JobEnvironment.USR_SIG]
        self.signalled = False
        self.sigterm_handler: Any = None
        self.submitit_handler: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.sigterm_handler = signal.getsignal(signal.SIGTERM)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has just made SIGTERM end training; submitit ignores SIGTERM on purpose (SLURM
        # sends it ahead of the requeue signal on some clusters), so its handler goes back.
        if self.sigterm_handler is not None:
            signal.signal(signal.SIGTERM, self.sigterm_handler)
        self.submitit_handler = signal.getsignal(self.signum)
        signal.signal(self.signum, self._note_signal)

    def _note_signal(self, signum: int, frame: Any) -> None:
        log.warning("received %s: saving %s after this batch, then requeueing", signal.Signals(signum).name, self.ckpt_path)
        self.signalled = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.signalled, all=False):
            return
        trainer.save_checkpoint(self.ckpt_path)
        log.info("saved %s at epoch %d, step %d; submitit requeues the job, which resumes from it", self.ckpt_path, trainer.current_epoch, trainer.global_step)
        signal.signal(self.signum, self.submitit_handler)
        if trainer.global_rank == 0 and callable(self.submitit_handler):
            self.submitit_handler(self.signum, None)  # requeues this job and exits
        sys.exit(0)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.submitit_handler is not None:
            signal.signal(self.signum, self.submitit_handler)
