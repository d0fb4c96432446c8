"""A decoder-only Transformer language model of nanoGPT's class, and a classifier on its hidden states.

Read top to bottom: `LayerNorm` (with optional bias), `CausalSelfAttention`, `MLP`, `Block`,
`GPTConfig`, `GPT` (forward, generate), `GPTClassifier`. The model is configured by plain keyword
arguments (`GPT(vocab_size=65, block_size=64, num_layers=4, ...)`); `model.config` holds them as a
`GPTConfig`. Input and output embeddings are tied; residual projections start scaled down by
sqrt(2 * num_layers) as in GPT-2.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.models import check_sizes
from seqlab.models.masks import padding_mask
from seqlab.models.sampling import sample_next_token


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (torch's has no bias=False before 2.1, and GPT configs switch it)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: "GPTConfig") -> None:
        super().__init__()
        if config.hidden_dim % config.num_heads:
            raise ValueError(f"hidden_dim ({config.hidden_dim}) must be divisible by num_heads ({config.num_heads})")
        self.c_attn = nn.Linear(config.hidden_dim, 3 * config.hidden_dim, bias=config.bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(config.hidden_dim, config.hidden_dim, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.num_heads = config.num_heads
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        # Flash / memory-efficient kernels where available; the plain equivalent is
        # softmax((q @ k^T) / sqrt(hs) masked to the lower triangle) @ v.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: "GPTConfig") -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hidden_dim, 4 * config.hidden_dim, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.hidden_dim, config.hidden_dim, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: "GPTConfig") -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.hidden_dim, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.hidden_dim, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    hidden_dim: int = 128
    dropout: float = 0.0
    bias: bool = False  # biases in Linears and LayerNorms: GPT-2 has them; a little better and faster without


class GPT(nn.Module):
    """Token ids (B, T) with T <= block_size -> next-token logits (B, T, vocab_size)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int = 64,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 128,
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_sizes(block_size=block_size, num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim)
        self.config = config = GPTConfig(vocab_size, block_size, num_layers, num_heads, hidden_dim, dropout, bias)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.hidden_dim),
                wpe=nn.Embedding(config.block_size, config.hidden_dim),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.num_layers)),
                ln_f=LayerNorm(config.hidden_dim, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.hidden_dim, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # residual projections: their sum over layers keeps unit scale
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.num_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = True) -> int:
        """Parameters counted as nanoGPT counts them: without the position embeddings by default."""
        count = sum(p.numel() for p in self.parameters())
        return count - self.transformer.wpe.weight.numel() if non_embedding else count

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The final (normalised) hidden state of every position: (B, T) -> (B, T, hidden_dim)."""
        T = input_ids.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}")
        positions = torch.arange(T, dtype=torch.long, device=input_ids.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(positions))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden_states(input_ids))  # (B, T, vocab_size)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Continue the prompts idx (B, T) by exactly `max_new_tokens` sampled tokens -> (B, T + max_new_tokens).

        The model sees at most the last `block_size` tokens. `temperature` 0 is greedy decoding;
        `top_k` and `top_p` restrict sampling to the likeliest tokens.
        """
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.block_size :]  # (B, <= block_size)
            logits = self(context)[:, -1, :]  # (B, V)
            idx = torch.cat((idx, sample_next_token(logits, temperature, top_k, top_p)), dim=1)
        return idx


class GPTClassifier(nn.Module):
    """A GPT backbone with a linear head: token ids (B, T) and lengths (B,) -> class logits (B, num_classes).

    `pooling` "last" classifies the hidden state of each sequence's last real token (which, the
    attention being causal, has read the whole sequence and never the padding after it); "mean"
    averages the real tokens' states. Load pretrained GPT weights into `backbone`.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        block_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        bias: bool = False,
        pooling: str = "last",
    ) -> None:
        super().__init__()
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.backbone = GPT(vocab_size, block_size, num_layers, num_heads, hidden_dim, dropout, bias)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim, num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone.hidden_states(input_ids)  # (B, T, C)
        lengths = lengths.to(hidden.device)
        if self.pooling == "last":
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), lengths - 1]  # (B, C)
        else:
            valid = padding_mask(lengths, hidden.size(1))[..., None]  # (B, T, 1)
            pooled = (hidden * valid).sum(1) / valid.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))
