"""Builds a run's objects from its config: the data, the task around its model, and the trainer."""

import logging
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks import ModelSummary, ProgressBar

from seqlab.runs.files import run_dir
from seqlab.runs.record import RNGStateCheckpoint, RelocatedRunDir, RunRecord
from seqlab.errors import SeqlabError
from seqlab.reports.learning_curves import LearningCurves

log = logging.getLogger(__name__)


def build_datamodule(cfg: DictConfig, record: dict[str, Any] | None = None) -> pl.LightningDataModule:
    """Instantiate and set up the data; a checkpoint's run record supplies the fitted tokenizer and labels."""
    datamodule = restore_datamodule(cfg, record) if record is not None else instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def restore_datamodule(cfg: DictConfig, record: dict[str, Any]) -> pl.LightningDataModule:
    """The run's DataModule with its fitted tokenizer and labels, not set up: enough to size a model
    without reading any data."""
    from seqlab.data.tokenizers import tokenizer_from_dict

    datamodule = instantiate(cfg.data)
    datamodule.tokenizer = tokenizer_from_dict(record["tokenizer"])
    if record.get("label_names"):
        datamodule.label_names = list(record["label_names"])
    return datamodule


def model_config(cfg: DictConfig) -> tuple[DictConfig, bool]:
    """The model's constructor arguments, and `model.compile`, which is seqlab's and not the model's."""
    model_cfg = cfg.model.copy()
    with open_dict(model_cfg):
        compile_model = bool(model_cfg.pop("compile", False))
    return model_cfg, compile_model


def build_task(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The task (LightningModule) around the configured model, sized by the data.

    `model.compile=true` compiles the task's model (its `net`) with torch.compile, in place, so
    checkpoints keep the plain module's parameter names; compiling the LightningModule itself
    fails on `self.log`.
    """
    model_cfg, compile_model = model_config(cfg)
    model = instantiate(model_cfg, _partial_=True, **datamodule.model_dims())
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        task = instantiate(cfg.task, model=model, optimizer=instantiate(cfg.optimizer), scheduler=scheduler, **datamodule.task_dims())
    except InstantiationException as error:
        if isinstance(error.__cause__, SeqlabError):  # a task refusing its model: one line, not Hydra's wrapper
            raise error.__cause__ from None
        raise
    if compile_model:
        net = getattr(task, "net", None)
        if not isinstance(net, torch.nn.Module):
            raise SeqlabError(f"model.compile=true: {type(task).__name__} keeps no model in `net` to compile")
        net.compile()
    return task


def build_trainer(cfg: DictConfig, datamodule: pl.LightningDataModule | None = None) -> pl.Trainer:
    from seqlab.launch import cluster, distributed

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]
    callbacks.extend([RNGStateCheckpoint(), RelocatedRunDir()])
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("hydra", None)
    fingerprints = {"run dir": str(run_dir(cfg)), "config": distributed.fingerprint(config)}
    if datamodule is not None:
        labels = getattr(datamodule, "label_names", None) or None
        callbacks.append(RunRecord(config, datamodule.tokenizer.to_dict(), labels))
        fingerprints["tokenizer"] = distributed.fingerprint(datamodule.tokenizer.to_dict())
        callbacks.append(LearningCurves(run_dir(cfg) / "learning_curves.png", cfg.monitor))
    callbacks.append(distributed.SameJobOnEveryRank(fingerprints))
    callbacks.extend(cluster.callbacks(cfg))
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None and "_target_" in c]
    plugins = cluster.trainer_plugins()
    options: dict[str, Any] = {"plugins": plugins} if plugins else {}
    # Lightning adds its own progress bar and model summary when no callback is one: a config that
    # removes ours (callbacks.progress_bar=null) means no bar, unless the trainer config asks for one.
    for flag, kind in (("enable_progress_bar", ProgressBar), ("enable_model_summary", ModelSummary)):
        if flag not in cfg.trainer and not any(isinstance(callback, kind) for callback in callbacks):
            options[flag] = False
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **options)
    distributed.prepare_launch(trainer)
    return trainer


