"""Language-modelling DataModules over plain text: a contiguous split by position, random windows of
`block_size` for training (as nanoGPT samples them), and full sequential coverage for evaluation."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from seqlab.data.base import SequenceDataModule
from seqlab.data.cache import CacheEntry, encode_texts, file_identity
from seqlab.data.download import download_file
from seqlab.data.io import read_text
from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError

IGNORE_INDEX = -100  # targets the loss skips: the padding of a short last window


class RandomWindows(Dataset):
    """Every window of `block_size` + 1 tokens that lies inside one segment; drawn at random by the sampler."""

    def __init__(self, segments: Sequence[np.ndarray], block_size: int) -> None:
        self.segments = [s for s in segments if len(s) > block_size]
        self.block_size = block_size
        counts = [len(s) - block_size for s in self.segments]
        self.offsets = np.cumsum([0, *counts])
        if not self.segments:
            raise SeqlabError(f"the training text is shorter than block_size={block_size} tokens")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        segment = int(np.searchsorted(self.offsets, index, side="right")) - 1
        start = index - int(self.offsets[segment])
        chunk = self.segments[segment][start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


class SequentialWindows(Dataset):
    """Consecutive windows that predict every token of the segments exactly once (the last may be shorter)."""

    def __init__(self, segments: Sequence[np.ndarray], block_size: int) -> None:
        self.windows = [(segment, start) for segment in segments for start in range(0, len(segment) - 1, block_size)]
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        segment, start = self.windows[index]
        chunk = segment[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


class PadWindows:
    """Collate (inputs, targets) windows into `input_ids` and `targets` (B, T); short windows are padded
    and their padded targets ignored by the loss."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        width = max(len(x) for x, _ in batch)
        inputs = np.full((len(batch), width), self.pad_id, dtype=np.int64)
        targets = np.full((len(batch), width), IGNORE_INDEX, dtype=np.int64)
        for row, (x, y) in enumerate(batch):
            inputs[row, : len(x)] = x
            targets[row, : len(y)] = y
        return {"input_ids": torch.from_numpy(inputs), "targets": torch.from_numpy(targets)}


class LanguageModelingDataModule(SequenceDataModule):
    """Language modelling over the text of `files` (read in `encoding`), joined in order.

    The first `train_fraction` of the characters train, the next `val_fraction` validate and the
    rest (if any) test; with no test share, the test set is the validation set. With `num_folds`,
    the training text is cut into K contiguous blocks and block `fold` validates. An epoch is
    `train_samples_per_epoch` random windows of `block_size` tokens. `settings` are
    SequenceDataModule's: `eval_batch_size`, `num_folds`, `fold`, `cache_dir` and the loader's workers.
    """

    SIZE_UNIT = " tokens"

    def __init__(
        self,
        files: Sequence[str],
        tokenizer: TextTokenizer,
        block_size: int = 64,
        batch_size: int = 12,
        train_fraction: float = 0.9,
        val_fraction: float | None = None,
        train_samples_per_epoch: int = 24000,
        encoding: str = "utf-8",
        **settings: Any,
    ) -> None:
        super().__init__(tokenizer, batch_size, **settings)
        self.files = [Path(f) for f in files]
        self.encoding = encoding
        self.block_size = block_size
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.train_samples_per_epoch = train_samples_per_epoch
        self.segments: dict[str, list[np.ndarray]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.fold_split == "test":
            raise SeqlabError(
                "data.fold_split=test (cv.protocol=test) is for classification data; "
                "a language model's folds validate (cv.protocol=validation) and its held-out text tests"
            )
        super().setup(stage)

    def read_text(self) -> str:
        return "\n".join(read_text(path, self.encoding) for path in self.files)

    def source_identity(self) -> Any:
        """What identifies the text for the cache key: the files' paths, sizes and contents, and the encoding."""
        return {"files": file_identity(self.files), "encoding": self.encoding}

    # -- Lightning hooks --------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        dataset = RandomWindows(self.segments["train"], self.block_size)
        sampler = RandomSampler(dataset, replacement=True, num_samples=self.train_samples_per_epoch)
        return self._windows_loader(dataset, self.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._windows_loader(SequentialWindows(self.segments["val"], self.block_size), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._windows_loader(SequentialWindows(self.segments["test"], self.block_size), self.eval_batch_size)

    # -- what tasks need --------------------------------------------------------------------

    def task_dims(self) -> dict[str, object]:
        """The tokenizer, which decodes the samples the task logs."""
        return {"tokenizer": self.tokenizer}

    # -- internals --------------------------------------------------------------------------

    def _split_settings(self) -> dict[str, Any]:
        return {"split": [self.train_fraction, self.val_fraction, self.num_folds, self.fold]}

    def _build(self) -> CacheEntry:
        """Cut the text by position, fit the tokenizer on the training part, and encode every part."""
        text = self.read_text()
        train_end = int(len(text) * self.train_fraction)
        if self.val_fraction is None:
            val_end = len(text)
        else:
            val_end = min(len(text), train_end + int(len(text) * self.val_fraction))
        pieces = {"train": [text[:train_end]], "val": [text[train_end:val_end]]}
        if val_end < len(text):
            pieces["test"] = [text[val_end:]]
        if self.num_folds is not None:
            # The held-out text stays the test set; folds of the training text validate.
            pieces.setdefault("test", pieces["val"])
            pieces["train"], pieces["val"] = self._folds(text[:train_end])
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(pieces["train"])
        ragged = {split: encode_texts(self.tokenizer, texts) for split, texts in pieces.items()}
        return CacheEntry({"tokenizer": self.tokenizer.to_dict(), "splits": list(pieces)}, ragged, {})

    def _folds(self, train_text: str) -> tuple[list[str], list[str]]:
        """The training blocks and the validation block of fold `fold` (checked by `setup`)."""
        bounds = np.linspace(0, len(train_text), self.num_folds + 1).astype(int)
        blocks = [train_text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return [b for i, b in enumerate(blocks) if i != self.fold], [blocks[self.fold]]

    def _use(self, entry: CacheEntry) -> None:
        for split in entry.meta["splits"]:
            ragged = entry.ragged[split]
            self.segments[split] = [ragged[i] for i in range(len(ragged))]
        self.segments.setdefault("test", self.segments["val"])

    def _sizes(self) -> dict[str, int]:
        """Sizes in tokens."""
        return {name: sum(len(s) for s in segments) for name, segments in self.segments.items()}

    def _windows_loader(self, dataset: Dataset, batch_size: int, sampler: RandomSampler | None = None) -> DataLoader:
        return self._loader(dataset, PadWindows(self.tokenizer.pad_id), batch_size=batch_size, sampler=sampler)


class TinyShakespeareDataModule(LanguageModelingDataModule):
    """Tiny Shakespeare at `<data_dir>/tinyshakespeare/input.txt`, downloaded (checksum verified) when absent."""

    URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

    def __init__(self, data_dir: str, **kwargs) -> None:
        self.path = Path(data_dir) / "tinyshakespeare" / "input.txt"
        super().__init__(files=[str(self.path)], **kwargs)

    def prepare_data(self) -> None:
        if not self.path.is_file():
            download_file(self.URL, self.path, self.SHA256)
