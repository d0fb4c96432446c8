"""Parallel text for sequence-to-sequence models: pairs of a source and a target text from the user's
TSV, CSV or JSONL files, split, tokenised with one tokenizer fitted on both sides (or one per side,
`separate_tokenizers=true`), cached and batched.

Splits come from the files (`val_file`, `test_file`), from named groups of a group column (whole Bible
books: `group_column=ref group_pattern='^(.+) \\d+:\\d+$' val_groups=[Mark]`, so no verse of a
validation book is trained on), or from seeded shares of the training file. Training pairs longer
than `max_source_length` / `max_target_length` tokens are dropped (`filter_long_pairs=true`) or cut;
validation and test pairs are only ever cut, so every evaluation sees the same pairs; the counts go to
the log.

The target side's ids get two more tokens after its tokenizer's vocabulary, begin-of-sequence
(`bos_id = vocab_size`) and end-of-sequence (`eos_id = vocab_size + 1`), so any of seqlab's tokenizers
serves, saved and reloaded as every run's tokenizer is (a target side's own as target_tokenizer.json).
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from seqlab.data.base import SequenceDataModule
from seqlab.data.batching import BucketBatchSampler
from seqlab.data.cache import CacheEntry, RaggedArray, encode_texts
from seqlab.data.language_modeling import IGNORE_INDEX
from seqlab.data.splits import check_holdout_fractions, kfold_split, stratified_split
from seqlab.data.text_files import files_source_identity, read_labelled_file, resolve_data_files
from seqlab.data.tokenizers import TextTokenizer
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class TextPairs:
    sources: list[str]
    targets: list[str]

    def subset(self, indices: np.ndarray) -> "TextPairs":
        return TextPairs([self.sources[i] for i in indices], [self.targets[i] for i in indices])


def special_ids(tokenizer: TextTokenizer, target_tokenizer: TextTokenizer | None = None) -> dict[str, int]:
    """The sizes and special ids a sequence-to-sequence model takes from the tokenizers: the target
    side's vocabulary plus begin- and end-of-sequence ids after it; with a `target_tokenizer` of its
    own, `tokenizer` is the source side's alone, whose size and padding id come as `source_*`."""
    target = tokenizer if target_tokenizer is None else target_tokenizer
    vocab = target.vocab_size
    ids = {"vocab_size": vocab + 2, "pad_id": target.pad_id, "bos_id": vocab, "eos_id": vocab + 1}
    if target_tokenizer is not None:
        ids.update(source_vocab_size=tokenizer.vocab_size, source_pad_id=tokenizer.pad_id)
    return ids


def decode_target(tokenizer: TextTokenizer, ids: list[int]) -> str:
    """The text of generated target ids, cut at the first end-of-sequence and without special ids."""
    ids_without_special = []
    for token in ids:
        if token >= tokenizer.vocab_size:
            if token == tokenizer.vocab_size + 1:  # end of sequence
                break
            continue
        if token != tokenizer.pad_id:
            ids_without_special.append(token)
    return tokenizer.decode(ids_without_special).strip()


class EncodedPairs(Dataset):
    """Source and target token ids (possibly memory-mapped from the cache) with the target's text, the
    reference BLEU compares a translation with."""

    def __init__(self, sources: RaggedArray, targets: RaggedArray, references: list[str]) -> None:
        self.sources = sources
        self.targets = targets
        self.references = references

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        return self.sources[index], self.targets[index], self.references[index]

    @property
    def lengths(self) -> np.ndarray:
        return np.maximum(self.sources.lengths, self.targets.lengths)


class PadPairs:
    """Collate pairs into `source_ids` (B, S) padded with `source_pad_id` (default `pad_id`),
    `source_lengths` (B,), `target_in` (B, T): begin-of-sequence then the target, `target_out` (B, T):
    the target then end-of-sequence, padding marked -100 (ignored by the loss), and `references` (the
    target texts)."""

    def __init__(self, pad_id: int, bos_id: int, eos_id: int, source_pad_id: int | None = None) -> None:
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.source_pad_id = pad_id if source_pad_id is None else source_pad_id

    def __call__(self, batch: list[tuple[np.ndarray, np.ndarray, str]]) -> dict[str, Any]:
        source_lengths = [max(len(source), 1) for source, _, _ in batch]  # an empty text still gets one pad step
        target_length = max(len(target) for _, target, _ in batch) + 1
        source_ids = np.full((len(batch), max(source_lengths)), self.source_pad_id, dtype=np.int64)
        target_in = np.full((len(batch), target_length), self.pad_id, dtype=np.int64)
        target_out = np.full((len(batch), target_length), IGNORE_INDEX, dtype=np.int64)
        for row, (source, target, _) in enumerate(batch):
            source_ids[row, : len(source)] = source
            target_in[row, 0] = self.bos_id
            target_in[row, 1 : len(target) + 1] = target
            target_out[row, : len(target)] = target
            target_out[row, len(target)] = self.eos_id
        return {
            "source_ids": torch.from_numpy(source_ids),
            "source_lengths": torch.tensor(source_lengths, dtype=torch.int64),
            "target_in": torch.from_numpy(target_in),
            "target_out": torch.from_numpy(target_out),
            "references": [reference for _, _, reference in batch],
        }


