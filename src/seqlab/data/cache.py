"""On-disk cache of tokenised datasets: memory-mapped NumPy arrays under a key that hashes what they came from.

An entry is a folder `<cache_dir>/<key>/` holding `meta.json` (the fitted tokenizer, label names,
...) and `.npy` arrays: each ragged array (one token-id sequence per text) as a flat `values` array
plus `offsets`. The key hashes the source files' identity (absolute path, size and a BLAKE2b hash of
the bytes, so a file edited with its size and modification time kept still builds anew), the
tokenizer's settings and fitted state, and every setting that changes the result (encoding, split,
folds, truncation), so a changed file or setting builds a new entry. Hashing reads each source file
once per process: a file whose path, size, modification and change times and inode are unchanged is
not read again by the same process (an edit in place changes the change time even when the size and
modification time are put back).

Writes are atomic: an entry is written into a temporary folder `.<key>.<host>.<pid>.<random>` beside it
and renamed into place, so a reader never sees half of one and a failed build leaves nothing. The
ranks of a DDP run and the jobs of a multirun that build the same entry each write their own
temporary folder; the first rename wins. A write killed before its rename leaves its temporary
folder behind, which a later run removes once it is clearly abandoned: its process (the pid in its
name) no longer runs on this host, or it is over an hour old (a process on another host sharing the
data folder cannot be checked, and no write takes an hour).

An entry that cannot be read back (a truncated array, a damaged `meta.json`, a missing file) is
removed and rebuilt, with a one-line warning.
"""

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

from seqlab.data.tokenizers import LONG_TEXT, long_text_pieces
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

# Bump when the layout of an entry or the meaning of its key changes: old entries are then ignored.
CACHE_FORMAT = 2

HOST = socket.gethostname()
# A temporary folder of a write: `.<key>.<host>.<pid>.<random>` (and `.<key>.<random>` from format 1).
TEMP_FOLDER = re.compile(r"\.(?P<key>[0-9a-f]{32})\.(?:(?P<host>.+)\.(?P<pid>\d+)\.)?[^.]+")
ABANDONED_AFTER_S = 3600
# What reading a damaged entry raises: a missing or truncated file, JSON or .npy that does not parse,
# a meta.json of another shape.
DAMAGED_ENTRY_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError)


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


