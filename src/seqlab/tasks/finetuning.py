"""Fine-tuning: the classification task with separate rates for head and backbone, layer-wise rate
decay, frozen parameters by name and LoRA adapters; and the start from a seqlab checkpoint (the
`finetune` config group), weights matched by name with a report of what loaded, and a callback that
freezes the backbone for the first epochs.

Parameter names are those of the model (`task.net`): `head.weight`, `backbone.transformer.h.0...`.
Patterns are globs (`*` matches dots too).
"""

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.utilities import rank_zero_only
from torch import nn

from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError
from seqlab.models.hf import HFClassifier
from seqlab.models.lora import add_lora, is_lora_parameter, merge_lora
from seqlab.runs.files import run_checkpoint
from seqlab.runs.record import SavedRun, read_run
from seqlab.tasks.classification import SequenceClassificationTask
from seqlab.tasks.optim import build_optimizer

log = logging.getLogger(__name__)

# A Hugging Face backbone's LoRA adapters in peft's format, in the run dir.
ADAPTER_DIR = "adapter"


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def layerwise_scales(names: Sequence[str], decay: float, layer_pattern: str, embedding_patterns: Sequence[str]) -> dict[str, float]:
    """Layer-wise rate decay over backbone parameter names: layer i of L gets decay^(L - i), embeddings
    (below layer 0) decay^(L + 1), and what follows the last layer (final norm, pooler) 1.

    A parameter's layer is the first number `layer_pattern` (a regular expression with one group)
    finds in its name: `transformer.h.3.attn` and `encoder.layer.3.attention` are both layer 3.
    """
    layers = {}
    for name in names:
        found = re.search(layer_pattern, name)
        layers[name] = int(found.group(1)) if found else None
    indices = [index for index in layers.values() if index is not None]
    if not indices:
        raise SeqlabError(f"layer_decay: layer_pattern {layer_pattern!r} finds no layer number in the backbone's parameter names")
    depth = max(indices) + 1
    scales = {}
    for name, index in layers.items():
        if index is not None:
            scales[name] = decay ** (depth - index)
        elif matches(name, embedding_patterns):
            scales[name] = decay ** (depth + 1)
        else:
            scales[name] = 1.0
    return scales


class FineTuningClassificationTask(SequenceClassificationTask):
    """Sequence classification with the controls fine-tuning needs.

    - `head`: patterns of the new head's parameters; every other parameter is the backbone.
    - `backbone_lr_scale`: the backbone's rate as a multiple of the optimiser's (the head's) rate.
    - `layer_decay`: layer-wise rate decay (e.g. 0.8): lower layers of the backbone learn slower.
    - `freeze`: patterns of parameters that never train.
    - `lora`: {rank, alpha, dropout, targets}: adapters on the linear layers whose module names
      match `targets`; then only adapters and head train. `merge_adapters()` folds them into the
      base weights for export. A Hugging Face backbone (`HFClassifier`) is adapted through peft,
      and its adapters are written in peft's format to `<run dir>/adapter` when fitting ends.
    """

    def __init__(
        self,
        model: Callable[..., nn.Module],
        dims: Mapping[str, Any],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., dict[str, Any]] | None = None,
        binary_output: str = "softmax",
        label_smoothing: float = 0.0,
        head: Sequence[str] = ("head.*",),
        backbone_lr_scale: float = 1.0,
        layer_decay: float | None = None,
        layer_pattern: str = r"\.(\d+)\.",
        embedding_patterns: Sequence[str] = ("*embed*", "*wte*", "*wpe*", "cls"),
        freeze: Sequence[str] = (),
        lora: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, dims, optimizer, scheduler, binary_output, label_smoothing)
        self.head_patterns = list(head)
        names = [name for name, _ in self.net.named_parameters()]
        if not any(matches(name, self.head_patterns) for name in names):
            raise SeqlabError(f"task.head={self.head_patterns} matches no parameter of the model; its parameters start: {', '.join(names[:8])}")
        self.adapted: list[str] = []
        if lora:
            self.adapted = self.net.add_lora(**lora) if isinstance(self.net, HFClassifier) else add_lora(self.net, **lora)
            names = [name for name, _ in self.net.named_parameters()]
        self.frozen = {
            name for name in names if matches(name, freeze) or (self.adapted and not is_lora_parameter(name) and not matches(name, self.head_patterns))
        }
        for name, parameter in self.net.named_parameters():
            parameter.requires_grad_(name not in self.frozen)
        backbone = [name for name in names if not matches(name, self.head_patterns)]
        self.lr_scales = dict.fromkeys(backbone, backbone_lr_scale)
        if layer_decay is not None:
            for name, scale in layerwise_scales(backbone, layer_decay, layer_pattern, embedding_patterns).items():
                self.lr_scales[name] *= scale
        log.info("%s", self.trainable_summary())

    def trainable_summary(self) -> str:
        total = sum(p.numel() for p in self.net.parameters())
        trainable = sum(p.numel() for name, p in self.net.named_parameters() if name not in self.frozen)
        adapters = f", LoRA on {len(self.adapted)} linear layers" if self.adapted else ""
        return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%){adapters}"

    def lr_scale(self, name: str) -> float:
        return self.lr_scales.get(name, 1.0)

    def create_optimizer(self) -> torch.optim.Optimizer:
        # Parameters a schedule freezes for a while (FreezeBackbone) are in the optimiser from the
        # start, so unfreezing them needs no new group and the LR schedule covers them.
        return build_optimizer(self.optimizer_factory, self.net, lr_scale=self.lr_scale, include=lambda name, _: name not in self.frozen)

    def merge_adapters(self) -> nn.Module:
        """Fold the LoRA adapters into the base weights (in place) and return the plain model, for export."""
        if isinstance(self.net, HFClassifier):
            self.net.merge_lora()
        else:
            merge_lora(self.net)
        self.adapted = []
        return self.net

    def on_fit_end(self) -> None:
        if self.adapted and isinstance(self.net, HFClassifier) and self.trainer.is_global_zero:
            self.net.save_adapters(Path(self.trainer.default_root_dir) / ADAPTER_DIR)


