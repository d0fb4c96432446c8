"""What every seqlab DataModule offers a run, and the plumbing they share.

A run builds its DataModule from `data.*`, then asks it for loaders, for the sizes the model and the
task take from the data (`model_dims`, `task_dims`), for the split sizes it records, and to write
what later commands reload (`save_to`). `SequenceDataModule` gives both families (text
classification and language modelling) the same answers to these, and the same settings: batch
sizes, loader workers, folds and the token cache. A family says how it builds its tokenised splits
(`_build`), what identifies its source (`source_identity`) and which of its settings change the
result (`_split_settings`), and turns a cache entry into datasets (`_use`).
"""

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from seqlab.data.cache import CacheEntry, TokenCache
from seqlab.data.splits import check_fold, check_fold_split
from seqlab.data.tokenizers import TextTokenizer

log = logging.getLogger(__name__)


class SequenceDataModule(pl.LightningDataModule, ABC):
    """Tokenised text in train, val and test splits, cached under `cache_dir` and batched.

    Training batches hold `batch_size` sequences and evaluation batches `eval_batch_size` (by default
    `batch_size`); `num_workers`, `pin_memory` and `persistent_workers` (which takes effect only with
    workers) go to every DataLoader. With `num_folds` set, fold `fold` of the training data validates,
    or with `fold_split="test"` (cross-validation for evaluation, classification only) tests.
    The tokenizer is fitted on the training split when it trains on texts, and is part of the cache key.
    """

    # The unit of the split sizes, as the log names it after the numbers ("" for a count of texts).
    SIZE_UNIT = ""

    def __init__(
        self,
        tokenizer: TextTokenizer,
        batch_size: int,
        eval_batch_size: int | None = None,
        num_folds: int | None = None,
        fold: int | None = None,
        fold_split: str = "validation",
        cache_dir: str | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_folds = num_folds
        self.fold = fold
        self.fold_split = fold_split
        self.cache = TokenCache(cache_dir)
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.is_set_up = False

    # -- what a family says -----------------------------------------------------------------

    def source_identity(self) -> Any:
        """What identifies the source for the cache key (files' paths, sizes, contents), or None to never cache."""
        return None

    @abstractmethod
    def _split_settings(self) -> dict[str, Any]:
        """The settings besides the source and the tokenizer that change the tokenised splits (for the cache key)."""

    @abstractmethod
    def _build(self) -> CacheEntry:
        """Read the source, split it, fit the tokenizer on the training split if it is not fitted, encode every split."""

    @abstractmethod
    def _use(self, entry: CacheEntry) -> None:
        """Make the datasets of the splits from a (built or cached) entry."""

    @abstractmethod
    def _sizes(self) -> dict[str, int]:
        """Each split's size, in the unit `SIZE_UNIT` names, once set up."""

    # -- Lightning hooks --------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.is_set_up:
            return
        if self.num_folds is not None:
            check_fold(self.num_folds, self.fold)
        check_fold_split(self.fold_split, self.num_folds)
        self._use(self.cache.tokenized_splits(self.tokenizer, self._cache_key_parts, self._build, type(self).__name__))
        self.is_set_up = True
        log.info("data: %s%s", ", ".join(f"{name} {size}" for name, size in self._sizes().items()), self.SIZE_UNIT)

    # -- what models, tasks and run dirs need -----------------------------------------------

    @property
    def split_sizes(self) -> dict[str, int]:
        """`data/<split>_size` of each split, as run dirs record them."""
        return {f"data/{name}_size": size for name, size in self._sizes().items()}

    def model_dims(self) -> dict[str, int]:
        """The sizes a model takes from its data."""
        return {"vocab_size": self.tokenizer.vocab_size}

    @abstractmethod
    def task_dims(self) -> dict[str, Any]:
        """What a task takes from its data besides the model's sizes."""

    def save_to(self, run_dir: Path) -> None:
        """Write the fitted tokenizer, which eval, predict, export and generate reload."""
        self.tokenizer.save(run_dir / "tokenizer.json")

    # -- internals --------------------------------------------------------------------------

    def _cache_key_parts(self) -> dict[str, Any] | None:
        identity = self.source_identity()
        if identity is None:
            return None
        return {"module": type(self).__qualname__, "source": identity, "tokenizer": self.tokenizer.identity(), **self._split_settings()}

    def _loader(self, dataset: Dataset, collate_fn: Any, **batching: Any) -> DataLoader:
        """A DataLoader over `dataset` with the worker settings; `batching` is DataLoader's `batch_size`
        with `shuffle` or `sampler`, or a `batch_sampler`."""
        return DataLoader(
            dataset,
            **batching,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
