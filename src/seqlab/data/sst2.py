"""SST-2 at sentence level: `stsa.binary.{train,dev,test}` (`LABEL TEXT` per line) under `<data_dir>/sst2`."""

from pathlib import Path
from typing import Any

from seqlab.data.cache import file_identity
from seqlab.data.classification import LabelledTexts, TextClassificationDataModule
from seqlab.data.text_files import read_label_text_lines
from seqlab.errors import SeqlabError

FILES = {"train": "stsa.binary.train", "val": "stsa.binary.dev", "test": "stsa.binary.test"}


class SST2DataModule(TextClassificationDataModule):
    """The binary Stanford Sentiment Treebank: 6,920 / 872 / 1,821 sentences, labels 0 and 1, read in `encoding`."""

    def __init__(self, data_dir: str, encoding: str = "utf-8", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(data_dir) / "sst2"
        self.encoding = encoding

    def _paths(self) -> dict[str, Path]:
        if not self.root.is_dir():
            raise SeqlabError(f"{self.root}: no such folder; put stsa.binary.{{train,dev,test}} there or set paths.data_dir")
        return {name: self.root / file for name, file in FILES.items()}

    def source_identity(self) -> dict[str, Any]:
        return {"files": file_identity(self._paths().values()), "encoding": self.encoding}

    def read_splits(self) -> dict[str, LabelledTexts]:
        return {name: read_label_text_lines(path, self.encoding) for name, path in self._paths().items()}

    def split_source(self, split: str) -> str:
        return str(self.root / FILES["train" if self.drawn_from_training(split) else split])
