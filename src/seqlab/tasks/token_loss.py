"""A stage's token-weighted loss over an epoch, summed where the loss is.

torchmetrics' `MeanMetric.update` checks each value for NaN, which reads it back from the device:
on a GPU, a wait for every step to finish; on a small CPU model, about 0.1 ms a step. The
language-model and translation tasks add each step's loss here instead (two tensor additions,
nothing read back) and hand the epoch's sum to their `MeanMetric` once, just before computing it,
so the metric still averages over processes under DDP. A step whose loss is NaN makes the epoch's
loss NaN, where `MeanMetric` would drop that step with a warning.
"""

import torch
from torchmetrics import MeanMetric


class TokenLossSum:
    """Sum of loss x tokens and of tokens since the last `flush_into`."""

    def __init__(self) -> None:
        self.weighted: torch.Tensor | None = None
        self.tokens: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, tokens: torch.Tensor) -> None:
        """One step's mean loss per token, over `tokens` tokens."""
        weighted = loss.detach().float() * tokens
        if self.weighted is None:
            self.weighted, self.tokens = weighted, tokens.clone()
        else:
            self.weighted = self.weighted + weighted
            self.tokens = self.tokens + tokens

    def flush_into(self, metric: MeanMetric) -> None:
        """Update `metric` as the steps added since the last flush would have, one by one; start over."""
        if self.weighted is not None:
            metric.update(self.weighted / self.tokens.clamp(min=1), weight=self.tokens)
        self.weighted = self.tokens = None
