"""What a seqlab checkpoint carries besides weights: the run's config, tokenizer and labels, and RNG
states; and `read_run`, the one reader of a checkpoint for every command that uses one.

Everything is stored as plain containers and tensors, so checkpoints load with
`torch.load(weights_only=True)`.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from seqlab.data.tokenizers import TextTokenizer, tokenizer_from_dict
from seqlab.errors import SeqlabError
from seqlab.runs.legacy import upgrade_recorded_config
from seqlab.runs.recorded_config import check_recorded_config

RUN_RECORD_KEY = "seqlab"


class RunRecord(pl.Callback):
    """Stores the run's config (unresolved), fitted tokenizer (and a translation target side's own,
    `target_tokenizer`) and label names in every checkpoint, so a checkpoint alone rebuilds its data
    pipeline and model."""

    def __init__(
        self, config: dict[str, Any], tokenizer: dict[str, Any], label_names: list[str] | None, target_tokenizer: dict[str, Any] | None = None
    ) -> None:
        self.record = {"config": config, "tokenizer": tokenizer, "label_names": label_names}
        if target_tokenizer is not None:
            self.record["target_tokenizer"] = target_tokenizer

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_RECORD_KEY] = self.record


class RNGStateCheckpoint(pl.Callback):
    """Saves Python, NumPy and torch RNG states and restores them on resume, so a resumed run draws
    the same shuffles and dropout masks as an uninterrupted one."""

    def state_dict(self) -> dict[str, Any]:
        version, numpy_keys, numpy_pos, has_gauss, cached_gauss = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(numpy_keys.astype(np.int64)), "pos": numpy_pos, "has_gauss": has_gauss, "cached_gauss": cached_gauss},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy = state_dict["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gauss"]))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


@dataclass(frozen=True)
class TrainingProgress:
    """How far a checkpoint's run trained, counted as Lightning counts when it decides whether a
    resumed fit has anything left to train."""

    epochs: int
    global_step: int


@dataclass(frozen=True)
class SavedRun:
    """A seqlab checkpoint as `read_run` returns it: its weights, how far it trained, and the run
    record that rebuilds its run.

    A checkpoint is data from whoever wrote it: the record's config and tokenizer are checked when
    first used, before anything of them is built, and refused in one line naming `source`. Resuming
    a run uses neither (its own config rebuilds it), so a run with callbacks of its own resumes.
    """

    path: str
    source: str  # how errors name the checkpoint: its path, or the setting that named it
    record: dict[str, Any] = field(repr=False)  # as written, unchecked: read it through the properties
    state_dict: dict[str, torch.Tensor] = field(repr=False)  # the task's weights, on the CPU
    progress: TrainingProgress | None  # None for a checkpoint saved without training state
    trusted_packages: tuple[str, ...] = ()  # the loading user's `trusted_packages`, which the config may name

    @cached_property
    def config(self) -> dict[str, Any]:
        """The run's config, unresolved, in today's names (runs.legacy), refused unless it names only
        seqlab's classes and safe resolvers (`check_recorded_config`)."""
        config = self.record.get("config")
        if isinstance(config, dict):
            config = upgrade_recorded_config(config)
        check_recorded_config(config, self.source, self.trusted_packages)  # also refuses a config that is not a mapping
        return config

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        """The run's fitted tokenizer, built through seqlab's own table of tokenizers."""
        return tokenizer_from_dict(self.record.get("tokenizer"), self.source)

    @cached_property
    def target_tokenizer(self) -> TextTokenizer | None:
        """A translation run's target-side tokenizer when it has its own (`data.separate_tokenizers`);
        None when one tokenizer serves both sides, as in every run before there was a choice."""
        if "target_tokenizer" not in self.record:
            return None
        return tokenizer_from_dict(self.record["target_tokenizer"], f"{self.source} (target tokenizer)")

    @property
    def label_names(self) -> list[str] | None:
        """A classifier's labels in output order; None for a language model."""
        names = self.record.get("label_names")
        return list(names) if names else None


