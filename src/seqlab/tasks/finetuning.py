"""Classification fine-tuning: separate rates for head and backbone, layer-wise rate decay, frozen
parameters by name, and LoRA adapters, on top of the classification task.

Parameter names are those of the model (`task.net`): `head.weight`, `backbone.transformer.h.0...`.
Patterns are globs (`*` matches dots too).
"""

import logging
import re
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.lora import add_lora, is_lora_parameter, merge_lora
from seqlab.tasks.classification import SequenceClassificationTask
from seqlab.tasks.optim import build_optimizer

log = logging.getLogger(__name__)


def matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def layerwise_scales(
    names: Sequence[str], decay: float, layer_pattern: str, embedding_patterns: Sequence[str]
) -> dict[str, float]:
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
      base weights for export.
    """

    def __init__(
        self,
        model: Callable[..., nn.Module],
        num_classes: int,
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
        super().__init__(model, num_classes, optimizer, scheduler, binary_output, label_smoothing)
        self.head_patterns = list(head)
        names = [name for name, _ in self.net.named_parameters()]
        if not any(matches(name, self.head_patterns) for name in names):
            raise SeqlabError(f"task.head={self.head_patterns} matches no parameter of the model; its parameters start: {', '.join(names[:8])}")
        self.adapted: list[str] = []
        if lora:
            self.adapted = add_lora(self.net, **lora)
            names = [name for name, _ in self.net.named_parameters()]
        self.frozen = {
            name for name in names
            if matches(name, freeze) or (self.adapted and not is_lora_parameter(name) and not matches(name, self.head_patterns))
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

    def configure_optimizers(self) -> dict[str, Any]:
        # Parameters a schedule freezes for a while (FreezeBackbone) are in the optimiser from the
        # start, so unfreezing them needs no new group and the LR schedule covers them.
        optimizer = build_optimizer(
            self.optimizer_factory, self.net, lr_scale=self.lr_scale, include=lambda name, _: name not in self.frozen
        )
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total_steps = int(self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer, total_steps=total_steps)}

    def merge_adapters(self) -> nn.Module:
        """Fold the LoRA adapters into the base weights (in place) and return the plain model, for export."""
        merge_lora(self.net)
        self.adapted = []
        return self.net
