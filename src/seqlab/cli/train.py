"""seqlab-train: compose data, model, task, trainer, loggers and callbacks from config; fit; test.

Imports of torch and Lightning (and of the seqlab modules that import them) happen inside the task
function, so `--help` and `--cfg job` answer at once.

`from_sweep=DIR` changes what Hydra composes, so `main` turns it into the overrides of the sweep's best
configuration before Hydra reads the command line.
"""

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from seqlab.cli.config_checks import check_override_types, refuse_null_groups
from seqlab.console import hide_known_noise
from seqlab.errors import SeqlabError, exit_with_errors, reports_errors, traceback_requested
from seqlab.launch.memory import keep_freed_memory
from seqlab.launch.threads import use_threads
from seqlab.sweeps.cv import train_folds
from seqlab.sweeps.plugins import register_sweepers

if TYPE_CHECKING:
    from seqlab.runs.record import TrainingProgress

register_sweepers()

log = logging.getLogger(__name__)

FROM_SWEEP = "from_sweep"
# Chosen with -m, these sweep something other than the retrained configuration (its seed, its folds, a search around it).
SWEEPING_GROUPS = {"hydra/sweeper", "hparams_search", "crossval"}


@reports_errors
def train(cfg: DictConfig) -> float | list[float] | None:
    """Fit, then validate and test the best checkpoint; write metrics.json; return `optimized_metric`.

    With `cv.folds=K`, train the K folds in sequence and return the mean over the folds.
    """
    hide_known_noise(show=cfg.get("show_known_noise", False))
    use_threads(cfg.get("threads"))
    keep_freed_memory(cfg.get("keep_freed_memory", True))
    check_something_to_train(cfg)
    if cfg.get(FROM_SWEEP):
        log_retraining(cfg)
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
    ckpt_path = runs.resolve_ckpt_path(cfg, prefer="last") or cluster.resume_checkpoint(cfg)
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
        # Lightning returns no results for a stage its limit turns off (trainer.limit_val_batches=0).
        results = trainer.validate(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, verbose=False, weights_only=True)
        metrics.update(runs.scalar_metrics(results[0] if results else {}))
        if cfg.get("test"):
            results = trainer.test(task, datamodule=datamodule, ckpt_path=evaluated_ckpt, weights_only=True)
            metrics.update(runs.scalar_metrics(results[0] if results else {}))

        value = runs.optimized_value(cfg, metrics)
        metrics.update(datamodule.split_sizes)
        runs.write_json(
            runs.run_dir(cfg) / "metrics.json",
            {
                **metrics,
                **progress,
                "ckpt_path": path_in_run_dir(best, runs.run_dir(cfg)),
                "tags": as_tags(cfg.get("tags")),
                **({FROM_SWEEP: cfg.from_sweep} if cfg.get(FROM_SWEEP) else {}),
            },
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


def log_retraining(cfg: DictConfig) -> None:
    """One line: which sweep's best configuration this run trains, and on what data."""
    from seqlab.sweeps.best_configuration import read_best_configuration

    best = read_best_configuration(cfg.from_sweep)
    if cfg.data.get("fold") is not None:
        data = f"fold {cfg.data.fold} of {cfg.data.num_folds} validating"
    elif cfg.get("cv") and cfg.cv.get("folds"):
        data = f"{cfg.cv.folds} folds in turn (cv.folds)"
    elif cfg.data.get("merge_val"):
        data = "the training and validation splits merged (data.merge_val=true), validation drawn from them for early stopping and the best checkpoint"
    else:
        data = "the whole training split, no fold held out, validating on the data's own validation split"
    log.info("from_sweep: the best configuration of %s (%s): %s; trained on %s", best.sweep_dir, best.chosen_by, " ".join(best.searched) or "-", data)


def with_from_sweep_expanded(argv: list[str]) -> list[str]:
    """`argv` (sys.argv without the program) with `from_sweep=DIR` replaced by the overrides that train the sweep's
    best configuration on the full training data, placed before the command line's own overrides, which win.

    The run keeps `from_sweep=<absolute dir>` among its overrides (and so in its config and metrics.json).
    """
    if not any(argument.lstrip("+~").startswith(f"{FROM_SWEEP}=") for argument in argv):
        return argv
    from seqlab.sweeps.best_configuration import read_best_configuration
    from seqlab.sweeps.hydra_internals import parse_command_line

    arguments = parse_command_line(argv)
    parser = OverridesParser.create()
    command_line = parser.parse_overrides(arguments.overrides)
    requested = [override for override in command_line if override.key_or_group == FROM_SWEEP]
    own = [override for override in command_line if override.key_or_group != FROM_SWEEP]
    if len(requested) != 1 or requested[0].is_sweep_override() or not isinstance(requested[0].value(), str):
        raise SeqlabError(f"{FROM_SWEEP} takes one sweep dir; to retrain several, run seqlab-train once per sweep")
    if arguments.multirun and not any(override.is_sweep_override() or override.key_or_group in SWEEPING_GROUPS for override in own):
        raise SeqlabError(f"-m {FROM_SWEEP}=... needs something to sweep, e.g. seed=1,2,3 (one run per seed); without it, drop -m")

    best = read_best_configuration(requested[0].value())
    set_here = {(override.key_or_group, override.package) for override in own}
    expansion = [override.input_line for override in parser.parse_overrides(best.overrides) if (override.key_or_group, override.package) not in set_here]
    # The full training data: no fold held out.
    expansion += [f"{key}=null" for key in ("data.num_folds", "data.fold") if (key, None) not in set_here]
    if ("data.merge_val", None) not in set_here and data_config_has("merge_val", [*expansion, *(o.input_line for o in own if not o.is_sweep_override())]):
        expansion.append("data.merge_val=true")
    expansion.append(f"{FROM_SWEEP}={best.sweep_dir}")
    if not arguments.multirun:
        expansion.append("hydra.mode=RUN")  # a preset that sweeps (experiment=finetune_gpt_cv) would start a multirun

    rest = [argument for argument in argv if argument != requested[0].input_line]
    first_override = next((i for i, argument in enumerate(rest) if own and argument == own[0].input_line), len(rest))
    return [*rest[:first_override], *expansion, *rest[first_override:]]


def data_config_has(key: str, overrides: list[str]) -> bool:
    """Whether the data config that `overrides` compose has `key`."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    try:
        with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
            return key in compose(config_name="train", overrides=overrides).data
    except (HydraException, OmegaConfBaseException):
        return False  # Hydra reports the same mistake when it composes the run
    finally:
        GlobalHydra.instance().clear()


def main() -> None:
    """seqlab-train: expand `from_sweep`, refuse a config group set to null, then run Hydra on the command line."""
    refuse_null_groups(sys.argv[1:])
    try:
        sys.argv[1:] = with_from_sweep_expanded(sys.argv[1:])
    except SeqlabError as error:
        if traceback_requested():
            raise
        exit_with_errors([str(error)])
    run_train()


@hydra.main(version_base="1.3", config_path="pkg://seqlab.conf", config_name="train")
def run_train(cfg: DictConfig) -> float | list[float] | None:
    return train(cfg)


if __name__ == "__main__":
    main()
