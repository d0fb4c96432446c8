"""The Large Movie Review Dataset (IMDb): 25,000 training and 25,000 test reviews, positive or negative.

Read from the standard layout `<data_dir>/aclImdb/{train,test}/{pos,neg}/*.txt`; when that folder is
absent the official archive is downloaded, verified against its checksum and unpacked into a
temporary folder that is renamed into place, so an interrupted unpack never looks like a dataset.
An archive put at `<data_dir>/aclImdb_v1.tar.gz` by hand is verified and unpacked instead.
"""

import logging
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from seqlab.data.cache import folder_identity
from seqlab.data.classification import LabelledTexts, TextClassificationDataModule
from seqlab.data.download import download_file, sha256_of
from seqlab.data.io import read_text
from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)

LABELS = ("neg", "pos")
ARCHIVE = "aclImdb_v1.tar.gz"
LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


class IMDBDataModule(TextClassificationDataModule):
    """IMDb reviews (read in `encoding`) with their `<br />` markup stripped; validation is a seeded stratified
    `val_fraction` of the training reviews (or a fold of them), the test reviews are the test set."""

    URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
    # The published archive (84,125,825 bytes), as listed in TensorFlow Datasets' imdb_reviews checksums.
    SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

    def __init__(self, data_dir: str, download: bool = True, encoding: str = "utf-8", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "aclImdb"
        self.download = download
        self.encoding = encoding

    def prepare_data(self) -> None:
        if self.root.is_dir():
            return
        archive = self.data_dir / ARCHIVE
        where = f"put the extracted aclImdb folder (train/ and test/, each with pos/ and neg/) at {self.root}"
        if not self.download and not archive.is_file():
            raise SeqlabError(f"{self.root}: no such folder; {where} (data.download=false)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Everything happens in a folder of this process's own: the ranks of a multi-process run all
        # prepare the data, and the first to finish renames its copy into place.
        tmp = Path(tempfile.mkdtemp(prefix=".aclImdb.", dir=self.data_dir))
        try:
            if archive.is_file():  # put there by hand: verify it, unpack it, leave it
                if sha256_of(archive) != self.SHA256:
                    raise SeqlabError(f"{archive} has the wrong checksum (expected {self.SHA256}); delete it to download again")
            else:
                archive = download_file(self.URL, tmp / ARCHIVE, self.SHA256, where_to_put=f"{where}, or the archive at {archive}")
            self._unpack(archive, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _unpack(self, archive: Path, tmp: Path) -> None:
        console = Console(stderr=True)
        try:
            with tarfile.open(archive, "r:gz") as tar, Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
                members = tar.getmembers()
                for member in progress.track(members, description=f"unpacking {archive.name}"):
                    tar.extract(member, tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as error:
            raise SeqlabError(f"{archive.name}: cannot unpack ({error}); nothing was written to {self.root}") from None
        unpacked = tmp / "aclImdb"
        if not (unpacked / "train").is_dir() or not (unpacked / "test").is_dir():
            raise SeqlabError(f"{archive.name}: the archive has no aclImdb/train and aclImdb/test folders")
        try:
            os.rename(unpacked, self.root)
        except OSError:
            if not self.root.is_dir():  # anything but another process having finished first
                raise
        log.info("unpacked %s into %s", archive.name, self.root)

    def _folders(self) -> dict[tuple[str, str], Path]:
        if not self.root.is_dir():
            raise SeqlabError(f"{self.root}: no such folder; put the extracted aclImdb folder there or set paths.data_dir")
        folders = {(split, label): self.root / split / label for split in ("train", "test") for label in LABELS}
        for folder in folders.values():
            if not folder.is_dir():
                raise SeqlabError(f"{folder}: no such folder; {self.root} must hold train/ and test/, each with pos/ and neg/")
        return folders

    def source_identity(self) -> dict[str, str]:
        identity = {f"{split}/{label}": folder_identity(folder, ".txt") for (split, label), folder in self._folders().items()}
        return {**identity, "encoding": self.encoding}

    def read_splits(self) -> dict[str, LabelledTexts]:
        splits = {"train": LabelledTexts([], []), "test": LabelledTexts([], [])}
        for (split, label), folder in self._folders().items():
            files = sorted(folder.glob("*.txt"))
            if not files:
                raise SeqlabError(f"{folder}: no reviews (*.txt) in the folder")
            for path in files:
                splits[split].texts.append(_read_review(path, self.encoding))
                splits[split].labels.append(label)
        return splits

    def split_source(self, split: str) -> str:
        return str(self.root / ("test" if split == "test" and not self.drawn_from_training(split) else "train"))


def _read_review(path: Path, encoding: str) -> str:
    return LINE_BREAK.sub(" ", read_text(path, encoding, allow_empty=True)).strip()
