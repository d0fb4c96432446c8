"""Recurrent classifiers: embeddings, an Elman RNN, LSTM or GRU over packed sequences, pooling over time.

Padded batches are packed with their lengths, so pad tokens never reach the recurrence and never
change a sequence's output.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RECURRENCES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, num_classes).

    `pooling` is "last" (the final hidden state of each direction), "mean" or "max" over the
    valid time steps.
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
        if cell not in RECURRENCES:
            raise ValueError(f"cell must be one of {sorted(RECURRENCES)}, got {cell!r}")
        if pooling not in ("last", "mean", "max"):
            raise ValueError(f"pooling must be 'last', 'mean' or 'max', got {pooling!r}")
        self.pooling = pooling
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.recurrence = RECURRENCES[cell](
            embed_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
            **extra,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim * (2 if bidirectional else 1), num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        embedded = self.dropout(self.embedding(input_ids))  # (B, T, E)
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.recurrence(packed)
        if self.pooling == "last":
            hidden = final[0] if isinstance(final, tuple) else final  # (layers * dirs, B, H)
            directions = 2 if self.recurrence.bidirectional else 1
            pooled = torch.cat(list(hidden[-directions:]), dim=-1)  # (B, H * dirs)
        else:
            padded, _ = pad_packed_sequence(outputs, batch_first=True)  # (B, T_max, H * dirs)
            valid = (torch.arange(padded.size(1), device=padded.device)[None, :] < lengths.to(padded.device)[:, None])
            valid = valid.unsqueeze(-1)
            if self.pooling == "mean":
                pooled = (padded * valid).sum(1) / valid.sum(1).clamp(min=1)
            else:
                pooled = padded.masked_fill(~valid, float("-inf")).amax(1)
        return self.head(self.dropout(pooled))
