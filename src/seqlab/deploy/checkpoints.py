"""A trained task rebuilt from a seqlab checkpoint alone: its run record supplies the config, tokenizer and labels."""

from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.errors import SeqlabError

CLASSIFICATION = "classification"
LANGUAGE_MODEL = "language model"


@dataclass
class TrainedTask:
    task: pl.LightningModule  # in eval mode, on the CPU
    datamodule: pl.LightningDataModule  # restored (tokenizer, labels), not set up: no data is read
    config: DictConfig  # the run's config, with this command's `paths`
    record: dict[str, Any]
    kind: str


def checkpoint_kind(record: dict[str, Any]) -> str:
    """Classification runs record their label names; language-model runs have none."""
    return CLASSIFICATION if record.get("label_names") else LANGUAGE_MODEL


def require_kind(kind: str, needed: str, what: str, command: str) -> None:
    if kind != needed:
        described = {CLASSIFICATION: "a text classifier", LANGUAGE_MODEL: "a language model"}
        raise SeqlabError(f"{what} holds {described[kind]}, but {command} needs {described[needed]}")


def load_trained_task(ckpt_path: str, paths: DictConfig, needed_kind: str, command: str) -> TrainedTask:
    """The checkpoint's task with its trained weights, refused unless it is of `needed_kind`."""
    from seqlab import runs
    from seqlab.runs.record import RUN_RECORD_KEY, check_run_record, load_checkpoint

    checkpoint = load_checkpoint(ckpt_path)
    record = checkpoint[RUN_RECORD_KEY]
    check_run_record(record, ckpt_path)
    kind = checkpoint_kind(record)
    require_kind(kind, needed_kind, f"checkpoint {ckpt_path}", command)
    config = OmegaConf.create(record["config"])
    with open_dict(config):
        config.paths = paths  # the run's own data dir may not exist where this command runs
    datamodule = runs.restore_datamodule(config, record)
    task = runs.build_task(config, datamodule)
    task.load_state_dict(checkpoint["state_dict"])
    task.eval()
    return TrainedTask(task=task, datamodule=datamodule, config=config, record=record, kind=kind)


def token_limit(datamodule: pl.LightningDataModule, net: Any) -> int | None:
    """The most tokens a text may have: the data's `max_length` (what the model was trained on), or
    the model's own context (`max_len`, a GPT's `block_size`) when that is shorter."""
    limits = [getattr(datamodule, "max_length", None), getattr(net, "max_len", None)]
    for holder in (net, getattr(net, "backbone", None)):
        limits.append(getattr(getattr(holder, "config", None), "block_size", None))
    limits = [limit for limit in limits if limit]
    return min(limits) if limits else None