@functools.lru_cache(maxsize=1 << 17)
def content_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """BLAKE2b of the file's bytes, read in 1 MiB chunks. The stat fields are the key of this process's
    memo of digests: they are not otherwise used."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digest_of(path: str, stat: os.stat_result) -> str:
    return content_digest(path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


def file_identity(paths: Iterable[Path]) -> list[list[Any]]:
    """(absolute path, size, content hash) of each file: what the cache key says about sources."""
    identity = []
    for path in paths:
        if not path.is_file():
            raise SeqlabError(f"{path}: no such file")
        resolved = str(path.resolve())
        stat = os.stat(resolved)
        identity.append([resolved, stat.st_size, _digest_of(resolved, stat)])
    return identity


def folder_identity(folder: Path, suffix: str) -> str:
    """A digest of the name, size and content hash of every file in `folder` whose name ends with
    `suffix` (for folders of many small files, such as IMDb's 12,500 reviews per folder)."""
    root = str(folder.resolve())
    digest = hashlib.sha256(root.encode())
    with os.scandir(root) as entries:
        files = sorted((entry.name, entry.path, entry.stat()) for entry in entries if entry.name.endswith(suffix) and entry.is_file())
    for name, path, stat in files:
        digest.update(f"{name}\0{stat.st_size}\0{_digest_of(path, stat)}\n".encode())
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
        self._remove_abandoned_writes()
        if folder.is_dir():
            try:
                entry = self._load(folder)
            except DAMAGED_ENTRY_ERRORS as error:
                log.warning("data cache: %s is damaged (%s); rebuilding it", folder, _one_line(error))
                self._discard(folder)
            else:
                log.info("data cache hit: %s from %s", what, folder)
                return entry
        log.info("data cache miss: tokenising %s into %s", what, folder)
        entry = build()
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._store(folder, entry)
        except OSError as error:
            # A read-only data folder (a shared dataset) still trains; it just can't remember the result.
            log.warning("data cache: cannot write %s (%s); set data.cache_dir to a writable folder", folder, _one_line(error))
            return entry
        try:
            return self._load(folder)
        except DAMAGED_ENTRY_ERRORS as error:  # a damaged entry that could not be moved aside
            log.warning("data cache: %s is damaged and cannot be replaced (%s); set data.cache_dir to a writable folder", folder, _one_line(error))
            return entry

    def tokenized_splits(self, tokenizer: Any, key_parts: Callable[[], dict[str, Any] | None], build: Callable[[], CacheEntry], what: str) -> CacheEntry:
        """The tokenised splits, cached or built, with `tokenizer` in the state they were encoded with.

        A ready-made tokenizer is loaded first, since its state is part of the key; a tokenizer that
        trains on the texts takes its fitted state from the entry (the build fitted it, or a hit skipped that).
        """
        if not tokenizer.is_fitted and not tokenizer.trains_on_texts:
            tokenizer.fit([])
        # The key hashes the source files: not worth reading them for a cache that is off.
        entry = self.get_or_build(key_parts() if self.cache_dir is not None else None, build, what)
        if not tokenizer.is_fitted:
            tokenizer.load_state(entry.meta["tokenizer"]["state"])
        return entry

    def _remove_abandoned_writes(self) -> None:
        """Remove the temporary folders of writes that were killed (see the module docstring)."""
        try:
            with os.scandir(self.cache_dir) as found:
                names = [entry.name for entry in found if entry.name.startswith(".") and entry.is_dir()]
        except OSError:  # no cache yet, or not readable
            return
        for name in names:
            match = TEMP_FOLDER.fullmatch(name)
            if match is None:
                continue
            path = self.cache_dir / name
            try:
                age = time.time() - path.stat().st_mtime
            except OSError:  # its own process renamed or removed it meanwhile
                continue
            dead_here = match["host"] == HOST and not _running_here(int(match["pid"]))
            if dead_here or age > ABANDONED_AFTER_S:
                log.info("data cache: removing %s, left by a write that did not finish", path)
                shutil.rmtree(path, ignore_errors=True)

    def _temp_prefix(self, key: str) -> str:
        return f".{key}.{HOST}.{os.getpid()}."

    def _discard(self, folder: Path) -> None:
        """Move a damaged entry aside (another process may be reading it) and remove it."""
        aside = folder.with_name(self._temp_prefix(folder.name) + uuid.uuid4().hex[:8])
        try:
            os.rename(folder, aside)
        except OSError:  # another process moved it first, or the folder is read-only
            return
        shutil.rmtree(aside, ignore_errors=True)

    def _store(self, folder: Path, entry: CacheEntry) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=self._temp_prefix(folder.name), dir=self.cache_dir))
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
        if not isinstance(meta, dict):
            raise ValueError("meta.json is not a JSON object")
        ragged = {
            name: RaggedArray(np.load(folder / f"{name}.values.npy", mmap_mode="r"), np.load(folder / f"{name}.offsets.npy")) for name in meta.pop("ragged")
        }
        for name, array in ragged.items():
            if len(array.offsets) == 0 or array.offsets[-1] != len(array.values):
                raise ValueError(f"{name}: the offsets do not match the values")
        arrays = {name: np.load(folder / f"{name}.npy") for name in meta.pop("arrays")}
        return CacheEntry(meta, ragged, arrays)


def _running_here(pid: int) -> bool:
    """Whether process `pid` runs on this host (where that cannot be told, it is taken to run)."""
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int | None = None, chunk_size: int = 2048) -> RaggedArray:
    """Tokenise `texts` in batches (the tokenizer encodes each batch in parallel) into a RaggedArray.

    Without `max_length`, a long text (a language model's corpus is one text per split) is encoded as
    its `long_text_pieces` when the tokenizer gives the same ids that way: one text would run on one core.
    """
    if max_length is None and tokenizer.encodes_long_text_in_pieces and any(len(text) > LONG_TEXT for text in texts):
        pieces = [long_text_pieces(text) for text in texts]
        encoded = _encode_in_batches(tokenizer, [piece for text_pieces in pieces for piece in text_pieces], None, chunk_size)
        first_pieces = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum([len(text_pieces) for text_pieces in pieces], out=first_pieces[1:])
        return RaggedArray(encoded.values, encoded.offsets[first_pieces])
    return _encode_in_batches(tokenizer, texts, max_length, chunk_size)


def _encode_in_batches(tokenizer: Any, texts: Sequence[str], max_length: int | None, chunk_size: int) -> RaggedArray:
    parts = []
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=len(texts) < 8 * chunk_size or not console.is_terminal) as progress:
        task = progress.add_task("tokenising", total=len(texts))
        for start in range(0, len(texts), chunk_size):
            batch = texts[start : start + chunk_size]
            parts.append(RaggedArray.from_sequences(tokenizer.encode_batch(batch, max_length=max_length)))
            progress.advance(task, len(batch))
    return RaggedArray.concatenate(parts)
