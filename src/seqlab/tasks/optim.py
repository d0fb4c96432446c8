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

NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.BatchNorm1d)


def parameter_groups(module: nn.Module) -> list[dict[str, Any]]:
    """Weights decay; biases, norms and embeddings don't (a tied embedding counts as an embedding)."""
    no_decay: dict[int, nn.Parameter] = {}
    for submodule in module.modules():
        for parameter in submodule.parameters(recurse=False):
            if isinstance(submodule, NO_DECAY_MODULES) or parameter.ndim < 2:
                no_decay[id(parameter)] = parameter
    trainable = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in trainable if id(p) not in no_decay]
    rest = [p for p in trainable if id(p) in no_decay]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], module: nn.Module) -> torch.optim.Optimizer:
    """Complete a partial optimiser; AdamW/Adam use the fused kernel where the device has one."""
    groups = parameter_groups(module)
    target = factory.func if isinstance(factory, functools.partial) else factory
    keywords = factory.keywords if isinstance(factory, functools.partial) else {}
    if target in (torch.optim.AdamW, torch.optim.Adam) and "fused" not in keywords and "foreach" not in keywords:
        devices = {p.device.type for group in groups for p in group["params"]}
        if devices <= {"cpu", "cuda"}:
            return factory(groups, fused=True)
    return factory(groups)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.1
) -> dict[str, Any]:
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
