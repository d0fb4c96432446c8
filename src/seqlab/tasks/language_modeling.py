"""Language modelling: next-token cross-entropy, perplexity, bits per character, and a generated sample
at the end of every validation."""

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from seqlab.data.language_modeling import IGNORE_INDEX
from seqlab.data.tokenizers import CharTokenizer, TextTokenizer
from seqlab.tasks.base import STAGES, Task
from seqlab.tasks.optim import build_optimizer
from seqlab.tasks.step_logging import logs_this_step
from seqlab.tasks.token_loss import TokenLossSum

log = logging.getLogger(__name__)


class LanguageModelingTask(Task):
    """Wraps a language model built by `model(**dims)` (`vocab_size`): token ids (B, T) -> next-token logits (B, T, V).

    Losses are averaged over predicted tokens (targets equal to -100 are skipped), so an epoch's
    `loss` is the mean over its tokens, not over its batches; `ppl` is exp(loss) and, for character
    vocabularies, `bpc` is loss / ln 2. After each validation the model continues `sample_prompt`
    by `sample_length` tokens; the text goes to the log and to TensorBoard or W&B when they are on.
    `decay_embeddings` puts the embeddings under weight decay with the other matrices (nanoGPT's rule).
    """

    model_kind = "a language model"
    model_choices = "task=language_modeling takes model=gpt or lstm_lm"

    def __init__(
        self,
        model: Callable[..., nn.Module],
        dims: Mapping[str, Any],
        tokenizer: TextTokenizer,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., dict[str, Any]] | None = None,
        sample_length: int = 200,
        sample_prompt: str = "\n",
        sample_temperature: float = 0.8,
        sample_top_k: int | None = None,
        sample_top_p: float | None = None,
        decay_embeddings: bool = False,
    ) -> None:
        super().__init__(optimizer, scheduler)
        self.net = self.build_model(model, dims)
        self.tokenizer = tokenizer
        self.char_level = isinstance(tokenizer, CharTokenizer)
        self.sample_length = sample_length
        self.sample_prompt = sample_prompt
        self.sample_temperature = sample_temperature
        self.sample_top_k = sample_top_k
        self.sample_top_p = sample_top_p
        self.decay_embeddings = decay_embeddings
        # "train" can't be a ModuleDict key (it is nn.Module.train), hence the suffix. Steps add to
        # token_loss_sums; each metric is updated once an epoch from them (seqlab.tasks.token_loss).
        self.token_losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in STAGES})
        self.token_loss_sums = {stage: TokenLossSum() for stage in STAGES}
        self._first_val_token: torch.Tensor | None = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V)."""
        return self.net(input_ids)

    def create_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_factory, self.net, decay_embeddings=self.decay_embeddings)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self.net(batch["input_ids"])  # (B, T, V)
        targets = batch["targets"]  # (B, T)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        tokens = (targets != IGNORE_INDEX).sum()
        self.token_loss_sums[stage].add(loss, tokens)
        if stage == "train" and logs_this_step(self.trainer):
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=targets.size(0))
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if self._first_val_token is None:
            self._first_val_token = batch["input_ids"][0, :1].detach().clone()
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metric = self.token_losses[f"{stage}_loss"]
        self.token_loss_sums[stage].flush_into(metric)
        if metric.update_count == 0:
            return
        loss = metric.compute()
        metric.reset()
        values = {f"{stage}/loss": loss, f"{stage}/ppl": torch.exp(loss)}
        if self.char_level:
            values[f"{stage}/bpc"] = loss / math.log(2)
        self.log_dict(values, prog_bar=stage != "train")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        # Samples show progress while fitting; the sanity check and a final validate add nothing.
        fitting = self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking
        if fitting and self.sample_length > 0 and self.trainer.is_global_zero:
            self._log_sample(self.sample())

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def sample(self, length: int | None = None) -> str:
        """The model's continuation of `sample_prompt` (of the first validation token when the prompt
        has no tokens in this vocabulary), drawn from its own RNG stream so training draws stay the same."""
        ids = self.tokenizer.encode_batch([self.sample_prompt])[0] if self.sample_prompt else []
        if ids:
            prompt = torch.tensor([ids], dtype=torch.long, device=self.device)
        elif self._first_val_token is not None:
            prompt = self._first_val_token[None].to(self.device)
        else:
            prompt = torch.full((1, 1), self.tokenizer.pad_id, dtype=torch.long, device=self.device)
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        was_training = self.net.training
        self.net.eval()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.global_step)
            out = self.net.generate(prompt, length or self.sample_length, self.sample_temperature, self.sample_top_k, self.sample_top_p)
        self.net.train(was_training)
        return self.tokenizer.decode(out[0].tolist())

    def _log_sample(self, text: str) -> None:
        step = self.global_step
        log.info("sample at step %d:\n%s", step, text)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(key="val/sample", columns=["step", "text"], data=[[step, text]])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("val/sample", text, global_step=step)
