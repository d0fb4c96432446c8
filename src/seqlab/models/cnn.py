"""Kim's (2014) convolutional sentence classifier: word embeddings, parallel 1-D convolutions of
several widths, ReLU, max-over-time pooling, dropout and a linear head.

Padding never reaches the pooling: embeddings past each text's length are zeroed and every window
that starts past the last one to fit in the text is set to -inf before the max, so appending padding
never changes a text's logits. A text shorter than a filter keeps one window, its words followed by
zeros, so a one-word text is classified too.
"""

import torch
import torch.nn.functional as F
from torch import nn

from seqlab.models import check_sizes
from seqlab.models.masks import padding_mask

EMBEDDING_BOUND = 0.25


class TextCNNClassifier(nn.Module):
    """Token ids (B, T) and lengths (B,) -> class logits (B, num_classes).

    `filter_widths` are the convolutions' widths in tokens (Kim: 3, 4, 5), each with `hidden_dim`
    feature maps (Kim: 100), so the head reads len(filter_widths) * hidden_dim features. `dropout`
    applies to those pooled features, as in the paper. Kim's max-norm constraint on the head is a
    training setting (`callbacks.max_norm`), not part of the model.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        embed_dim: int = 128,
        filter_widths: tuple[int, ...] = (3, 4, 5),
        hidden_dim: int = 100,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        filter_widths = tuple(filter_widths)
        if not filter_widths:
            raise ValueError("filter_widths must list at least one width, got []")
        check_sizes(embed_dim=embed_dim, hidden_dim=hidden_dim, **{f"filter_widths[{i}]": width for i, width in enumerate(filter_widths)})
        self.filter_widths = filter_widths
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # Kim's random vectors, U[-0.25, 0.25] (the variance of word2vec's), not torch's N(0, 1): at
        # this scale Adam's steps move a word's vector within the few updates a rare word gets.
        with torch.no_grad():
            nn.init.uniform_(self.embedding.weight, -EMBEDDING_BOUND, EMBEDDING_BOUND)
            self.embedding.weight[pad_id].zero_()
        self.convolutions = nn.ModuleList(nn.Conv1d(embed_dim, hidden_dim, width) for width in filter_widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_dim * len(filter_widths), num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(input_ids.device)
        valid = padding_mask(lengths, input_ids.size(1))  # (B, T)
        embedded = self.embedding(input_ids) * valid[..., None]  # (B, T, E), zero past each length
        # Zeros after the last step, as many as the widest filter needs, so every filter has a window
        # even over a batch of one-token texts; a constant amount keeps the ONNX sequence axis dynamic.
        x = F.pad(embedded.transpose(1, 2), (0, max(self.filter_widths) - 1))  # (B, E, T + widest - 1)
        pooled = []
        for width, convolution in zip(self.filter_widths, self.convolutions):
            features = torch.relu(convolution(x))  # (B, H, T + widest - width)
            # Window t covers tokens t .. t + width - 1: it counts while it fits in the text, and the
            # first window always counts (a text shorter than the filter, followed by zeros).
            last_start = (lengths - width).clamp(min=0)  # (B,)
            starts = torch.arange(features.size(-1), device=features.device)
            counted = starts[None, :] <= last_start[:, None]  # (B, T')
            pooled.append(features.masked_fill(~counted[:, None, :], float("-inf")).amax(-1))  # (B, H)
        return self.head(self.dropout(torch.cat(pooled, dim=-1)))  # (B, num_classes)
