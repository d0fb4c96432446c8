"""Builds a run's objects from its config: the data, the task around its model, and the trainer."""

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelSummary, ProgressBar
from pytorch_lightning.profilers import PassThroughProfiler

from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError
from seqlab.reports.learning_curves import LearningCurves
from seqlab.runs.files import run_dir
from seqlab.runs.record import RelocatedRunDir, RNGStateCheckpoint, RunRecord

log = logging.getLogger(__name__)

_NO_OP = contextlib.nullcontext()

# The callback hooks Lightning calls once a batch or once an optimiser step.
PER_BATCH_HOOKS = (
    *(name for name in vars(Callback) if name.endswith(("_batch_start", "_batch_end"))),
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)


class UnprofiledRun(PassThroughProfiler):
    """Lightning's default profiler, which records nothing, without its cost: Lightning wraps each
    hook it calls (the module's, the strategy's and each callback's) in `profiler.profile(name)`, a
    generator-based context manager, about 30 a training step of the default LSTM run (190 before
    `skip_inherited_batch_hooks`). One reusable no-op context instead: that run's step made 4,225
    Python calls instead of 4,868 (docs/benchmarks.md)."""

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return _NO_OP


def skip_inherited_batch_hooks(callbacks: Sequence[Callback]) -> None:
    """Lightning calls every per-batch hook of every callback, whether the callback overrides it or
    not, and formats the callback's `state_key` into a profiler name for each call (ModelCheckpoint's
    and EarlyStopping's from a repr of their settings): six calls a training step for each of a
    dozen callbacks, of which five have per-step work. Its dispatcher skips a hook that is not
    callable, so each per-batch hook a callback inherits from `Callback`, a no-op, is set to None on
    the instance: the ones its class overrides, or that it sets on itself (LambdaCallback), run as before."""
    for callback in callbacks:
        for hook in PER_BATCH_HOOKS:
            if getattr(getattr(callback, hook, None), "__func__", None) is getattr(Callback, hook):
                setattr(callback, hook, None)


def build_datamodule(
    cfg: DictConfig, tokenizer: TextTokenizer | None = None, label_names: Sequence[str] | None = None, target_tokenizer: TextTokenizer | None = None
) -> pl.LightningDataModule:
    """Instantiate and set up the data; a fitted `tokenizer` (and `label_names`, a translation target
    side's own `target_tokenizer`), from a checkpoint (`runs.read_run`), replace the ones the data would fit."""
    datamodule = restore_datamodule(cfg, tokenizer, label_names, target_tokenizer) if tokenizer is not None else instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def restore_datamodule(
    cfg: DictConfig, tokenizer: TextTokenizer, label_names: Sequence[str] | None = None, target_tokenizer: TextTokenizer | None = None
) -> pl.LightningDataModule:
    """The run's DataModule with its fitted tokenizer, a classifier's labels (in output order) and a
    translation target side's own tokenizer, not set up: enough to size a model without reading any data."""
    datamodule = instantiate(cfg.data)
    datamodule.tokenizer = tokenizer
    if target_tokenizer is not None:
        datamodule.separate_target_tokenizer = target_tokenizer
    if label_names:
        datamodule.label_names = list(label_names)
    return datamodule


def build_task(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The task (LightningModule) around the configured model, sized by the data.

    The task builds its model from the `model` group's constructor and `datamodule.model_dims()`,
    every size the model takes from its data (a two-class task with one logit asks for one output).
    `compile=true` compiles the task's model (its `net`) with torch.compile, in place, so
    checkpoints keep the plain module's parameter names; compiling the LightningModule itself
    fails on `self.log`.
    """
    model = instantiate(cfg.model, _partial_=True)
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        task = instantiate(
            cfg.task, model=model, dims=datamodule.model_dims(), optimizer=instantiate(cfg.optimizer), scheduler=scheduler, **datamodule.task_dims()
        )
    except InstantiationException as error:
        if isinstance(error.__cause__, SeqlabError):  # a task refusing its model: one line, not Hydra's wrapper
            raise error.__cause__ from None
        raise
    if cfg.get("compile"):
        net = getattr(task, "net", None)
        if not isinstance(net, torch.nn.Module):
            raise SeqlabError(f"compile=true: {type(task).__name__} keeps no model in `net` to compile")
        net.compile()
    return task


def build_trainer(cfg: DictConfig, datamodule: pl.LightningDataModule | None = None) -> pl.Trainer:
    from seqlab.launch import cluster, distributed
    from seqlab.loggers import RunConfigForLoggers

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]
    callbacks.extend([RNGStateCheckpoint(), RelocatedRunDir()])
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("hydra", None)
    fingerprints = {"run dir": str(run_dir(cfg)), "config": distributed.fingerprint(config)}
    if datamodule is not None:
        labels = getattr(datamodule, "label_names", None) or None
        target_tokenizer = getattr(datamodule, "separate_target_tokenizer", None)
        callbacks.append(RunRecord(config, datamodule.tokenizer.to_dict(), labels, None if target_tokenizer is None else target_tokenizer.to_dict()))
        fingerprints["tokenizer"] = distributed.fingerprint(datamodule.tokenizer.to_dict())
        callbacks.append(LearningCurves(run_dir(cfg) / "learning_curves.png", cfg.monitor))
    callbacks.append(distributed.SameJobOnEveryRank(fingerprints))
    callbacks.extend(cluster.callbacks(cfg))
    # A logger constructor returns None for an optional logger whose package is missing (logger=many).
    loggers = [logger for c in (cfg.get("logger") or {}).values() if c is not None and "_target_" in c if (logger := instantiate(c)) is not None]
    if loggers:
        logged_config = OmegaConf.to_container(cfg, resolve=True)
        logged_config.pop("hydra", None)
        callbacks.append(RunConfigForLoggers(logged_config))
    plugins = cluster.trainer_plugins()
    options: dict[str, Any] = {"plugins": plugins} if plugins else {}
    # Lightning adds its own progress bar and model summary when no callback is one: a config that
    # removes ours (callbacks.progress_bar=null) means no bar, unless the trainer config asks for one.
    for flag, kind in (("enable_progress_bar", ProgressBar), ("enable_model_summary", ModelSummary)):
        if flag not in cfg.trainer and not any(isinstance(callback, kind) for callback in callbacks):
            options[flag] = False
    if cfg.trainer.get("profiler") is None:  # debug=profiler and trainer.profiler=<name> choose a real one
        options["profiler"] = UnprofiledRun()
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **options)
    skip_inherited_batch_hooks(trainer.callbacks)
    distributed.prepare_launch(trainer)
    return trainer
