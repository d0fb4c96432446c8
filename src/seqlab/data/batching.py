"""Datasets of token ids, the collate function that pads a batch to its longest sequence, a batch
sampler that groups texts of similar length for training, and the longest-first order that batches
texts for inference."""

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

from seqlab.data.cache import RaggedArray


class EncodedTexts(Dataset):
    """Token-id sequences (possibly memory-mapped from the cache) with their label ids."""

    def __init__(self, ids: RaggedArray, labels: np.ndarray) -> None:
        self.ids = ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.ids[index], int(self.labels[index])

    @property
    def lengths(self) -> np.ndarray:
        return self.ids.lengths


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


def longest_first(lengths: np.ndarray) -> np.ndarray:
    """Indices of the texts from the longest to the shortest (ties in input order). Consecutive
    batches of this order hold texts of similar length: IMDb's test batches, padded to their longest
    review in input order, are otherwise mostly padding. Longest first, so a batch too large for the
    device fails at once."""
    return np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")


class BucketBatchSampler(BatchSampler):
    """Batches of texts of similar length, so little of each batch is padding.

    Indices come from `sampler` (shuffled, seeded by the run's seed; under DDP Lightning swaps in a
    DistributedSampler). Each run of `bucket_batches` x `batch_size` indices is sorted by length and
    cut into batches, and the batches are shuffled, so every epoch still sees new batches in a new order.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: np.ndarray,
        bucket_batches: int = 50,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = np.asarray(lengths)
        self.bucket_batches = bucket_batches
        self.generator = generator

    def __iter__(self) -> Iterator[list[int]]:
        indices = np.fromiter(iter(self.sampler), dtype=np.int64)
        bucket = self.batch_size * self.bucket_batches
        for start in range(0, len(indices), bucket):
            chunk = indices[start : start + bucket]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches = [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
            for order in torch.randperm(len(batches), generator=self.generator).tolist():
                yield batches[order].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch; a DistributedSampler needs it to reshuffle."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
