"""Builds a run's objects from its config and writes what a finished run leaves in its run dir."""

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from seqlab.checkpointing import RNGStateCheckpoint, RunRecord
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def build_datamodule(cfg: DictConfig, record: dict[str, Any] | None = None) -> pl.LightningDataModule:
    """Instantiate and set up the data; a checkpoint's run record supplies the fitted tokenizer and labels."""
    datamodule = instantiate(cfg.data)
    if record is not None:
        from seqlab.data.tokenizers import tokenizer_from_dict

        datamodule.tokenizer = tokenizer_from_dict(record["tokenizer"])
        if record.get("label_names"):
            datamodule.label_names = list(record["label_names"])
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_task(cfg: DictConfig, datamodule: pl.LightningDataModule) -> pl.LightningModule:
    """The task (LightningModule) around the configured model, sized by the data."""
    model = instantiate(cfg.model, _partial_=True, **datamodule.model_dims())
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    try:
        return instantiate(cfg.task, model=model, optimizer=instantiate(cfg.optimizer), scheduler=scheduler, **datamodule.task_dims())
    except InstantiationException as error:
        if isinstance(error.__cause__, SeqlabError):  # a task refusing its model: one line, not Hydra's wrapper
            raise error.__cause__ from None
        raise


def build_trainer(cfg: DictConfig, datamodule: pl.LightningDataModule | None = None) -> pl.Trainer:
    from seqlab import cluster, distributed

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]
    callbacks.append(RNGStateCheckpoint())
    config = OmegaConf.to_container(cfg, resolve=False)
    config.pop("hydra", None)
    fingerprints = {"run dir": str(run_dir(cfg)), "config": distributed.fingerprint(config)}
    if datamodule is not None:
        labels = getattr(datamodule, "label_names", None) or None
        callbacks.append(RunRecord(config, datamodule.tokenizer.to_dict(), labels))
        fingerprints["tokenizer"] = distributed.fingerprint(datamodule.tokenizer.to_dict())
    callbacks.append(distributed.SameJobOnEveryRank(fingerprints))
    callbacks.extend(cluster.callbacks(cfg))
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None and "_target_" in c]
    plugins = cluster.trainer_plugins()
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **({"plugins": plugins} if plugins else {}))
    distributed.prepare_launch(trainer)
    return trainer


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`last` means this run dir's last checkpoint; any other value must be an existing file."""
    if cfg.get("ckpt_path") is None:
        return None
    path = run_dir(cfg) / "checkpoints" / "last.ckpt" if cfg.ckpt_path == "last" else Path(cfg.ckpt_path)
    if not path.is_file():
        hint = " (ckpt_path=last resumes in the run dir of the run to continue: add hydra.run.dir=<that dir>)" if cfg.ckpt_path == "last" else ""
        raise SeqlabError(f"checkpoint {path} does not exist{hint}")
    return str(path)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[name] = float(value)
    return out


@rank_zero_only
def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a reader never sees half a file, and a failed run leaves none."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@rank_zero_only
def write_resolved_config(cfg: DictConfig) -> None:
    """Hydra saves the config unresolved; the run dir keeps the values this run actually used."""
    hydra_dir = run_dir(cfg) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float] | None:
    """The value of `optimized_metric`; a list of names (multi-objective search) gives a list of values."""
    names = cfg.get("optimized_metric")
    if not names:
        return None
    values = []
    for name in [names] if isinstance(names, str) else list(names):
        if name not in metrics:
            raise SeqlabError(f"optimized_metric={name!r} was not produced by this run; it produced: {', '.join(sorted(metrics))}")
        values.append(metrics[name] if math.isfinite(metrics[name]) else float("nan"))
    return values[0] if isinstance(names, str) else values


def finish_wandb(failed: bool) -> None:
    """Lightning never ends the wandb run; without this, the next job of a multirun logs into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
