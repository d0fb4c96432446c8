"""Datasets of token ids and the collate function that pads a batch to its longest sequence."""

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class EncodedTexts(Dataset):
    """Token-id sequences with their label ids."""

    def __init__(self, ids: Sequence[np.ndarray], labels: np.ndarray) -> None:
        self.ids = ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.ids[index], int(self.labels[index])


class PadToLongest:
    """Collate (ids, label) pairs into `input_ids` (B, T), `lengths` (B,) and `labels` (B,)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[np.ndarray, int]]) -> dict[str, torch.Tensor]:
        lengths = [max(len(ids), 1) for ids, _ in batch]  # an empty text still gets one pad step
        input_ids = np.full((len(batch), max(lengths)), self.pad_id, dtype=np.int64)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = ids
        return {
            "input_ids": torch.from_numpy(input_ids),
            "lengths": torch.tensor(lengths, dtype=torch.int64),
            "labels": torch.tensor([label for _, label in batch], dtype=torch.int64),
        }
