"""Text classification DataModules: read the splits, derive validation (and test), fit the tokenizer,
encode, cache, batch.

A subclass says how to read its source (`read_splits`) and, for caching, what identifies it
(`source_identity`); splitting, folds, label ids, tokenising, the cache and loaders are shared.
"""

import logging
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, Subset

from seqlab.data.base import SequenceDataModule
from seqlab.data.batching import BucketBatchSampler, EncodedTexts, PadToLongest, longest_first
from seqlab.data.cache import CacheEntry, encode_texts
from seqlab.data.labels import write_label_ids
from seqlab.data.splits import check_holdout_fractions, kfold_split, stratified_split
from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list[str]

    def subset(self, indices: np.ndarray) -> "LabelledTexts":
        return LabelledTexts([self.texts[i] for i in indices], [self.labels[i] for i in indices])


class TextClassificationDataModule(SequenceDataModule):
    """Shared machinery for labelled text; subclasses implement `read_splits`.

    Validation is the source's own split when it has one, else a seeded stratified `val_fraction`
    of the training data; a source without a test split gives a `test_fraction` of it first. With
    `num_folds` set, fold `fold` of the (remaining) training data is the validation set. With
    `merge_val`, the source's validation split joins the training data and validation is drawn as if
    the source had none. With `fold_split="test"` (cross-validation for evaluation), the training and
    validation data are pooled, fold `fold` of the pool is the test set (the source's test split is
    not used) and a `val_fraction` of the other folds validates. Texts are cut to `max_length` tokens; `labels` fixes the label names and their ids. With
    `bucket_by_length`, each run of `bucket_batches` training batches is sorted by length. With
    `sort_test_by_length`, the test loader batches the test texts longest first, so a batch is little
    padding; `in_test_order` puts predictions made over it back in the test set's order.
    `settings` are SequenceDataModule's: `eval_batch_size`, `num_folds`, `fold`, `fold_split`,
    `cache_dir` and the loader's workers.
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        batch_size: int = 32,
        max_length: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        labels: list[str] | None = None,
        bucket_by_length: bool = False,
        bucket_batches: int = 50,
        merge_val: bool = False,
        sort_test_by_length: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__(tokenizer, batch_size, **settings)
        self.max_length = max_length
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.declared_labels = [str(label) for label in labels] if labels is not None else None
        self.bucket_by_length = bucket_by_length
        self.bucket_batches = bucket_batches
        self.merge_val = merge_val
        self.sort_test_by_length = sort_test_by_length
        self.label_names: list[str] = []
        self.datasets: dict[str, EncodedTexts] = {}

    @abstractmethod
    def read_splits(self) -> dict[str, LabelledTexts]:
        """Return at least "train"; "val" and "test" when the source has them."""

    # -- Lightning hooks --------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        return self._texts_loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._texts_loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if not self.sort_test_by_length:
            return self._texts_loader("test", shuffle=False)
        dataset = Subset(self.datasets["test"], longest_first(self.datasets["test"].lengths).tolist())
        return self._loader(dataset, PadToLongest(self.tokenizer.pad_id), batch_size=self.eval_batch_size, shuffle=False)

    def in_test_order(self, predictions: torch.Tensor) -> torch.Tensor:
        """Predictions made over `test_dataloader()`'s batches (concatenated), in the test set's order."""
        if not self.sort_test_by_length:
            return predictions
        in_order = torch.empty_like(predictions)
        in_order[torch.from_numpy(longest_first(self.datasets["test"].lengths))] = predictions
        return in_order

    # -- what models and run dirs need ------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def model_dims(self) -> dict[str, int]:
        return {**super().model_dims(), "pad_id": self.tokenizer.pad_id, "num_classes": self.num_classes}

    def task_dims(self) -> dict[str, int]:
        """Nothing for classification: the model takes the number of classes."""
        return {}

    def save_to(self, run_dir: Path) -> None:
        """Write the fitted tokenizer and the label-name-to-id mapping, which eval, predict and export reload."""
        super().save_to(run_dir)
        write_label_ids(run_dir / "labels.json", self.label_names)

    # -- internals --------------------------------------------------------------------------

    def _split_settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "split": [self.val_fraction, self.test_fraction, self.num_folds, self.fold, self.split_seed, self.merge_val, self.fold_split],
            "labels": self.label_names or self.declared_labels,
        }

    def _use(self, entry: CacheEntry) -> None:
        self.label_names = list(entry.meta["label_names"])
        for name in entry.meta["splits"]:
            self.datasets[name] = EncodedTexts(entry.ragged[name], entry.arrays[f"{name}.labels"])
        if entry.meta.get("unused_test_size"):
            log.info(
                "data: the source's own test split (%d texts) is not used: fold %d of %d of its training and validation data tests (data.fold_split=test)",
                entry.meta["unused_test_size"],
                self.fold,
                self.num_folds,
            )

    def _sizes(self) -> dict[str, int]:
        return {name: len(dataset) for name, dataset in self.datasets.items()}

    def _build(self) -> CacheEntry:
        """Read, split, check labels, fit the tokenizer on the training split, and encode every split."""
        source = self.read_splits()
        splits = self._split(source)
        label_names = self._label_names(splits)
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(splits["train"].texts)
        label_ids = {name: index for index, name in enumerate(label_names)}
        ragged, arrays = {}, {}
        for name, split in splits.items():
            ragged[name] = encode_texts(self.tokenizer, split.texts, self.max_length)
            arrays[f"{name}.labels"] = np.array([label_ids[label] for label in split.labels], dtype=np.int64)
        unused_test_size = len(source["test"].texts) if self.fold_split == "test" and "test" in source else 0
        meta = {"tokenizer": self.tokenizer.to_dict(), "label_names": label_names, "splits": list(splits), "unused_test_size": unused_test_size}
        return CacheEntry(meta, ragged, arrays)

    def _split(self, splits: dict[str, LabelledTexts]) -> dict[str, LabelledTexts]:
        if "train" not in splits or not splits["train"].texts:
            raise SeqlabError(f"{type(self).__name__}: the training split is empty")
        train = splits["train"]
        found = sorted(set(train.labels))
        if len(found) < 2:
            # Refused here, in one line, before anything is cached or a model is sized for one class.
            raise SeqlabError(f"{self.split_source('train')}: only one label ({found[0]!r}); classification needs at least two")
        val, test = splits.get("val"), splits.get("test")
        if val is not None and (self.merge_val or self.fold_split == "test"):
            train, val = LabelledTexts(train.texts + val.texts, train.labels + val.labels), None
        if self.fold_split == "test":
            # Cross-validation for evaluation: fold `fold` of the pool tests, and a share of the other
            # folds validates (early stopping and the best checkpoint); nothing is held out before.
            rest_idx, test_idx = kfold_split(train.labels, self.num_folds, self.fold, self.split_seed)
            rest = train.subset(rest_idx)
            train_idx, val_idx = stratified_split(rest.labels, self.val_fraction, self.split_seed)
            return {"train": rest.subset(train_idx), "val": rest.subset(val_idx), "test": train.subset(test_idx)}
        if self.num_folds is not None:
            val = None  # cross-validation draws validation folds from the training data
        check_holdout_fractions(self.val_fraction if val is None and self.num_folds is None else None, self.test_fraction if test is None else None)
        val_fraction = self.val_fraction
        if test is None:
            # Carved out first, so folds and the validation share never touch it.
            train_idx, test_idx = stratified_split(train.labels, self.test_fraction, self.split_seed, name="data.test_fraction")
            train, test = train.subset(train_idx), train.subset(test_idx)
            val_fraction = self.val_fraction / (1.0 - self.test_fraction)  # both are shares of the whole file
        if self.num_folds is not None:
            train_idx, val_idx = kfold_split(train.labels, self.num_folds, self.fold, self.split_seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        elif val is None:
            train_idx, val_idx = stratified_split(train.labels, val_fraction, self.split_seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        return {"train": train, "val": val, "test": test}

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
                where = self.split_source(split_name)
                raise SeqlabError(f"{where}: labels {sorted(unknown)[:5]} are outside the declared set {names}")
        return names

    def split_source(self, split: str) -> str:
        """Where a split's texts come from, for error messages (a file name where there is one)."""
        return f"{type(self).__name__} {split} split"

    def drawn_from_training(self, split: str) -> bool:
        """Whether a split's texts are drawn from the source's training split (which its validation split
        joins with `merge_val` or `fold_split="test"`) rather than read from the source's own split."""
        if split == "test":
            return self.fold_split == "test"
        return split == "val" and (self.num_folds is not None or self.merge_val)

    def _texts_loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        batching: dict[str, Any] = {"batch_size": self.batch_size if split == "train" else self.eval_batch_size, "shuffle": shuffle}
        if shuffle and self.bucket_by_length:
            sampler = RandomSampler(dataset)
            batching = {"batch_sampler": BucketBatchSampler(sampler, self.batch_size, False, dataset.lengths, self.bucket_batches)}
        return self._loader(dataset, PadToLongest(self.tokenizer.pad_id), **batching)