def read_run(path: str, source: str | None = None, trusted_packages: Iterable[str] = ()) -> SavedRun:
    """The seqlab checkpoint at `path`, read once; `source` names it in errors (default: the path);
    its config may name classes of the user's `trusted_packages` besides seqlab's. No file, a file
    that is not a checkpoint, or a checkpoint without a run record is refused in one line."""
    source = source or str(path)
    if not Path(path).is_file():
        raise SeqlabError(f"{source}: no such file (pass a checkpoint written by seqlab-train)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails on other files with many kinds of error (even KeyError)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SeqlabError(f"{source} is not a readable checkpoint ({type(error).__name__}: {first_line})") from None
    if not isinstance(checkpoint, dict) or RUN_RECORD_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise SeqlabError(f"{source} is not a seqlab checkpoint (it has no run record); pass a checkpoint written by seqlab-train")
    if not isinstance(checkpoint[RUN_RECORD_KEY], dict):
        raise SeqlabError(f"{source}: the run record is damaged; pass a checkpoint written by seqlab-train")
    progress = None
    if "loops" in checkpoint:
        progress = TrainingProgress(checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"], checkpoint["global_step"])
    return SavedRun(str(path), source, checkpoint[RUN_RECORD_KEY], checkpoint["state_dict"], progress, tuple(trusted_packages))


class RelocatedRunDir(pl.Callback):
    """Resolves the paths ModelCheckpoint keeps in a checkpoint (its dir, best, last and top-k files)
    against the dir the checkpoint is resumed from, so a run dir moved or copied resumes as its own.

    Lightning restores those paths only while the checkpoint dir is where it was; elsewhere it keeps
    `best_model_path` alone, still naming the old dir, and the resumed run forgets which checkpoint
    was best (saving a second "best" and leaving the first) and writes last-v1.ckpt beside last.ckpt.
    A checkpoint resumed from outside this run's checkpoint dir (a run continued in a new run dir)
    is left to Lightning.
    """

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.ckpt_path is None:
            return
        resumed_from = Path(trainer.ckpt_path).resolve().parent
        states = checkpoint.get("callbacks") or {}
        for callback in trainer.checkpoint_callbacks:
            state = states.get(callback.state_key)
            if not isinstance(callback, ModelCheckpoint) or not state or callback.dirpath is None:
                continue
            if Path(callback.dirpath).resolve() == resumed_from and state.get("dirpath") not in (None, callback.dirpath):
                states[callback.state_key] = moved_checkpoint_state(state, Path(state["dirpath"]), str(callback.dirpath))


def moved_checkpoint_state(state: dict[str, Any], old_dir: Path, new_dir: str) -> dict[str, Any]:
    """ModelCheckpoint's state with every path inside `old_dir` moved to the same place inside `new_dir`."""

    def moved(path: str) -> str:
        if not path or not Path(path).is_relative_to(old_dir):
            return path
        return str(Path(new_dir) / Path(path).relative_to(old_dir))

    return {
        **state,
        "dirpath": new_dir,
        **{key: moved(state[key]) for key in ("best_model_path", "kth_best_model_path", "last_model_path") if key in state},
        "best_k_models": {moved(path): score for path, score in state.get("best_k_models", {}).items()},
    }


def check_checkpoint_fits(task: pl.LightningModule, checkpoint: dict[str, Any], ckpt_path: str | None) -> None:
    """Refuse a checkpoint whose weights do not fit the task's model in one line naming the model it
    holds, before Lightning's strict load fails listing every missing and unexpected weight. Tasks
    call this from `on_load_checkpoint`, when a run resumes from or evaluates a checkpoint."""
    saved, expected = checkpoint.get("state_dict"), task.state_dict()
    if saved is None or (saved.keys() == expected.keys() and all(saved[name].shape == expected[name].shape for name in expected)):
        return
    recorded = upgrade_recorded_config((checkpoint.get(RUN_RECORD_KEY) or {}).get("config") or {}).get("model") or {}
    settings = " ".join(f"model.{key}={value}" for key, value in recorded.items())
    built = f"{type(task.net).__module__}.{type(task.net).__qualname__}"
    raise SeqlabError(
        f"{ckpt_path or 'the checkpoint'} holds another model{f' ({settings})' if settings else ''} than this run builds "
        f"({built}; {_first_mismatch(saved, expected)}): "
        "drop the model overrides to use the checkpoint's model, or pass a checkpoint of the model asked for"
    )


def _first_mismatch(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    for name in expected:
        if name not in saved:
            return f"the checkpoint lacks {name}"
        if saved[name].shape != expected[name].shape:
            return f"{name} is {list(saved[name].shape)} in the checkpoint and {list(expected[name].shape)} here"
    return f"the checkpoint has {next(name for name in saved if name not in expected)}, which this model lacks"
