"""A trained task rebuilt from a checkpoint that `read_run` read: for seqlab-eval, and for the commands
that use a model without its data (seqlab-predict, -export, -generate).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from seqlab.errors import SeqlabError
from seqlab.runs.build import build_task, restore_datamodule
from seqlab.runs.record import RUN_RECORD_KEY, SavedRun, check_checkpoint_fits, read_run

CLASSIFICATION = "classification"
LANGUAGE_MODEL = "language model"


@dataclass
class TrainedTask:
    task: pl.LightningModule  # in eval mode, on the CPU
    datamodule: pl.LightningDataModule  # restored (tokenizer, labels), not set up: no data is read
    config: DictConfig  # the run's config, with this command's `paths`
    kind: str


def load_weights(task: pl.LightningModule, saved: SavedRun) -> None:
    """Load the saved weights into `task`; a task of another model is refused in one line, as Lightning
    refuses it through the task's `on_load_checkpoint` when a run resumes."""
    check_checkpoint_fits(task, {"state_dict": saved.state_dict, RUN_RECORD_KEY: {"config": saved.config}}, saved.path)
    task.load_state_dict(saved.state_dict)


def checkpoint_kind(saved: SavedRun) -> str:
    """Classification runs record their label names; language-model runs have none."""
    return CLASSIFICATION if saved.label_names else LANGUAGE_MODEL


def require_kind(kind: str, needed: str, what: str, command: str) -> None:
    if kind != needed:
        described = {CLASSIFICATION: "a text classifier", LANGUAGE_MODEL: "a language model"}
        raise SeqlabError(f"{what} holds {described[kind]}, but {command} needs {described[needed]}")


def check_same_labels(members: list[tuple[str, list[str]]]) -> None:
    """Refuse members (name, label names) whose label sets differ: an ensemble averages the probability
    of each label over its members. The same labels in another output order are fine."""
    first_name, first_labels = members[0]
    for name, labels in members[1:]:
        if set(labels) != set(first_labels):
            raise SeqlabError(
                f"{first_name} and {name} have different labels ({', '.join(first_labels)} vs {', '.join(labels)}): "
                "an ensemble averages the probabilities of the same labels, so its members must share them"
            )


def load_trained_task(ckpt_path: str, paths: DictConfig, needed_kind: str, command: str, trusted_packages: Iterable[str] = ()) -> TrainedTask:
    """The checkpoint's task with its trained weights, refused unless it is of `needed_kind`."""
    return trained_task_from_run(read_run(ckpt_path, trusted_packages=trusted_packages), ckpt_path, paths, needed_kind, command)


def trained_task_from_run(saved: SavedRun, ckpt_path: str, paths: DictConfig, needed_kind: str, command: str) -> TrainedTask:
    """`load_trained_task` for a checkpoint `read_run` has already read."""
    config, tokenizer = OmegaConf.create(saved.config), saved.tokenizer  # the record checked first
    kind = checkpoint_kind(saved)
    require_kind(kind, needed_kind, f"checkpoint {ckpt_path}", command)
    with open_dict(config):
        config.paths = paths  # the run's own data dir may not exist where this command runs
    datamodule = restore_datamodule(config, tokenizer, saved.label_names)
    task = build_task(config, datamodule)
    load_weights(task, saved)
    task.eval()
    return TrainedTask(task=task, datamodule=datamodule, config=config, kind=kind)


def token_limit(datamodule: pl.LightningDataModule, net: Any) -> int | None:
    """The most tokens a text may have: the data's `max_length` (what the model was trained on), or
    the model's own context (`max_len`, a GPT's `block_size`) when that is shorter."""
    limits = [getattr(datamodule, "max_length", None), getattr(net, "max_len", None)]
    for holder in (net, getattr(net, "backbone", None)):
        limits.append(getattr(getattr(holder, "config", None), "block_size", None))
    limits = [limit for limit in limits if limit]
    return min(limits) if limits else None
