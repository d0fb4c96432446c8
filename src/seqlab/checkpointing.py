"""What a seqlab checkpoint carries besides weights: the run's config, tokenizer and labels, and RNG states.

Everything is stored as plain containers and tensors, so checkpoints load with
`torch.load(weights_only=True)`.
"""

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

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
