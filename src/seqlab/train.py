"""seqlab-train: compose data, model, task, trainer, loggers and callbacks from config; fit; test.

Heavy imports happen inside the task function, so `--help` and `--cfg job` answer at once.
"""

import hydra
from omegaconf import DictConfig

from seqlab.errors import reports_errors
from seqlab.sweeps.plugins import register_sweepers

register_sweepers()


@reports_errors
def train(cfg: DictConfig) -> float | list[float] | None:
    """Fit, then validate and test the best checkpoint; write metrics.json; return `optimized_metric`.

    With `cv.folds=K`, train the K folds in sequence and return the mean over the folds.
    """
    if cfg.get("cv") and cfg.cv.get("folds"):
        from seqlab.sweeps.cv import train_folds

        return train_folds(cfg, train_run)
    return train_run(cfg)


def train_run(cfg: DictConfig) -> float | list[float] | None:
    import pytorch_lightning as pl

    from seqlab import cluster, distributed, finetune, runs
    from seqlab.config_checks import check_override_types

    cluster.adopt_task_ranks()
    check_override_types(cfg)
    ckpt_path = runs.resolve_ckpt_path(cfg) or cluster.resume_checkpoint(cfg)
    runs.write_resolved_config(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    failed, trainer = True, None
    try:
        pretrained_tokenizer = finetune.checkpoint_tokenizer(cfg.get("finetune"))
        datamodule = runs.build_datamodule(cfg, {"tokenizer": pretrained_tokenizer} if pretrained_tokenizer else None)
        task = runs.build_task(cfg, datamodule)
        if cfg.get("finetune") and ckpt_path is None:
            finetune.initialise_from_checkpoint(task, datamodule.tokenizer, cfg.finetune, runs.run_dir(cfg))
        if pl.utilities.rank_zero_only.rank == 0:
            datamodule.save_to(runs.run_dir(cfg))
        trainer = runs.build_trainer(cfg, datamodule)
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        metrics = runs.scalar_metrics(trainer.callback_metrics)
        progress = {"epoch": trainer.current_epoch, "global_step": trainer.global_step}

        checkpoint = trainer.checkpoint_callback
        best = (checkpoint.best_model_path or checkpoint.last_model_path) if checkpoint else ""
        evaluated_ckpt = best or None
        metrics.update(runs.scalar_metrics(trainer.validate(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, verbose=False, weights_only=True)[0]))
        if cfg.get("test"):
            metrics.update(runs.scalar_metrics(trainer.test(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, weights_only=True)[0]))

        value = runs.optimized_value(cfg, metrics)
        metrics.update(datamodule.split_sizes)
        runs.write_json(
            runs.run_dir(cfg) / "metrics.json",
            {**metrics, **progress, "ckpt_path": best},
        )
        failed = False
        return value
    finally:
        runs.finish_wandb(failed)
        distributed.end_job(trainer, failed)


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="train")
def main(cfg: DictConfig) -> float | list[float] | None:
    return train(cfg)


if __name__ == "__main__":
    main()
