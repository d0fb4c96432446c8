"""Language modelling over unlabelled text gathered for pretraining: plain text files and the sentences
of labelled files with their labels dropped (so a model can pretrain on a classification set's own
training sentences before it is fine-tuned on their labels)."""

from collections.abc import Sequence
from pathlib import Path

from seqlab.data.cache import file_identity
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.text_files import read_label_text_lines
from seqlab.errors import SeqlabError


class UnlabelledTextDataModule(LanguageModelingDataModule):
    """The sentences of `labelled_files` (`LABEL TEXT` lines, one sentence a line, labels dropped), then
    the text of `files`, joined in that order and split by position as LanguageModelingDataModule does."""

    def __init__(self, files: Sequence[str] = (), labelled_files: Sequence[str] = (), **kwargs) -> None:
        if not files and not labelled_files:
            raise SeqlabError("UnlabelledTextDataModule needs files=[...] or labelled_files=[...]")
        super().__init__(files=files, **kwargs)
        self.labelled_files = [Path(f) for f in labelled_files]

    def source_identity(self) -> dict:
        return {"labelled_files": file_identity(self.labelled_files), "files": file_identity(self.files), "encoding": self.encoding}

    def read_text(self) -> str:
        texts = ["\n".join(read_label_text_lines(path, self.encoding).texts) for path in self.labelled_files]
        if self.files:
            texts.append(super().read_text())
        return "\n".join(texts)