class ParallelTextDataModule(SequenceDataModule):
    """Source-target pairs from `train_file` (and optionally `val_file`, `test_file`): TSV, CSV or JSONL
    with the columns `source_column` and `target_column` (`format` as for data=text_files).

    Validation and test: the files when given; else, with `group_column`, the pairs whose group (the
    column's value, or the first group `group_pattern` captures from it) is in `val_groups` /
    `test_groups`; else seeded `val_fraction` / `test_fraction` shares of the training file (or fold
    `fold` of `num_folds`). `max_examples` keeps the first pairs of the training split only, for
    quick checks. `settings` are SequenceDataModule's.

    `tokenizer` is fitted on both sides, or with `separate_tokenizers` on the sources only and
    `target_tokenizer` on the targets.
    """

    def __init__(
        self,
        tokenizer: TextTokenizer,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        format: str | None = None,
        source_column: str = "source",
        target_column: str = "target",
        group_column: str | None = None,
        group_pattern: str | None = None,
        val_groups: list[str] | None = None,
        test_groups: list[str] | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        max_source_length: int | None = 128,
        max_target_length: int | None = 128,
        filter_long_pairs: bool = True,
        max_examples: int | None = None,
        batch_size: int = 64,
        bucket_by_length: bool = True,
        bucket_batches: int = 50,
        data_dir: str | None = None,
        encoding: str = "utf-8",
        separate_tokenizers: bool = False,
        target_tokenizer: TextTokenizer | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(tokenizer, batch_size, **settings)
        if separate_tokenizers and target_tokenizer is None:
            raise SeqlabError("data.separate_tokenizers=true needs data.target_tokenizer: choose one with data/tokenizer@data.target_tokenizer=bpe")
        # The target side's own tokenizer; None when `tokenizer` serves both sides.
        self.separate_target_tokenizer = target_tokenizer if separate_tokenizers else None
        self.file_names = {split: name for split, name in {"train": train_file, "val": val_file, "test": test_file}.items() if name}
        self.format = format
        self.source_column = source_column
        self.target_column = target_column
        self.group_column = group_column
        self.group_pattern = group_pattern
        self.val_groups = [str(group) for group in val_groups or []]
        self.test_groups = [str(group) for group in test_groups or []]
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.filter_long_pairs = filter_long_pairs
        self.max_examples = max_examples
        self.bucket_by_length = bucket_by_length
        self.bucket_batches = bucket_batches
        self.data_dir = data_dir
        self.encoding = encoding
        self.datasets: dict[str, EncodedPairs] = {}

    # -- Lightning hooks --------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        if self.fold_split == "test":
            raise SeqlabError("data.fold_split=test (cv.protocol=test) is for classification data; parallel text's folds validate (cv.protocol=validation)")
        target = self.separate_target_tokenizer
        if target is not None and not target.is_fitted and not target.trains_on_texts:
            target.fit([])  # a ready-made tokenizer's state is part of the cache key, as the source side's
        super().setup(stage)

    def train_dataloader(self) -> DataLoader:
        return self._pairs_loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._pairs_loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._pairs_loader("test", shuffle=False)

    # -- what models and tasks need ---------------------------------------------------------

    @property
    def target_tokenizer(self) -> TextTokenizer:
        """The target side's tokenizer: its own, or the one both sides share."""
        return self.tokenizer if self.separate_target_tokenizer is None else self.separate_target_tokenizer

    def model_dims(self) -> dict[str, int]:
        return special_ids(self.tokenizer, self.separate_target_tokenizer)

    def task_dims(self) -> dict[str, Any]:
        """The target side's tokenizer, which turns generated ids into text for BLEU and the logged samples."""
        return {"tokenizer": self.target_tokenizer}

    def save_to(self, run_dir: Path) -> None:
        """Write tokenizer.json, and a target side's own tokenizer as target_tokenizer.json."""
        super().save_to(run_dir)
        if self.separate_target_tokenizer is not None:
            self.separate_target_tokenizer.save(run_dir / "target_tokenizer.json")

    # -- reading and splitting --------------------------------------------------------------

    @property
    def files(self) -> dict[str, Path]:
        return resolve_data_files(self.file_names, self.data_dir)

    def source_identity(self) -> dict[str, Any]:
        reader = [self.format, self.source_column, self.target_column, self.group_column, self.group_pattern, self.encoding]
        return files_source_identity(self.files, reader)

    def read_pairs(self, path: Path) -> TextPairs:
        """The file's pairs; a missing column or an empty target is one line naming the file and the row."""
        pairs = read_labelled_file(path, self.format, self.source_column, self.target_column, self.encoding, ("data.source_column", "data.target_column"))
        return TextPairs(pairs.texts, pairs.labels)

    def read_groups(self, path: Path) -> list[str]:
        """Each row's group: the `group_column` value, or what `group_pattern` captures from it."""
        groups = read_labelled_file(
            path, self.format, self.target_column, self.group_column, self.encoding, ("data.target_column", "data.group_column (null: no groups)")
        ).labels
        if self.group_pattern is None:
            return groups
        pattern = re.compile(self.group_pattern)
        captured = []
        for row, value in enumerate(groups):
            match = pattern.search(value)
            if match is None:
                raise SeqlabError(f"{path}: row {row + 1}: data.group_pattern {self.group_pattern!r} does not match {value!r} in {self.group_column!r}")
            captured.append(match.group(1) if pattern.groups else match.group(0))
        return captured

    def text_pairs(self) -> dict[str, TextPairs]:
        """The train, val and test pairs as texts, split as the settings say (before filtering and tokenising)."""
        files = self.files
        splits = {split: self.read_pairs(path) for split, path in files.items()}
        train = splits["train"]
        if self.group_column is not None:
            groups = np.array(self.read_groups(files["train"]))
            # With folds, validation is fold `fold` of the training groups rather than named groups.
            named = {"test": self.test_groups} if self.num_folds is not None else {"val": self.val_groups, "test": self.test_groups}
            for split, names in named.items():
                if split in splits:
                    continue
                if not names:
                    raise SeqlabError(f"data.group_column={self.group_column!r} needs data.{split}_groups (the groups that {split}), or a data.{split}_file")
                missing = sorted(set(names) - set(groups.tolist()))
                if missing:
                    raise SeqlabError(
                        f"data.{split}_groups: {missing} are not groups of {files['train']} (some are: {sorted(set(groups.tolist()))[:3]}); "
                        "check the names, or set data.group_pattern to take the group out of the column"
                    )
            held_out = {split: np.isin(groups, names) for split, names in named.items() if split not in splits}
            trains = np.ones(len(groups), dtype=bool)
            for rows in held_out.values():
                trains &= ~rows
            if self.num_folds is not None:
                # Whole groups go to folds, so no group is both trained on and validated.
                training_groups = sorted(set(groups[trains].tolist()))
                _, val_groups = kfold_split([None] * len(training_groups), self.num_folds, self.fold, self.split_seed)
                held_out["val"] = trains & np.isin(groups, [training_groups[i] for i in val_groups])
                trains &= ~held_out["val"]
            for split, rows in held_out.items():
                splits[split] = train.subset(np.flatnonzero(rows))
            splits["train"] = train.subset(np.flatnonzero(trains))
        else:
            draws_val = self.num_folds is None and "val" not in splits
            check_holdout_fractions(self.val_fraction if draws_val else None, self.test_fraction if "test" not in splits else None)
            val_fraction = self.val_fraction
            if "test" not in splits:
                # Carved out first, so folds and the validation share never touch it.
                train_idx, test_idx = stratified_split([None] * len(train.sources), self.test_fraction, self.split_seed, name="data.test_fraction")
                splits["train"], splits["test"] = train.subset(train_idx), train.subset(test_idx)
                val_fraction = self.val_fraction / (1.0 - self.test_fraction)  # both are shares of the whole file
            if self.num_folds is not None:
                train = splits["train"]
                train_idx, val_idx = kfold_split([None] * len(train.sources), self.num_folds, self.fold, self.split_seed)
                splits["train"], splits["val"] = train.subset(train_idx), train.subset(val_idx)
            elif "val" not in splits:
                train = splits["train"]
                train_idx, val_idx = stratified_split([None] * len(train.sources), val_fraction, self.split_seed)
                splits["train"], splits["val"] = train.subset(train_idx), train.subset(val_idx)
        if self.max_examples is not None:
            splits["train"] = splits["train"].subset(np.arange(min(self.max_examples, len(splits["train"].sources))))
        for split in SPLITS:
            if not splits[split].sources:
                raise SeqlabError(f"{type(self).__name__}: the {split} split is empty; check data.{split}_groups, data.{split}_fraction or data.{split}_file")
        return {split: splits[split] for split in SPLITS}

    # -- SequenceDataModule -----------------------------------------------------------------

    def _split_settings(self) -> dict[str, Any]:
        settings = {
            "split": [self.val_groups, self.test_groups, self.val_fraction, self.test_fraction, self.num_folds, self.fold, self.split_seed],
            "lengths": [self.max_source_length, self.max_target_length, self.filter_long_pairs, self.max_examples],
        }
        if self.separate_target_tokenizer is not None:  # its settings and state change the target ids as the tokenizer's do
            settings["target_tokenizer"] = self.separate_target_tokenizer.identity()
        return settings

    def _build(self) -> CacheEntry:
        """Read and split the pairs, fit the tokenizer on both sides of the training split (or each
        side's own on that side), drop or cut long pairs, and encode every split."""
        splits = self.text_pairs()
        target_tokenizer = self.separate_target_tokenizer
        if not self.tokenizer.is_fitted:
            self.tokenizer.fit(splits["train"].sources if target_tokenizer is not None else splits["train"].sources + splits["train"].targets)
        if target_tokenizer is not None and not target_tokenizer.is_fitted:
            target_tokenizer.fit(splits["train"].targets)
        ragged, references = {}, {}
        for name, pairs in splits.items():
            sources = encode_texts(self.tokenizer, pairs.sources)
            targets = encode_texts(self.target_tokenizer, pairs.targets)
            too_long = np.zeros(len(sources), dtype=bool)
            if self.max_source_length:
                too_long |= sources.lengths > self.max_source_length
            if self.max_target_length:
                too_long |= targets.lengths > self.max_target_length
            keep = np.flatnonzero(~too_long) if name == "train" and self.filter_long_pairs else np.arange(len(sources))
            verb = "dropped" if name == "train" and self.filter_long_pairs else "cut"
            if too_long.any():
                log.info(
                    "data: %s of %s %s pairs are longer than %s source / %s target tokens: %s",
                    f"{int(too_long.sum()):,}",
                    f"{len(sources):,}",
                    name,
                    self.max_source_length,
                    self.max_target_length,
                    verb,
                )
            ragged[f"{name}.source"] = RaggedArray.from_sequences(sources[i][: self.max_source_length] for i in keep)
            ragged[f"{name}.target"] = RaggedArray.from_sequences(targets[i][: self.max_target_length] for i in keep)
            references[name] = [pairs.targets[i] for i in keep]
        meta = {"tokenizer": self.tokenizer.to_dict(), "references": references}
        if target_tokenizer is not None:
            meta["target_tokenizer"] = target_tokenizer.to_dict()
        return CacheEntry(meta, ragged, {})

    def _use(self, entry: CacheEntry) -> None:
        target_tokenizer = self.separate_target_tokenizer
        if target_tokenizer is not None and not target_tokenizer.is_fitted:
            target_tokenizer.load_state(entry.meta["target_tokenizer"]["state"])
        for name in SPLITS:
            self.datasets[name] = EncodedPairs(entry.ragged[f"{name}.source"], entry.ragged[f"{name}.target"], entry.meta["references"][name])

    def _sizes(self) -> dict[str, int]:
        return {name: len(dataset) for name, dataset in self.datasets.items()}

    def _pairs_loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        ids = self.model_dims()
        collate = PadPairs(ids["pad_id"], ids["bos_id"], ids["eos_id"], ids.get("source_pad_id"))
        batching: dict[str, Any] = {"batch_size": self.batch_size if split == "train" else self.eval_batch_size, "shuffle": shuffle}
        if shuffle and self.bucket_by_length:
            batching = {"batch_sampler": BucketBatchSampler(RandomSampler(dataset), self.batch_size, False, dataset.lengths, self.bucket_batches)}
        elif not shuffle:
            # Evaluation decodes whole batches: pairs of similar length waste fewer decoding steps.
            batching = {"sampler": np.argsort(dataset.lengths, kind="stable").tolist(), "batch_size": batching["batch_size"]}
        return self._loader(dataset, collate, **batching)
