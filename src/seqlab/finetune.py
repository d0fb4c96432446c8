"""Fine-tuning from a seqlab checkpoint: weights matched by module name, a report of what loaded, and a
callback that freezes the backbone for the first epochs.

The `finetune` config node drives it (null: train from scratch):

    finetune:
      from_ckpt: <a checkpoint written by seqlab-train, e.g. a pretrain_gpt run's best>
      source_prefix: net.           # the part of the checkpoint's keys to take (the pretrained model)
      target_prefix: net.backbone.  # where it goes in this run's task
      include: ["*"]                # glob patterns on the names below the prefixes
      exclude: []
      tokenizer: checkpoint         # or "data": keep the data's tokenizer (must be the same vocabulary)
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn

from seqlab.runs.record import RUN_RECORD_KEY, check_run_record
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

REPORT_FILE = "finetune_keys.json"


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


@dataclass
class LoadReport:
    """Key names below the prefixes. `loaded`: copied; `missing`: the model's keys the (included)
    checkpoint has no value for; `unexpected`: included checkpoint keys the model lacks;
    `shape_mismatched`: in both with different shapes (not copied); `excluded`: left out by the patterns."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatched: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return ", ".join(
            f"{len(getattr(self, name))} {name.replace('_', '-')}"
            for name in ("loaded", "missing", "unexpected", "shape_mismatched", "excluded")
        )


def load_matching(
    module: nn.Module,
    state_dict: dict[str, torch.Tensor],
    source_prefix: str = "",
    target_prefix: str = "",
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
) -> LoadReport:
    """Copy the checkpoint tensors whose names (after `source_prefix`) equal the module's state names
    (after `target_prefix`), pass `include` and not `exclude`, and have the module's shape."""
    source = {key[len(source_prefix):]: value for key, value in state_dict.items() if key.startswith(source_prefix)}
    target = {key[len(target_prefix):]: value for key, value in module.state_dict().items() if key.startswith(target_prefix)}
    selected = {key: value for key, value in source.items() if _matches(key, include) and not _matches(key, exclude)}
    report = LoadReport(excluded=sorted(set(source) - set(selected)), unexpected=sorted(set(selected) - set(target)))
    copied = {}
    for key in sorted(set(selected) & set(target)):
        if selected[key].shape == target[key].shape:
            copied[target_prefix + key] = selected[key]
            report.loaded.append(key)
        else:
            report.shape_mismatched[key] = {"checkpoint": list(selected[key].shape), "model": list(target[key].shape)}
    report.missing = sorted(set(target) - set(selected))
    module.load_state_dict(copied, strict=False)
    return report


