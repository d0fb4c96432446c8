"""Low-rank adapters (LoRA, Hu et al. 2021) on chosen linear layers, and merging them into the base weights.

`LoRALinear` is an `nn.Linear` with two extra matrices, so the base weights keep their names
(`...qkv.weight`): a pretrained checkpoint loads into a model with adapters as into one without,
and merging gives back a plain `nn.Linear` with W + (alpha / rank) B A.
"""

import math
from collections.abc import Sequence
from fnmatch import fnmatchcase

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.errors import SeqlabError


class LoRALinear(nn.Linear):
    """y = x W^T + b + (alpha / rank) * dropout(x) A^T B^T, with A (rank, in) random and B (out, rank) zero,
    so a freshly adapted layer computes exactly what the base layer did."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device=base.weight.device, dtype=base.weight.dtype)
        self.weight = base.weight
        self.bias = base.bias
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def merged(self) -> nn.Linear:
        """A plain linear layer computing the same function (in eval mode)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.weight + self.scaling * (self.lora_B @ self.lora_A))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if linear.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}"


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def add_lora(model: nn.Module, targets: Sequence[str], rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> list[str]:
    """Replace every `nn.Linear` whose module name matches one of the `targets` glob patterns
    (`*.c_attn`, `backbone.*.query`) with a `LoRALinear`; return the adapted names."""
    chosen = [name for name, module in model.named_modules() if type(module) is nn.Linear and any(fnmatchcase(name, target) for target in targets)]
    if not chosen:
        linears = [name for name, module in model.named_modules() if type(module) is nn.Linear]
        raise SeqlabError(f"LoRA targets {list(targets)} match no linear layer; the model's linear layers are: {', '.join(linears[:12])}")
    for name in chosen:
        _replace(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout))
    return chosen


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, in place: the model then holds plain `nn.Linear`s only."""
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    for name in adapted:
        _replace(model, name, model.get_submodule(name).merged())
    return model


def is_lora_parameter(name: str) -> bool:
    """An adapter matrix: `LoRALinear`'s `...qkv.lora_A`, or peft's `...query.lora_A.default.weight`."""
    return any(part in ("lora_A", "lora_B") for part in name.split("."))
