"""Recurrent models: an Elman RNN written out, classifiers over the Elman RNN, LSTM or GRU, and a
character-level recurrent language model.

Padded batches never let pad tokens into the recurrence: LSTM and GRU run on packed sequences
(torch's fused kernels), the Elman RNN keeps each sequence's state frozen past its length. So a
sequence's output never depends on how much padding its batch has.
"""

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.models import check_sizes
from seqlab.models.masks import padding_mask
from seqlab.models.sampling import sample_next_token

NONLINEARITIES = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
FUSED_RECURRENCES = {"lstm": nn.LSTM, "gru": nn.GRU}
CELLS = ("rnn", *FUSED_RECURRENCES)
POOLINGS = ("last", "mean", "max", "concat")


class ElmanRNN(nn.Module):
    """The Elman RNN, h_t = σ(W_hx x_t + W_hh h_{t-1} + b_h), with σ = tanh, sigmoid or relu.

    Input (B, T, input_dim) padded and lengths (B,) -> outputs (B, T, H * dirs), zero past each
    length, and the final states (layers * dirs, B, H) ordered as torch's nn.RNN orders them.
    A backward direction reads each sequence from its own last real step, not from the padding.
    Dropout applies between layers.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        nonlinearity: str = "tanh",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}")
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.nonlinearity = nonlinearity
        self.activation = NONLINEARITIES[nonlinearity]
        self.dropout = nn.Dropout(dropout)
        directions = 2 if bidirectional else 1
        # One (W_hx with b_h, W_hh) pair per layer and direction, in nn.RNN's order: l0, l0_reverse, l1, ...
        self.input_maps = nn.ModuleList()
        self.recurrent_maps = nn.ModuleList()
        for layer in range(num_layers):
            layer_input = input_dim if layer == 0 else hidden_dim * directions
            for _ in range(directions):
                self.input_maps.append(nn.Linear(layer_input, hidden_dim))
                self.recurrent_maps.append(nn.Linear(hidden_dim, hidden_dim, bias=False))
        bound = 1.0 / math.sqrt(hidden_dim)  # nn.RNN's initialisation
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = lengths.to(inputs.device)
        steps = torch.arange(inputs.size(1), device=inputs.device)
        valid = padding_mask(lengths, inputs.size(1))  # (B, T)
        # Reversing each sequence inside its own length: position t reads position length-1-t.
        reversed_index = (lengths[:, None] - 1 - steps[None, :]).clamp(min=0)  # (B, T)
        directions = 2 if self.bidirectional else 1
        layer_input, finals = inputs, []
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = self.dropout(layer_input)
            outputs = []
            for direction in range(directions):
                index = layer * directions + direction
                x = layer_input if direction == 0 else _gather_steps(layer_input, reversed_index)
                out, final = self._run(x, valid, self.input_maps[index], self.recurrent_maps[index])
                outputs.append(out if direction == 0 else _gather_steps(out, reversed_index) * valid[..., None])
                finals.append(final)
            layer_input = torch.cat(outputs, dim=-1)  # (B, T, H * dirs)
        return layer_input, torch.stack(finals)  # (B, T, H * dirs), (layers * dirs, B, H)

    def _run(self, x: torch.Tensor, valid: torch.Tensor, input_map: nn.Linear, recurrent_map: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """One direction of one layer, left to right; steps past a sequence's length keep its state."""
        projected = input_map(x)  # W_hx x_t + b_h for every t at once: (B, T, H)
        h = x.new_zeros(x.size(0), self.hidden_dim)
        outputs = []
        for t in range(x.size(1)):
            candidate = self.activation(projected[:, t] + recurrent_map(h))
            h = torch.where(valid[:, t, None], candidate, h)
            outputs.append(candidate * valid[:, t, None])
        return torch.stack(outputs, dim=1), h


