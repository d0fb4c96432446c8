"""Optimiser parameter groups and learning-rate schedules, completed by tasks in `configure_optimizers`.

Configs name these functions with `_partial_: true`; the task supplies the optimiser and the
number of optimiser steps the trainer will take.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from seqlab.errors import SeqlabError

NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d)


def parameter_groups(
    module: nn.Module,
    lr_scale: Callable[[str], float] | None = None,
    base_lr: float | None = None,
    include: Callable[[str, nn.Parameter], bool] | None = None,
    decay_embeddings: bool = False,
) -> list[dict[str, Any]]:
    """Weights decay; biases, norms and embeddings don't (a tied embedding counts as an embedding).

    With `decay_embeddings`, embeddings decay too: every matrix does, as nanoGPT and GPT-2 train.

    `include(name, parameter)` picks the parameters to optimise (default: those that require
    grad). `lr_scale(name)` gives a parameter's rate as a multiple of `base_lr`; parameters are
    then grouped by decay and scale, each group with its own "lr" (and "lr_scale", for logs).
    """
    exempt = tuple(kind for kind in NO_DECAY_MODULES if not (decay_embeddings and kind is nn.Embedding))
    no_decay: dict[int, nn.Parameter] = {}
    for submodule in module.modules():
        for parameter in submodule.parameters(recurse=False):
            if isinstance(submodule, exempt) or parameter.ndim < 2:
                no_decay[id(parameter)] = parameter
    include = include or (lambda name, parameter: parameter.requires_grad)
    # Without scales there are always two groups, decaying and not (either may be empty).
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {} if lr_scale else {(True, 1.0): [], (False, 1.0): []}
    for name, parameter in module.named_parameters():
        if include(name, parameter):
            scale = lr_scale(name) if lr_scale else 1.0
            groups.setdefault((id(parameter) not in no_decay, scale), []).append(parameter)
    if lr_scale and base_lr is None:
        raise ValueError("parameter_groups needs base_lr to scale learning rates")
    out = []
    for (decays, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], -item[0][1])):
        group: dict[str, Any] = {"params": params} if decays else {"params": params, "weight_decay": 0.0}
        if lr_scale:
            group.update(lr=base_lr * scale, lr_scale=scale)
        out.append(group)
    return out


def build_optimizer(
    factory: Callable[..., torch.optim.Optimizer],
    module: nn.Module,
    lr_scale: Callable[[str], float] | None = None,
    include: Callable[[str, nn.Parameter], bool] | None = None,
    decay_embeddings: bool = False,
) -> torch.optim.Optimizer:
    """Complete a partial optimiser; AdamW/Adam use the fused kernel where the device has one.

    `lr_scale`, `include` and `decay_embeddings` are as in `parameter_groups`; the base rate is the optimiser's `lr`.
    """
    target = factory.func if isinstance(factory, functools.partial) else factory
    keywords = factory.keywords if isinstance(factory, functools.partial) else {}
    groups = parameter_groups(module, lr_scale, keywords.get("lr"), include, decay_embeddings)
    options = {}
    if target in (torch.optim.AdamW, torch.optim.Adam) and "fused" not in keywords and "foreach" not in keywords:
        devices = {p.device.type for group in groups for p in group["params"]}
        if devices <= {"cpu", "cuda"}:
            options["fused"] = True
    try:
        return factory(groups, **options)
    except ValueError as error:  # torch's check of lr, betas, eps, momentum, weight_decay
        settings = ", ".join(f"optimizer.{key}={value}" for key, value in keywords.items())
        raise SeqlabError(f"{getattr(target, '__name__', target)} refuses its settings: {error} ({settings})") from None


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1) -> dict[str, Any]:
    """Linear warm-up from 0, then cosine decay to `min_lr_ratio` times the base rate at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}


def constant(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> dict[str, Any]:
    """The base rate throughout, after an optional linear warm-up."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup_steps + 1)))
    return {"scheduler": scheduler, "interval": "step"}


def reduce_on_plateau(
    optimizer: torch.optim.Optimizer, total_steps: int, monitor: str, mode: str = "min", factor: float = 0.5, patience: int = 1
) -> dict[str, Any]:
    """Cut the rate by `factor` when `monitor` stops improving for `patience` validations."""
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience)
    return {"scheduler": scheduler, "monitor": monitor, "interval": "epoch"}