# -- from a pretrained seqlab checkpoint (the `finetune` config group) ---------------------------

REPORT_FILE = "finetune_keys.json"
# Where the fine-tuning data's tokenizer comes from: the pretraining run's checkpoint, or the data's own.
TOKENIZER_SOURCES = ("checkpoint", "data")


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
        return ", ".join(f"{len(getattr(self, name))} {name.replace('_', '-')}" for name in ("loaded", "missing", "unexpected", "shape_mismatched", "excluded"))


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
    source = {key[len(source_prefix) :]: value for key, value in state_dict.items() if key.startswith(source_prefix)}
    target = {key[len(target_prefix) :]: value for key, value in module.state_dict().items() if key.startswith(target_prefix)}
    selected = {key: value for key, value in source.items() if matches(key, include) and not matches(key, exclude)}
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


def read_pretrained_run(finetune: DictConfig) -> SavedRun | None:
    """The checkpoint `finetune.from_ckpt` names, read once: the data's tokenizer (with
    finetune.tokenizer=checkpoint) and the model's weights both come from this one read. None for
    `finetune.from_ckpt=null`: the same preset from scratch, the baseline a pretraining's gain is measured against."""
    if not OmegaConf.is_missing(finetune, "from_ckpt") and finetune.from_ckpt is None:
        log.info("finetune.from_ckpt=null: training from scratch, with no pretrained weights and the data's own tokenizer")
        return None
    if OmegaConf.is_missing(finetune, "from_ckpt") or not finetune.from_ckpt:
        raise SeqlabError(
            "fine-tuning needs finetune.from_ckpt=<checkpoint or run dir> (a pretraining run's dir: its best checkpoint; null trains the same model from scratch)"
        )
    if finetune.tokenizer not in TOKENIZER_SOURCES:
        raise SeqlabError(f"finetune.tokenizer={finetune.tokenizer!r}: use 'checkpoint' (the pretraining run's tokenizer) or 'data'")
    path = Path(str(finetune.from_ckpt))
    return read_run(run_checkpoint(path) if path.is_dir() else str(path), f"finetune.from_ckpt={finetune.from_ckpt}")


def check_vocabulary(tokenizer: TextTokenizer, pretrained: SavedRun) -> None:
    """Token ids only mean the same tokens under the same fitted tokenizer."""
    theirs = pretrained.tokenizer
    if type(tokenizer) is not type(theirs) or tokenizer.state() != theirs.state():
        raise SeqlabError(
            f"the vocabulary differs from the pretraining run's: the data's tokenizer is {type(tokenizer).__name__} with "
            f"{tokenizer.vocab_size} tokens, {pretrained.path} was trained with {type(theirs).__name__} with "
            f"{theirs.vocab_size}; fine-tune with finetune.tokenizer=checkpoint to tokenise with the pretraining run's tokenizer"
        )


def initialise_from_checkpoint(task: nn.Module, tokenizer: TextTokenizer, pretrained: SavedRun, finetune: DictConfig, run_dir: Path) -> LoadReport:
    """Load the pretrained weights into `task` as `finetune` says, write the key report to the run dir
    and log it; stop when the vocabulary differs or nothing matches."""
    check_vocabulary(tokenizer, pretrained)
    source_prefix, target_prefix = finetune.source_prefix, finetune.target_prefix
    report = load_matching(task, pretrained.state_dict, source_prefix, target_prefix, list(finetune.include), list(finetune.exclude))
    if not report.loaded:
        raise SeqlabError(
            f"no weights of {pretrained.path} match the model: checkpoint keys under {source_prefix!r} (e.g. "
            f"{', '.join((report.unexpected + list(report.shape_mismatched) + report.excluded)[:3]) or 'none'}) vs model keys under "
            f"{target_prefix!r} (e.g. {', '.join(report.missing[:3]) or 'none'}); set finetune.source_prefix/target_prefix/include"
        )
    if rank_zero_only.rank == 0:
        (run_dir / REPORT_FILE).write_text(json.dumps({"from_ckpt": pretrained.path, **asdict(report)}, indent=2) + "\n")
    log.info("finetune: from %s: %s (%s)", pretrained.path, report.summary(), run_dir / REPORT_FILE)
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
            name for name, parameter in pl_module.named_parameters() if parameter.requires_grad and not matches(name.removeprefix("net."), self.head)
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