def _gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, T, D) reordered along time by index (B, T)."""
    return x.gather(1, index[..., None].expand(-1, -1, x.size(-1)))


class RNNClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, num_classes).

    `cell` is "rnn" (the Elman RNN, with `nonlinearity` tanh or sigmoid), "lstm" or "gru".
    `pooling` is "last" (the final hidden state of each direction), "mean" or "max" over the
    valid time steps, or "concat": last, max and mean side by side (ULMFiT's concat pooling, which
    lets a classifier over a pretrained language model's LSTM read more than its final state).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        cell: str = "lstm",
        embed_dim: int = 64,
        hidden_dim: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        pooling: str = "last",
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {list(CELLS)}, got {cell!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
        check_sizes(embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        self.pooling = pooling
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        layer_dropout = dropout if num_layers > 1 else 0.0
        if cell == "rnn":
            self.recurrence = ElmanRNN(embed_dim, hidden_dim, num_layers, bidirectional, nonlinearity, layer_dropout)
        else:
            self.recurrence = FUSED_RECURRENCES[cell](
                embed_dim, hidden_dim, num_layers=num_layers, batch_first=True, bidirectional=bidirectional, dropout=layer_dropout
            )
        self.dropout = nn.Dropout(dropout)
        pooled_dim = hidden_dim * (2 if bidirectional else 1) * (3 if pooling == "concat" else 1)
        self.head = nn.Linear(pooled_dim, num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(input_ids))  # (B, T, E)
        if isinstance(self.recurrence, ElmanRNN):
            outputs, hidden = self.recurrence(embedded, lengths)
        else:
            packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_outputs, final = self.recurrence(packed)
            hidden = final[0] if isinstance(final, tuple) else final  # LSTM: (h, c)
            outputs = None if self.pooling == "last" else pad_packed_sequence(packed_outputs, batch_first=True)[0]
        pooled = []  # concat: last, max, mean
        if self.pooling in ("last", "concat"):
            directions = 2 if self.bidirectional else 1
            pooled.append(torch.cat(list(hidden[-directions:]), dim=-1))  # top layer (layers * dirs, B, H) -> (B, H * dirs)
        if self.pooling != "last":
            outputs = outputs[:, : int(lengths.max())]  # (B, T_max, H * dirs)
            valid = padding_mask(lengths.to(outputs.device), outputs.size(1)).unsqueeze(-1)  # (B, T_max, 1)
            if self.pooling in ("max", "concat"):
                pooled.append(outputs.masked_fill(~valid, float("-inf")).amax(1))
            if self.pooling in ("mean", "concat"):
                pooled.append((outputs * valid).sum(1) / valid.sum(1).clamp(min=1))
        return self.head(self.dropout(torch.cat(pooled, dim=-1)))


class RNNLanguageModel(nn.Module):
    """A character- or token-level recurrent language model: token ids (B, T) -> next-token logits (B, T, V).

    Embeddings, an LSTM (or GRU), dropout, and a linear output layer whose weight is the embedding
    matrix when `tie_weights` (then `embed_dim` must equal `hidden_dim`).
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        embed_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 2,
        dropout: float = 0.0,
        tie_weights: bool = False,
    ) -> None:
        super().__init__()
        if cell not in FUSED_RECURRENCES:
            raise ValueError(f"cell must be one of {sorted(FUSED_RECURRENCES)}, got {cell!r}")
        check_sizes(embed_dim=embed_dim, hidden_dim=hidden_dim, num_layers=num_layers)
        if tie_weights and embed_dim != hidden_dim:
            raise ValueError(f"tie_weights needs embed_dim == hidden_dim, got {embed_dim} and {hidden_dim}")
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.recurrence = FUSED_RECURRENCES[cell](embed_dim, hidden_dim, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.lm_head = nn.Linear(hidden_dim, vocab_size)
        if tie_weights:
            self.lm_head.weight = self.embedding.weight

    def forward(self, input_ids: torch.Tensor, state: tuple[torch.Tensor, ...] | torch.Tensor | None = None, return_state: bool = False):
        """Logits (B, T, V); with `return_state`, also the recurrent state to continue from."""
        hidden, state = self.recurrence(self.dropout(self.embedding(input_ids)), state)  # (B, T, H)
        logits = self.lm_head(self.dropout(hidden))
        return (logits, state) if return_state else logits

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Continue the prompts idx (B, T) by exactly `max_new_tokens` sampled tokens -> (B, T + max_new_tokens)."""
        logits, state = self(idx, return_state=True)
        for _ in range(max_new_tokens):
            next_token = sample_next_token(logits[:, -1, :], temperature, top_k, top_p)  # (B, 1)
            idx = torch.cat((idx, next_token), dim=1)
            logits, state = self(next_token, state, return_state=True)
        return idx
