"""seqlab-train: compose data, model, task, trainer, loggers and callbacks from config; fit; test.

Imports of torch and Lightning (and of the seqlab modules that import them) happen inside the task
function, so `--help` and `--cfg job` answer at once.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from seqlab.cli.config_checks import check_override_types
from seqlab.console import hide_known_noise
from seqlab.errors import SeqlabError, reports_errors
from seqlab.launch.threads import use_threads
from seqlab.sweeps.cv import train_folds
from seqlab.sweeps.plugins import register_sweepers

if TYPE_CHECKING:
    from seqlab.runs.record import TrainingProgress

register_sweepers()


@reports_errors
def train(cfg: DictConfig) -> float | list[float] | None:
    """Fit, then validate and test the best checkpoint; write metrics.json; return `optimized_metric`.

    With `cv.folds=K`, train the K folds in sequence and return the mean over the folds.
    """
    hide_known_noise(show=cfg.get("show_known_noise", False))
    use_threads(cfg.get("threads"))
    check_something_to_train(cfg)
    if cfg.get("cv") and cfg.cv.get("folds"):
        return train_folds(cfg, train_run)
    return train_run(cfg)


def train_run(cfg: DictConfig) -> float | list[float] | None:
    import pytorch_lightning as pl

    from seqlab import runs
    from seqlab.launch import cluster, distributed
    from seqlab.loggers import finish_wandb
    from seqlab.reports.config_tree import show_config_tree
    from seqlab.tags import as_tags
    from seqlab.tasks import finetuning

    cluster.adopt_task_ranks()
    check_override_types(cfg)
    ckpt_path = runs.resolve_ckpt_path(cfg) or cluster.resume_checkpoint(cfg)
    if ckpt_path is not None:
        check_something_left_to_train(cfg, runs.read_run(ckpt_path).progress, runs.run_dir(cfg))
    runs.write_resolved_config(cfg)
    show_config_tree(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    failed, trainer = True, None
    try:
        # Fine-tuning: the pretraining run's checkpoint, read once for its tokenizer and its weights.
        pretrained = finetuning.read_pretrained_run(cfg.finetune) if cfg.get("finetune") else None
        tokenizer = pretrained.tokenizer if pretrained and cfg.finetune.tokenizer == "checkpoint" else None
        datamodule = runs.build_datamodule(cfg, tokenizer)
        task = runs.build_task(cfg, datamodule)
        if pretrained and ckpt_path is None:  # a resumed run has its weights in its own checkpoint
            finetuning.initialise_from_checkpoint(task, datamodule.tokenizer, pretrained, cfg.finetune, runs.run_dir(cfg))
        del pretrained  # its weights are loaded: free them before training
        if pl.utilities.rank_zero_only.rank == 0:
            datamodule.save_to(runs.run_dir(cfg))
        trainer = runs.build_trainer(cfg, datamodule)
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = runs.scalar_metrics(trainer.callback_metrics)
        progress = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}

        # The best checkpoint; the last one when no best was saved (the monitored metric never logged).
        best = next((checkpoint.best_model_path for checkpoint in trainer.checkpoint_callbacks if checkpoint.best_model_path), "")
        evaluated_ckpt = best or None
        metrics.update(runs.scalar_metrics(trainer.validate(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, verbose=False, weights_only=True)[0]))
        if cfg.get("test"):
            metrics.update(runs.scalar_metrics(trainer.test(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, weights_only=True)[0]))

        value = runs.optimized_value(cfg, metrics)
        metrics.update(datamodule.split_sizes)
        runs.write_json(
            runs.run_dir(cfg) / "metrics.json",
            {**metrics, **progress, "ckpt_path": path_in_run_dir(best, runs.run_dir(cfg)), "tags": as_tags(cfg.get("tags"))},
        )
        failed = False
        return value
    finally:
        finish_wandb(failed)
        distributed.end_job(trainer, failed)


def check_something_to_train(cfg: DictConfig) -> None:
    """Refuse a trainer setting that trains nothing, before any file is written: the run would test
    an untrained model and leave a metrics.json as if it had finished."""
    for key in ("max_epochs", "max_steps", "limit_train_batches"):
        value = cfg.trainer.get(key)
        if value == 0:
            raise SeqlabError(f"trainer.{key}={value} trains nothing; set it above 0 (seqlab-eval ckpt_path=<checkpoint> tests a trained model)")


def check_something_left_to_train(cfg: DictConfig, progress: "TrainingProgress | None", run_dir: Path) -> None:
    """Refuse to resume a finished run (its metrics.json written, its checkpoint at trainer.max_epochs
    or trainer.max_steps): fit would train nothing, and the run would overwrite its metrics.json
    without the training metrics. `progress` is the resumed checkpoint's (None: weights only)."""
    if progress is None:
        return
    epochs, steps = progress.epochs, progress.global_step
    max_epochs, max_steps = cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps")
    if max_epochs not in (None, -1) and epochs >= max_epochs:
        limit, reached = "trainer.max_epochs", f"epoch {epochs}"
    elif max_steps not in (None, -1) and steps >= max_steps:
        limit, reached = "trainer.max_steps", f"step {steps}"
    else:
        return
    # Without metrics.json the run stopped after training (while testing, or preempted): resuming finishes it.
    if (run_dir / "metrics.json").is_file():
        raise SeqlabError(f"run dir {run_dir} already finished at {reached} (metrics.json); raise {limit} to train further, or use a new hydra.run.dir")


def path_in_run_dir(path: str, run_dir: Path) -> str:
    """`path` relative to the run dir when it lies inside it, so a moved or copied run dir names its own files."""
    if path and Path(path).resolve().is_relative_to(run_dir.resolve()):
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    return path


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | list[float] | None:
    return train(cfg)


if __name__ == "__main__":
    main()