def read_checkpoint(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise SeqlabError(f"finetune.from_ckpt={path}: no such file (pass a checkpoint written by seqlab-train)")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if RUN_RECORD_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise SeqlabError(f"finetune.from_ckpt={path} is not a seqlab checkpoint (no run record); pass one written by seqlab-train")
    check_run_record(checkpoint[RUN_RECORD_KEY], path)
    return checkpoint


def check_vocabulary(tokenizer: Any, pretrained: dict[str, Any], ckpt_path: str) -> None:
    """Token ids only mean the same tokens under the same fitted tokenizer."""
    from seqlab.data.tokenizers import saved_tokenizer_class, tokenizer_from_dict

    if type(tokenizer) is not saved_tokenizer_class(pretrained, ckpt_path) or tokenizer.state() != pretrained["state"]:
        theirs = tokenizer_from_dict(pretrained, ckpt_path)
        raise SeqlabError(
            f"the vocabulary differs from the pretraining run's: the data's tokenizer is {type(tokenizer).__name__} with "
            f"{tokenizer.vocab_size} tokens, {ckpt_path} was trained with {type(theirs).__name__} with "
            f"{theirs.vocab_size}; fine-tune with finetune.tokenizer=checkpoint to tokenise with the pretraining run's tokenizer"
        )


def checkpoint_tokenizer(finetune: Any) -> dict[str, Any] | None:
    """The pretraining run's tokenizer, when the fine-tuning data should use it (finetune.tokenizer=checkpoint)."""
    if not finetune:
        return None
    if not finetune.get("from_ckpt"):
        raise SeqlabError("fine-tuning needs finetune.from_ckpt=<checkpoint> (a pretraining run's metrics.json names its best)")
    mode = finetune.get("tokenizer", "checkpoint")
    if mode not in ("checkpoint", "data"):
        raise SeqlabError(f"finetune.tokenizer={mode!r}: use 'checkpoint' (the pretraining run's tokenizer) or 'data'")
    record = read_checkpoint(finetune.from_ckpt)[RUN_RECORD_KEY]
    return record["tokenizer"] if mode == "checkpoint" else None


def initialise_from_checkpoint(task: nn.Module, tokenizer: Any, finetune: Any, run_dir: Path) -> LoadReport:
    """Load the pretrained weights `finetune` names into `task`, write the key report to the run dir and
    log it; stop when the vocabulary differs or nothing matches."""
    path = str(finetune.from_ckpt)
    checkpoint = read_checkpoint(path)
    check_vocabulary(tokenizer, checkpoint[RUN_RECORD_KEY]["tokenizer"], path)
    source_prefix = finetune.get("source_prefix", "net.")
    target_prefix = finetune.get("target_prefix", "net.backbone.")
    report = load_matching(
        task,
        checkpoint["state_dict"],
        source_prefix,
        target_prefix,
        list(finetune.get("include") or ["*"]),
        list(finetune.get("exclude") or []),
    )
    if not report.loaded:
        raise SeqlabError(
            f"no weights of {path} match the model: checkpoint keys under {source_prefix!r} (e.g. "
            f"{', '.join((report.unexpected + list(report.shape_mismatched) + report.excluded)[:3]) or 'none'}) vs model keys under "
            f"{target_prefix!r} (e.g. {', '.join(report.missing[:3]) or 'none'}); set finetune.source_prefix/target_prefix/include"
        )
    if pl.utilities.rank_zero_only.rank == 0:
        (run_dir / REPORT_FILE).write_text(json.dumps({"from_ckpt": path, **asdict(report)}, indent=2) + "\n")
    log.info("finetune: from %s: %s (%s)", path, report.summary(), run_dir / REPORT_FILE)
    for kind in ("missing", "unexpected", "shape_mismatched"):
        if getattr(report, kind):
            log.info("finetune: %s: %s", kind.replace("_", "-"), ", ".join(list(getattr(report, kind))[:20]))
    return report


class FreezeBackbone(BaseFinetuning):
    """Freeze every trainable parameter of the model except the head's for the first `epochs` epochs,
    then train them too (Lightning's BaseFinetuning runs the schedule and restores it on resume).

    With task=finetune_classification the backbone is in the optimiser from the start, at
    `task.backbone_lr_scale` times the head's rate, so after unfreezing it learns at that lower rate
    under the same schedule; with another task its parameters join as a new group at
    `lr_scale` times the head's current rate.
    """

    def __init__(self, epochs: int = 1, head: Sequence[str] = ("head.*",), lr_scale: float = 0.1) -> None:
        super().__init__()
        self.epochs = epochs
        self.head = list(head)
        self.lr_scale = lr_scale
        self.frozen_names: list[str] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # validating or testing afterwards changes nothing
            super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        if self.epochs <= 0:
            return
        self.frozen_names = [
            name for name, parameter in pl_module.named_parameters() if parameter.requires_grad and not _matches(name.removeprefix("net."), self.head)
        ]
        if not self.frozen_names:
            raise SeqlabError(f"FreezeBackbone: every trainable parameter matches head={self.head}; nothing to freeze")
        parameters = dict(pl_module.named_parameters())
        for name in self.frozen_names:
            parameters[name].requires_grad_(False)
        log.info("finetune: backbone frozen (%d tensors) until epoch %d", len(self.frozen_names), self.epochs)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if not self.frozen_names or epoch < self.epochs:
            return
        parameters = dict(pl_module.named_parameters())
        unfrozen = [parameters[name] for name in self.frozen_names]
        for parameter in unfrozen:
            parameter.requires_grad_(True)
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        joining = [p for p in unfrozen if id(p) not in in_optimizer]
        if joining:
            optimizer.add_param_group({"params": joining, "lr": optimizer.param_groups[0]["lr"] * self.lr_scale})
        log.info("finetune: backbone unfrozen at epoch %d", epoch)
        self.frozen_names = []
