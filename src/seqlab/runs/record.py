"""What a seqlab checkpoint carries besides weights: the run's config, tokenizer and labels, and RNG states.

Everything is stored as plain containers and tensors, so checkpoints load with
`torch.load(weights_only=True)`.
"""

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

RUN_RECORD_KEY = "seqlab"


class RunRecord(pl.Callback):
    """Stores the run's config (unresolved), fitted tokenizer and label names in every checkpoint,
    so a checkpoint alone rebuilds its data pipeline and model."""

    def __init__(self, config: dict[str, Any], tokenizer: dict[str, Any], label_names: list[str] | None) -> None:
        self.record = {"config": config, "tokenizer": tokenizer, "label_names": label_names}

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


def read_run_record(ckpt_path: str) -> dict[str, Any]:
    return load_checkpoint(ckpt_path)[RUN_RECORD_KEY]


def load_checkpoint(ckpt_path: str) -> dict[str, Any]:
    """A seqlab checkpoint on the CPU, weights and run record; anything else is refused in one line."""
    from seqlab.errors import SeqlabError

    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load fails on other files with many kinds of error (even KeyError)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SeqlabError(f"{ckpt_path} is not a readable checkpoint ({type(error).__name__}: {first_line})") from None
    if not isinstance(checkpoint, dict) or RUN_RECORD_KEY not in checkpoint:
        raise SeqlabError(f"{ckpt_path} is not a seqlab checkpoint (it has no run record); pass a checkpoint written by seqlab-train")
    return checkpoint


def training_progress(ckpt_path: str) -> tuple[int, int] | None:
    """The epochs a checkpoint has trained and its global step, counted as Lightning counts them when
    it decides whether a resumed fit has anything left to train; None for a checkpoint without
    training state (weights only)."""
    checkpoint = load_checkpoint(ckpt_path)
    if "loops" not in checkpoint:
        return None
    return checkpoint["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"], checkpoint["global_step"]


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
    from seqlab.errors import SeqlabError

    saved, expected = checkpoint.get("state_dict"), task.state_dict()
    if saved is None or (saved.keys() == expected.keys() and all(saved[name].shape == expected[name].shape for name in expected)):
        return
    recorded = ((checkpoint.get(RUN_RECORD_KEY) or {}).get("config") or {}).get("model") or {}
    settings = " ".join(f"model.{key}={value}" for key, value in recorded.items() if key != "compile")
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


def check_run_record(record: Any, source: str) -> None:
    """Refuse, in one line naming `source`, a run record that seqlab's own tables would not build: a
    config naming other code, or a tokenizer that is not one of seqlab's. A checkpoint is data from
    whoever wrote it; call this before anything of its record is built."""
    from seqlab.data.tokenizers import saved_tokenizer_class
    from seqlab.errors import SeqlabError
    from seqlab.runs.recorded_config import check_recorded_config

    if not isinstance(record, dict):
        raise SeqlabError(f"{source}: the run record is damaged; pass a checkpoint written by seqlab-train")
    check_recorded_config(record.get("config"), source)
    saved_tokenizer_class(record.get("tokenizer"), source)
