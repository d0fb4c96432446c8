"""The epoch's token-weighted loss the language-model and translation tasks report: summed step by
step on the device, handed to torchmetrics once, the same mean as updating it at every step."""

import torch
from torchmetrics import MeanMetric

from seqlab.tasks.token_loss import TokenLossSum


def test_a_flushed_sum_gives_the_mean_that_updating_the_metric_at_every_step_gives():
    steps = [(torch.tensor(2.0, requires_grad=True), torch.tensor(3)), (torch.tensor(4.0), torch.tensor(1)), (torch.tensor(0.5), torch.tensor(4))]
    every_step, summed = MeanMetric(), MeanMetric()
    sums = TokenLossSum()
    for loss, tokens in steps:
        every_step.update(loss.detach(), weight=tokens)
        sums.add(loss, tokens)
    sums.flush_into(summed)
    assert torch.isclose(summed.compute(), every_step.compute())
    assert torch.isclose(summed.compute(), torch.tensor((2.0 * 3 + 4.0 + 0.5 * 4) / 8))


def test_a_flush_starts_the_sum_over_and_an_empty_one_updates_nothing():
    sums, metric = TokenLossSum(), MeanMetric()
    sums.add(torch.tensor(1.0), torch.tensor(2))
    sums.flush_into(metric)
    sums.flush_into(metric)
    assert metric.update_count == 1
    sums.add(torch.tensor(3.0), torch.tensor(2))
    sums.flush_into(metric)
    assert torch.isclose(metric.compute(), torch.tensor(2.0))
