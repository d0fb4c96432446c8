"""A Transformer encoder classifier: pre-LayerNorm blocks, scaled-dot-product attention with a
key-padding mask, learned / sinusoidal / rotary positions, and CLS or mean pooling.

Read top to bottom: positions (sinusoidal table, rotary), `SelfAttention`, `MLP`, `Block`,
then `TransformerClassifier`. Pad tokens are masked out as keys and left out of the pooling, so
appending padding never changes a sequence's output.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.models import check_sizes
from seqlab.models.masks import padding_mask

POSITIONS = ("learned", "sinusoidal", "rotary")


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine position encodings of "Attention Is All You Need": (length, dim)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return table


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer): rotates query and key channel pairs by position-dependent angles."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions need an even head size, got {head_dim}")
        inverse_frequency = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inverse_frequency)  # (L, hs/2)
        angles = torch.cat((angles, angles), dim=-1)  # (L, hs)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, nh, T, hs) rotated by the angles of positions 0..T-1."""
        T = x.size(-2)
        first, second = x.chunk(2, dim=-1)
        rotated_half = torch.cat((-second, first), dim=-1)
        return x * self.cos[:T].to(x.dtype) + rotated_half * self.sin[:T].to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all unmasked positions (bidirectional)."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float, rotary: RotaryEmbedding | None) -> None:
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_dim, 3 * hidden_dim)
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        # key_mask (B, 1, 1, T): True where the key is a real token, so every query ignores padding.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, hidden_dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden_dim, ff_dim)
        self.proj = nn.Linear(ff_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float, rotary: RotaryEmbedding | None) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.attn = SelfAttention(hidden_dim, num_heads, dropout, rotary)
        self.ln_2 = nn.LayerNorm(hidden_dim)
        self.mlp = MLP(hidden_dim, ff_dim, dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), key_mask)
        return x + self.mlp(self.ln_2(x))


class TransformerClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, num_classes).

    `positions`: "learned", "sinusoidal" or "rotary" (applied to queries and keys in every layer).
    `pooling`: "cls" (a learned vector put before the tokens; its final state is classified) or
    "mean" (the mean of the final states of the real tokens). `max_len` bounds the input length.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        hidden_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        max_len: int = 512,
        positions: str = "learned",
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {list(POSITIONS)}, got {positions!r}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        check_sizes(hidden_dim=hidden_dim, num_heads=num_heads, num_layers=num_layers, max_len=max_len)
        self.positions = positions
        self.pooling = pooling
        self.max_len = max_len
        slots = max_len + (1 if pooling == "cls" else 0)  # the CLS vector takes position 0
        self.embedding = nn.Embedding(vocab_size, hidden_dim, padding_idx=pad_id)
        # One vector (not a matrix), so like other embeddings it is exempt from weight decay.
        self.cls = nn.Parameter(torch.zeros(hidden_dim)) if pooling == "cls" else None
        self.position_embedding = nn.Embedding(slots, hidden_dim) if positions == "learned" else None
        if positions == "sinusoidal":
            self.register_buffer("position_table", sinusoidal_table(slots, hidden_dim), persistent=False)
        rotary = RotaryEmbedding(hidden_dim // num_heads, slots) if positions == "rotary" else None
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden_dim, num_heads, ff_dim or 4 * hidden_dim, dropout, rotary) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(hidden_dim)
        self.head = nn.Linear(hidden_dim, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.size()
        if T > self.max_len:
            raise ValueError(f"sequence of {T} tokens is longer than max_len={self.max_len}; raise model.max_len or lower data.max_length")
        lengths = lengths.to(input_ids.device)
        x = self.embedding(input_ids)  # (B, T, C)
        if self.cls is not None:
            x = torch.cat((self.cls.expand(B, 1, -1), x), dim=1)  # (B, 1 + T, C)
            lengths = lengths + 1
        if self.position_embedding is not None:
            x = x + self.position_embedding.weight[: x.size(1)]
        elif self.positions == "sinusoidal":
            x = x + self.position_table[: x.size(1)].to(x.dtype)
        x = self.dropout(x)
        valid = padding_mask(lengths, x.size(1))  # (B, T')
        key_mask = valid[:, None, None, :]  # (B, 1, 1, T')
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.ln_f(x)
        if self.cls is not None:
            pooled = x[:, 0]
        else:
            pooled = (x * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)  # (B, C)
        return self.head(self.dropout(pooled))
