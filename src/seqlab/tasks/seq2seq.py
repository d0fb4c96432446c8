"""Sequence-to-sequence (translation): teacher-forced cross-entropy with label smoothing, loss and
perplexity per token, and BLEU and chrF (sacreBLEU) of decoded, detokenised translations against the
target texts, with a few translations in the log after every validation."""

import logging
from collections.abc import Callable, Mapping
from typing import Any

import sacrebleu
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from seqlab.data.language_modeling import IGNORE_INDEX
from seqlab.data.parallel_text import decode_target
from seqlab.data.tokenizers import TextTokenizer
from seqlab.tasks.base import STAGES, Task
from seqlab.tasks.step_logging import logs_this_step
from seqlab.tasks.token_loss import TokenLossSum

log = logging.getLogger(__name__)


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """sacreBLEU's corpus BLEU (13a tokenisation) and chrF of detokenised `hypotheses`, one reference each."""
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
    }


class Seq2SeqTask(Task):
    """Wraps an encoder-decoder built by `model(**dims)` (`vocab_size`, `pad_id`, `bos_id`, `eos_id`, and
    `source_vocab_size`, `source_pad_id` when the source side has a tokenizer of its own); `tokenizer`
    is the target side's, which turns generated ids into text.

    Training minimises cross-entropy with `label_smoothing`, padding ignored; `loss` and `ppl` (its
    exponential) are reported without smoothing, averaged over target tokens. Validation translates
    with `val_beam_size` (1: greedy, for speed) and test with `test_beam_size` (see `translate` for
    the length), hypotheses ranked with `length_penalty`; `bleu` and `chrf` compare the
    detokenised translations with the target texts. `num_samples` translations go to the log after
    each validation while fitting.
    """

    model_kind = "a sequence-to-sequence model"
    model_choices = "task=seq2seq takes model=rnn_seq2seq or transformer_seq2seq"

    def __init__(
        self,
        model: Callable[..., nn.Module],
        dims: Mapping[str, Any],
        tokenizer: TextTokenizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., dict[str, Any]] | None = None,
        label_smoothing: float = 0.1,
        val_beam_size: int = 1,
        test_beam_size: int = 5,
        max_decode_length: int = 128,
        length_penalty: float = 1.0,
        num_samples: int = 3,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.net = self.build_model(model, dims)
        self.tokenizer = tokenizer
        self.label_smoothing = label_smoothing
        self.beam_sizes = {"val": val_beam_size, "test": test_beam_size}
        self.max_decode_length = max_decode_length
        self.length_penalty = length_penalty
        self.num_samples = num_samples
        # "train" can't be a ModuleDict key (it is nn.Module.train), hence the suffix.
        self.token_losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in STAGES})
        self.token_loss_sums = {stage: TokenLossSum() for stage in STAGES}
        self.translations: dict[str, list[tuple[str, str]]] = {"val": [], "test": []}

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) of the teacher-forced target."""
        return self.net(source_ids, source_lengths, target_in)

    def translate(self, source_ids: torch.Tensor, source_lengths: torch.Tensor, beam_size: int = 1) -> list[str]:
        """The detokenised translations of a padded batch of sources, each at most `max_decode_length`
        tokens and twice the longest source's plus 10 (an untrained model rarely ends a text)."""
        max_len = min(self.max_decode_length, 2 * int(source_lengths.max()) + 10)
        was_training = self.net.training
        self.net.eval()
        out = self.net.generate(source_ids, source_lengths, beam_size=beam_size, max_len=max_len, length_penalty=self.length_penalty)
        self.net.train(was_training)
        return [decode_target(self.tokenizer, row) for row in out.tolist()]

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self.net(batch["source_ids"], batch["source_lengths"], batch["target_in"]).flatten(0, 1).float()  # (B*T, V)
        targets = batch["target_out"].flatten()
        tokens = (targets != IGNORE_INDEX).sum()
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing if stage == "train" else 0.0)
        if stage == "train" and self.label_smoothing:
            # The reported loss is the plain one, so train, val and test losses (and ppl) compare.
            plain = F.cross_entropy(logits.detach(), targets, ignore_index=IGNORE_INDEX)
            self.token_loss_sums["train"].add(plain, tokens)
        else:
            self.token_loss_sums[stage].add(loss, tokens)
        if stage == "train" and logs_this_step(self.trainer):
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=targets.size(0))
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        self._step(batch, stage)
        hypotheses = self.translate(batch["source_ids"], batch["source_lengths"], self.beam_sizes[stage])
        self.translations[stage].extend(zip(hypotheses, batch["references"]))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metric = self.token_losses[f"{stage}_loss"]
        self.token_loss_sums[stage].flush_into(metric)
        if metric.update_count == 0:
            return
        loss = metric.compute()
        metric.reset()
        values = {f"{stage}/loss": loss, f"{stage}/ppl": torch.exp(loss)}
        if stage in self.translations:
            if self.trainer.world_size > 1:
                # BLEU is a corpus score: every process scores all the translations, not its share.
                shares: list[Any] = [None] * self.trainer.world_size
                torch.distributed.all_gather_object(shares, self.translations[stage])
                self.translations[stage] = [pair for share in shares for pair in share]
            if self.translations[stage]:
                hypotheses, references = zip(*self.translations[stage])
                values.update({f"{stage}/{name}": value for name, value in corpus_scores(list(hypotheses), list(references)).items()})
        self.log_dict(values, prog_bar=stage != "train")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self.translations["val"] = []

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        if fitting and self.num_samples > 0 and self.trainer.is_global_zero:
            samples = "\n".join(
                f"  hypothesis: {hypothesis}\n  reference:  {reference}" for hypothesis, reference in self.translations["val"][: self.num_samples]
            )
            log.info("translations at step %d:\n%s", self.global_step, samples)

    def on_test_epoch_start(self) -> None:
        self.translations["test"] = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
