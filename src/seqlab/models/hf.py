"""A Hugging Face Transformer (BERT, DistilBERT, MiniLM, GPT-2, ...) as the backbone of a classifier.

The backbone is `transformers.AutoModel` loaded from a hub name (the local cache when
HF_HUB_OFFLINE=1) or a local folder; the data must be tokenised with the backbone's own tokenizer
(`seqlab.data.tokenizers.PretrainedTokenizer`, which `model=hf_classifier` selects).

LoRA on the backbone goes through `peft`: `add_lora` wraps the backbone in a `PeftModel` (its base
weights frozen), `save_adapters` writes them in peft's own format, and `merge_lora` folds them into
the base weights, leaving the plain backbone.
"""

import logging
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.models.masks import padding_mask

log = logging.getLogger(__name__)

POOLINGS = ("auto", "cls", "mean", "last")


def _load_backbone(pretrained: str) -> nn.Module:
    # Imported here, not at the top: `transformers` is an optional extra, and its import (over half a
    # second after torch) would slow down every run of seqlab's own models.
    try:
        from transformers import AutoModel
    except ImportError:
        raise SeqlabError("model=hf_classifier needs the `hf` extra: pip install 'seqlab[hf]'") from None
    try:
        return AutoModel.from_pretrained(pretrained)
    except (OSError, ValueError) as error:
        hint = "" if Path(pretrained).is_dir() else " (offline, pass a local folder or a name already in the Hugging Face cache)"
        raise SeqlabError(f"cannot load the pretrained model {pretrained!r}: {str(error).splitlines()[0]}{hint}") from None


def is_bidirectional(model_type: str) -> bool:
    """Encoders are the families with a masked-language-model head; the rest (GPT-2, Llama, ...) are causal."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES  # lazy, as in _load_backbone

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class HFClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, num_classes), with a pretrained backbone.

    The attention mask comes from the lengths. `pooling`: "cls" (the first token's state), "mean"
    (the real tokens' states), "last" (the last real token's state, for causal decoders), or
    "auto" (cls for encoders, last for decoders). `backbone` holds the pretrained weights and
    `head` is the new linear layer, names that freezing and learning-rate patterns refer to.
    """

    def __init__(
        self,
        pretrained: str | None,
        num_classes: int,
        vocab_size: int | None = None,
        pad_id: int = 0,
        pooling: str = "auto",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not pretrained:
            raise SeqlabError("model.pretrained is not set: model=hf_classifier model.pretrained=<hub name or local folder>")
        self.backbone = _load_backbone(str(pretrained))
        # from_pretrained returns eval mode, and Lightning keeps each submodule's mode: train like the rest.
        self.backbone.train()
        config = self.backbone.config
        if pooling == "auto":
            pooling = "cls" if is_bidirectional(config.model_type) else "last"
        self.pooling = pooling
        embedded = self.backbone.get_input_embeddings().num_embeddings
        if vocab_size is not None and vocab_size > embedded:
            raise SeqlabError(
                f"the data's tokenizer has {vocab_size} tokens but {pretrained!r} embeds {embedded}: tokenise with the backbone's "
                "tokenizer (data.tokenizer: seqlab.data.tokenizers.PretrainedTokenizer, as model=hf_classifier sets)"
            )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(config.hidden_size, num_classes)
        log.info(
            "model: %s backbone (%s, %s pooling), %s parameters",
            config.model_type,
            pretrained,
            pooling,
            f"{sum(p.numel() for p in self.parameters()):,}",
        )

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(input_ids.device)
        mask = padding_mask(lengths, input_ids.size(1))  # (B, T)
        hidden = self.backbone(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "last":
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))

    def add_lora(self, targets: Sequence[str], rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> list[str]:
        """Wrap the backbone with peft LoRA adapters on the layers whose module names in this model
        (`backbone.encoder.layer.0.attention.self.query`) match one of the `targets` globs (`*.query`),
        freezing every backbone weight but the adapters; return the adapted names."""
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise SeqlabError("task.lora with model=hf_classifier needs peft: pip install 'seqlab[hf]'") from None
        layers = [name for name, module in self.backbone.named_modules() if name and not list(module.children())]
        chosen = [name for name in layers if any(fnmatchcase(f"backbone.{name}", target) for target in targets)]
        if not chosen:
            raise SeqlabError(f"task.lora.targets={list(targets)} match no layer of the backbone; its layers are: backbone.{', backbone.'.join(layers[:12])}")
        # peft matches a list entry against a module name or its dotted suffix: full names pick exactly these layers.
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen)
        try:
            self.backbone = get_peft_model(self.backbone, config)
        except ValueError as error:  # a matched layer of a kind LoRA cannot adapt (a norm, an activation)
            raise SeqlabError(f"task.lora.targets={list(targets)}: {str(error).splitlines()[0]}; target linear layers only") from None
        return [f"backbone.{name}" for name in chosen]

    def save_adapters(self, folder: Path) -> None:
        """Write the adapters and their `adapter_config.json` in peft's format (`PeftModel.from_pretrained` reads them)."""
        self.backbone.save_pretrained(str(folder))

    def merge_lora(self) -> nn.Module:
        """Fold the adapters into the base weights: the backbone is the plain pretrained architecture again."""
        self.backbone = self.backbone.merge_and_unload()
        return self
