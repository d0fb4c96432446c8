"""Text classification DataModules: read the splits, derive validation, fit the tokenizer, encode, batch.

A subclass only says how to read its source (`read_splits`); splitting, folds, label ids,
tokenising and loaders are shared.
"""

import json
from abc import ABC, abstractmethod
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from seqlab.data.batching import EncodedTexts, PadToLongest
from seqlab.data.splits import kfold_split, stratified_split
from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[str]

    def subset(self, indices: np.ndarray) -> "LabelledTexts":
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


class TextClassificationDataModule(pl.LightningDataModule, ABC):
    """Shared machinery for labelled text; subclasses implement `read_splits`.

    Validation is the source's own split when it has one, else a seeded stratified share of the
    training data; with `num_folds` set, fold `fold` of the training data is the validation set.
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        max_length: int | None = None,
        val_fraction: float = 0.1,
        num_folds: int | None = None,
        fold: int | None = None,
        split_seed: int = 0,
        labels: list[str] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.max_length = max_length
        self.val_fraction = val_fraction
        self.num_folds = num_folds
        self.fold = fold
        self.split_seed = split_seed
        self.declared_labels = [str(label) for label in labels] if labels is not None else None
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.label_names: list[str] = []
        self.datasets: dict[str, EncodedTexts] = {}

    @abstractmethod
    def read_splits(self) -> dict[str, LabelledTexts]:
        """Return at least "train"; "val" and "test" when the source has them."""

    # -- Lightning hooks --------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        splits = self._split(self.read_splits())
        self.label_names = self._label_names(splits)
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(splits["train"].texts)
        label_ids = {name: index for index, name in enumerate(self.label_names)}
        for name, split in splits.items():
            self.datasets[name] = EncodedTexts(
                self._encode(split.texts), np.array([label_ids[label] for label in split.labels], dtype=np.int64)
            )
        log.info("data: %s", ", ".join(f"{name} {len(ds)}" for name, ds in self.datasets.items()))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # -- what models and run dirs need ------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {f"data/{name}_size": len(dataset) for name, dataset in self.datasets.items()}

    def model_dims(self) -> dict[str, int]:
        """The sizes a model takes from its data."""
        return {"vocab_size": self.tokenizer.vocab_size, "pad_id": self.tokenizer.pad_id}

    def task_dims(self) -> dict[str, int]:
        """The sizes a task takes from its data."""
        return {"num_classes": self.num_classes}

    def save_to(self, run_dir: Path) -> None:
        """Write the fitted tokenizer and the label names, which eval, predict and export reload."""
        self.tokenizer.save(run_dir / "tokenizer.json")
        (run_dir / "labels.json").write_text(json.dumps(self.label_names))

    # -- internals --------------------------------------------------------------------------

    def _split(self, splits: dict[str, LabelledTexts]) -> dict[str, LabelledTexts]:
        if "train" not in splits or not splits["train"].texts:
            raise SeqlabError(f"{type(self).__name__}: the training split is empty")
        train = splits["train"]
        if self.num_folds is not None:
            train_idx, val_idx = kfold_split(train.labels, self.num_folds, self.fold, self.split_seed)
            splits = {**splits, "train": train.subset(train_idx), "val": train.subset(val_idx)}
        elif "val" not in splits:
            train_idx, val_idx = stratified_split(train.labels, self.val_fraction, self.split_seed)
            splits = {**splits, "train": train.subset(train_idx), "val": train.subset(val_idx)}
        return splits

    def _label_names(self, splits: dict[str, LabelledTexts]) -> list[str]:
        if self.label_names:  # restored from a checkpoint: keep the run's ids
            names = self.label_names
        elif self.declared_labels is not None:
            names = self.declared_labels
        else:
            found = set(splits["train"].labels)
            names = sorted(found, key=lambda n: (0, int(n), "") if n.lstrip("-").isdigit() else (1, 0, n))
        for split_name, split in splits.items():
            unknown = set(split.labels) - set(names)
            if unknown:
                raise SeqlabError(
                    f"{type(self).__name__}: {split_name} split has labels {sorted(unknown)[:5]} outside the declared set {names}"
                )
        return names

    def _encode(self, texts: list[str]) -> list[np.ndarray]:
        encoded = self.tokenizer.encode_batch(texts)
        limit = self.max_length
        return [np.asarray(ids[:limit] if limit else ids, dtype=np.int64) for ids in encoded]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            collate_fn=PadToLongest(self.tokenizer.pad_id),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
