"""A Transformer encoder-decoder ("Attention Is All You Need", with pre-LayerNorm blocks) on SDPA.

Read top to bottom: `CrossAttention`, `DecoderBlock`, then `TransformerSeq2Seq`. The encoder is
`seqlab.models.transformer`'s `Block` (the classifier's, with its key-padding mask); a decoder
block is that model's `SelfAttention` under a causal mask, then attention over the encoder's
states, then its `MLP`. Source padding is masked out as a key everywhere; target padding comes after
the real tokens, so the causal mask already keeps every real position from seeing it.
"""

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.models import check_sizes
from seqlab.models.decoding import GeneratesTranslations, State
from seqlab.models.masks import padding_mask
from seqlab.models.pair_embeddings import source_and_target_embeddings
from seqlab.models.transformer import MLP, Block, SelfAttention, sinusoidal_table

POSITIONS = ("learned", "sinusoidal")


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder's states over the encoder's (real) states."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(hidden_dim, hidden_dim)
        self.kv = nn.Linear(hidden_dim, 2 * hidden_dim)
        self.proj = nn.Linear(hidden_dim, hidden_dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        S = memory.size(1)
        hs = C // self.num_heads
        q = self.q(x).view(B, T, self.num_heads, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = (t.view(B, S, self.num_heads, hs).transpose(1, 2) for t in self.kv(memory).split(C, dim=2))  # (B, nh, S, hs)
        # key_mask (B, 1, 1, S): True at the source's real tokens.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class DecoderBlock(nn.Module):
    """Pre-LayerNorm: x + causal self-attention(LN(x)), x + cross-attention(LN(x), memory), x + MLP(LN(x))."""

    def __init__(self, hidden_dim: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.attn = SelfAttention(hidden_dim, num_heads, dropout, None)
        self.ln_2 = nn.LayerNorm(hidden_dim)
        self.cross = CrossAttention(hidden_dim, num_heads, dropout)
        self.ln_3 = nn.LayerNorm(hidden_dim)
        self.mlp = MLP(hidden_dim, ff_dim, dropout)

    def forward(self, x: torch.Tensor, causal: torch.Tensor, memory: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        x = x + self.cross(self.ln_2(x), memory, source_mask)
        return x + self.mlp(self.ln_3(x))


class TransformerSeq2Seq(GeneratesTranslations, nn.Module):
    """Source ids (B, S) with lengths (B,), and the teacher-forced target input (B, T) (begin-of-sequence,
    then the target) -> next-token logits (B, T, vocab_size); `generate` translates.

    `vocab_size` and `pad_id` are the target side's, and the source side's too unless it has a vocabulary
    of its own (`source_vocab_size`, `source_pad_id`: one tokenizer per side). `shared_embeddings`: one
    embedding table for source and target; null: shared unless the source has its own vocabulary, which
    `shared_embeddings=true` refuses.
    The output layer is tied to the target embedding. `positions`: learned or sinusoidal;
    `max_len` bounds both sides' lengths.
    """

    def __init__(
        self,
        vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        hidden_dim: int = 256,
        num_heads: int = 4,
        num_layers: int = 3,
        num_decoder_layers: int | None = None,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        max_len: int = 256,
        positions: str = "sinusoidal",
        shared_embeddings: bool | None = None,
        source_vocab_size: int | None = None,
        source_pad_id: int | None = None,
    ) -> None:
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {list(POSITIONS)}, got {positions!r}")
        num_decoder_layers = num_decoder_layers or num_layers
        check_sizes(hidden_dim=hidden_dim, num_heads=num_heads, num_layers=num_layers, num_decoder_layers=num_decoder_layers, max_len=max_len)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.max_len = max_len
        self.scale = hidden_dim**0.5
        ff_dim = ff_dim or 4 * hidden_dim
        self.source_embedding, self.target_embedding = source_and_target_embeddings(
            vocab_size, pad_id, hidden_dim, source_vocab_size, source_pad_id, shared_embeddings
        )
        if positions == "learned":
            self.position_embedding = nn.Embedding(max_len, hidden_dim)
        else:
            self.register_buffer("position_table", sinusoidal_table(max_len, hidden_dim), persistent=False)
            self.position_embedding = None
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(Block(hidden_dim, num_heads, ff_dim, dropout, None) for _ in range(num_layers))
        self.ln_encoder = nn.LayerNorm(hidden_dim)
        self.decoder = nn.ModuleList(DecoderBlock(hidden_dim, num_heads, ff_dim, dropout) for _ in range(num_decoder_layers))
        self.ln_decoder = nn.LayerNorm(hidden_dim)
        self.output = nn.Linear(hidden_dim, vocab_size, bias=False)
        self.apply(self._init_weights)
        self.output.weight = self.target_embedding.weight  # tied: one matrix reads and writes target tokens

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # Scaled by sqrt(hidden_dim) when embedding, so tokens and positions start at one scale.
            nn.init.normal_(module.weight, std=module.embedding_dim**-0.5)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        T = ids.size(1)
        if T > self.max_len:
            raise ValueError(
                f"sequence of {T} tokens is longer than max_len={self.max_len}; raise model.max_len or lower data.max_source_length / max_target_length"
            )
        positions = self.position_embedding.weight[:T] if self.position_embedding is not None else self.position_table[:T]
        return self.dropout(embedding(ids) * self.scale + positions)  # (B, T, C)

    def encode(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        """The encoder's states (B, S, C) and the source's key mask (B, 1, 1, S)."""
        key_mask = padding_mask(source_lengths.to(source_ids.device).clamp(min=1), source_ids.size(1))[:, None, None, :]
        x = self._embed(self.source_embedding, source_ids)
        for block in self.encoder:
            x = block(x, key_mask)
        return {"memory": self.ln_encoder(x), "source_mask": key_mask}

    def decode(self, state: State, target_in: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) after each prefix of target_in (B, T)."""
        T = target_in.size(1)
        causal = torch.ones(T, T, dtype=torch.bool, device=target_in.device).tril()[None, None]  # (1, 1, T, T)
        x = self._embed(self.target_embedding, target_in)
        for block in self.decoder:
            x = block(x, causal, state["memory"], state["source_mask"])
        return self.output(self.ln_decoder(x))

    def forward(self, source_ids: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(source_ids, source_lengths), target_in)

    # -- generation: one token at a time, each layer's keys and values kept -------------------

    def start(self, source_ids: torch.Tensor, source_lengths: torch.Tensor) -> State:
        """The encoded source, each decoder layer's keys and values over it (computed once), and its
        keys and values over the target so far (none yet): all (B, nh, length, hs)."""
        state = self.encode(source_ids, source_lengths)
        B, S, C = state["memory"].size()
        for i, block in enumerate(self.decoder):
            heads = block.cross.num_heads
            k, v = block.cross.kv(state["memory"]).split(C, dim=2)
            state[f"cross_k{i}"], state[f"cross_v{i}"] = (t.view(B, S, heads, C // heads).transpose(1, 2) for t in (k, v))
            state[f"self_k{i}"] = state[f"self_v{i}"] = state["memory"].new_empty(B, heads, 0, C // heads)
        return state

    def step(self, state: State, tokens: torch.Tensor) -> tuple[torch.Tensor, State]:
        """`decode`'s last position for the target so far plus `tokens` (N,), reading the kept keys and
        values instead of the whole prefix."""
        T = state["self_k0"].size(2)
        if T >= self.max_len:
            raise ValueError(f"sequence of {T + 1} tokens is longer than max_len={self.max_len}; raise model.max_len or lower task.max_decode_length")
        position = self.position_embedding.weight[T] if self.position_embedding is not None else self.position_table[T]
        x = self.dropout(self.target_embedding(tokens[:, None]) * self.scale + position)  # (N, 1, C)
        N, _, C = x.size()
        state = dict(state)
        for i, block in enumerate(self.decoder):
            heads = block.attn.num_heads
            q, k, v = (t.view(N, 1, heads, C // heads).transpose(1, 2) for t in block.attn.qkv(block.ln_1(x)).split(C, dim=2))  # (N, nh, 1, hs)
            state[f"self_k{i}"] = keys = torch.cat((state[f"self_k{i}"], k), dim=2)
            state[f"self_v{i}"] = values = torch.cat((state[f"self_v{i}"], v), dim=2)
            y = F.scaled_dot_product_attention(q, keys, values)  # every kept position is earlier: no mask
            x = x + block.attn.proj(y.transpose(1, 2).reshape(N, 1, C))
            q = block.cross.q(block.ln_2(x)).view(N, 1, heads, C // heads).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, state[f"cross_k{i}"], state[f"cross_v{i}"], attn_mask=state["source_mask"])
            x = x + block.cross.proj(y.transpose(1, 2).reshape(N, 1, C))
            x = x + block.mlp(block.ln_3(x))
        logits = self.output(self.ln_decoder(x))[:, 0]
        return F.log_softmax(logits.float(), dim=-1), state
