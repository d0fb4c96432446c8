"""A bag-of-words classifier: the mean of a text's token embeddings through a linear head."""

import torch
from torch import nn


class BagOfWordsClassifier(nn.Module):
    """Takes seqlab's classifier sizes (`vocab_size`, `pad_id`, `num_classes`) from the data module and
    its own settings (`embed_dim`) from its config file."""

    def __init__(self, vocab_size: int, pad_id: int, num_classes: int, embed_dim: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for token ids (B, T) padded after each text's `lengths` (B,)."""
        lengths = lengths.to(input_ids.device)
        real = torch.arange(input_ids.size(1), device=input_ids.device)[None, :] < lengths[:, None]  # (B, T)
        summed = (self.embedding(input_ids) * real[..., None]).sum(dim=1)  # (B, E)
        return self.head(summed / lengths.clamp(min=1)[:, None])
