"""On-disk cache of tokenised datasets: memory-mapped NumPy arrays under a key that hashes what they came from.

An entry is a folder `<cache_dir>/<key>/` holding `meta.json` (the fitted tokenizer, label names,
...) and `.npy` arrays: each ragged array (one token-id sequence per text) as a flat `values` array
plus `offsets`. The key hashes the source files' identity (path, size, modification time), the
tokenizer's settings and fitted state, and every setting that changes the result (split, folds,
truncation), so a changed file or setting builds a new entry. An entry is written into a temporary
folder and renamed into place, so a reader never sees half of one and a failed build leaves nothing.
"""

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

# Bump when the layout of an entry or the meaning of its key changes: old entries are then ignored.
CACHE_FORMAT = 1


class RaggedArray:
    """Sequences of different lengths stored as one flat array and the offsets where each starts."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values = values
        self.offsets = offsets

    @classmethod
    def from_sequences(cls, sequences: Iterable[Sequence[int]], dtype: type = np.int32) -> "RaggedArray":
        sequences = list(sequences)
        lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
        offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = np.fromiter(chain.from_iterable(sequences), dtype=dtype, count=int(offsets[-1]))
        return cls(values, offsets)

    @classmethod
    def concatenate(cls, parts: Sequence["RaggedArray"]) -> "RaggedArray":
        if not parts:
            return cls(np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64))
        values = np.concatenate([part.values for part in parts])
        starts = np.cumsum([0] + [len(part.values) for part in parts[:-1]])
        offsets = np.concatenate([[0]] + [part.offsets[1:] + start for part, start in zip(parts, starts)]).astype(np.int64)
        return cls(values, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def file_identity(paths: Iterable[Path]) -> list[list[Any]]:
    """(absolute path, size, modification time) of each file: what the cache key says about sources."""
    identity = []
    for path in paths:
        if not path.is_file():
            raise SeqlabError(f"{path}: no such file")
        stat = path.stat()
        identity.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return identity


def folder_identity(folder: Path, suffix: str) -> str:
    """A digest of the identity of every file in `folder` whose name ends with `suffix` (for folders of
    many small files, such as IMDb's 12,500 reviews per folder)."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    with os.scandir(folder) as entries:
        files = sorted((entry.name, entry.stat()) for entry in entries if entry.name.endswith(suffix) and entry.is_file())
    for name, stat in files:
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass
class CacheEntry:
    meta: dict[str, Any]
    ragged: dict[str, RaggedArray]
    arrays: dict[str, np.ndarray]


class TokenCache:
    """Entries under `cache_dir`; with `cache_dir=None` nothing is cached and every run builds."""

    def __init__(self, cache_dir: str | Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None

    @staticmethod
    def key(parts: dict[str, Any]) -> str:
        payload = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def get_or_build(self, parts: dict[str, Any] | None, build: Callable[[], CacheEntry], what: str) -> CacheEntry:
        """The entry for `parts` if cached, else `build()`, stored and then read back memory-mapped.

        `parts=None` means the source has no stable identity (generated data): always build.
        """
        if self.cache_dir is None or parts is None:
            return build()
        key = self.key(parts)
        folder = self.cache_dir / key
        if (folder / "meta.json").is_file():
            log.info("data cache hit: %s from %s", what, folder)
            return self._load(folder)
        log.info("data cache miss: tokenising %s into %s", what, folder)
        entry = build()
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=self.cache_dir))
        except OSError as error:
            # A read-only data folder (a shared dataset) still trains; it just can't remember the result.
            log.warning("data cache: cannot write under %s (%s); set data.cache_dir to a writable folder", self.cache_dir, error.strerror)
            return entry
        self._store(tmp, folder, entry)
        return self._load(folder)

    def tokenized_splits(self, tokenizer: Any, key_parts: Callable[[], dict[str, Any] | None], build: Callable[[], CacheEntry], what: str) -> CacheEntry:
        """The tokenised splits, cached or built, with `tokenizer` in the state they were encoded with.

        A ready-made tokenizer is loaded first, since its state is part of the key; a tokenizer that
        trains on the texts takes its fitted state from the entry (the build fitted it, or a hit skipped that).
        """
        if not tokenizer.is_fitted and not tokenizer.trains_on_texts:
            tokenizer.fit([])
        entry = self.get_or_build(key_parts(), build, what)
        if not tokenizer.is_fitted:
            tokenizer.load_state(entry.meta["tokenizer"]["state"])
        return entry

    @staticmethod
    def _store(tmp: Path, folder: Path, entry: CacheEntry) -> None:
        try:
            for name, ragged in entry.ragged.items():
                np.save(tmp / f"{name}.values.npy", ragged.values)
                np.save(tmp / f"{name}.offsets.npy", ragged.offsets)
            for name, array in entry.arrays.items():
                np.save(tmp / f"{name}.npy", array)
            meta = {**entry.meta, "ragged": sorted(entry.ragged), "arrays": sorted(entry.arrays)}
            # meta.json is what marks an entry complete, so it is written last.
            (tmp / "meta.json").write_text(json.dumps(meta))
            tmp.chmod(0o755)  # mkdtemp makes it private; others sharing the data folder may read the cache
            try:
                os.rename(tmp, folder)
            except OSError:
                if not (folder / "meta.json").is_file():  # anything but another process having won the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _load(folder: Path) -> CacheEntry:
        meta = json.loads((folder / "meta.json").read_text())
        ragged = {
            name: RaggedArray(np.load(folder / f"{name}.values.npy", mmap_mode="r"), np.load(folder / f"{name}.offsets.npy"))
            for name in meta.pop("ragged")
        }
        arrays = {name: np.load(folder / f"{name}.npy") for name in meta.pop("arrays")}
        return CacheEntry(meta, ragged, arrays)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int | None = None, chunk_size: int = 2048) -> RaggedArray:
    """Tokenise `texts` in batches (the tokenizer encodes each batch in parallel) into a RaggedArray."""
    from rich.console import Console
    from rich.progress import Progress

    parts = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=len(texts) < 8 * chunk_size or not console.is_terminal) as progress:
        task = progress.add_task("tokenising", total=len(texts))
        for start in range(0, len(texts), chunk_size):
            batch = texts[start : start + chunk_size]
            parts.append(RaggedArray.from_sequences(tokenizer.encode_batch(batch, max_length=max_length)))
            progress.advance(task, len(batch))
    return RaggedArray.concatenate(parts)
