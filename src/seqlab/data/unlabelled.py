"""Language modelling over unlabelled text gathered for pretraining: plain text files, folders of one
text per file, and the sentences of labelled files with their labels dropped (so a model can pretrain on
a classification set's own training texts before it is fine-tuned on their labels)."""

from collections.abc import Sequence
from pathlib import Path

from seqlab.data.cache import file_identity, folder_identity
from seqlab.data.imdb import LINE_BREAK
from seqlab.data.io import read_text
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.text_files import read_label_text_lines
from seqlab.errors import SeqlabError


class UnlabelledTextDataModule(LanguageModelingDataModule):
    """The sentences of `labelled_files` (`LABEL TEXT` lines, one sentence a line, labels dropped), then
    the texts of `text_folders` (every `*.txt` file one text, in name order, as IMDb keeps its reviews),
    then the text of `files`, joined by line breaks in that order and split by position as
    LanguageModelingDataModule does.

    `strip_line_break_tags` reads HTML `<br />` tags as spaces everywhere, as data=imdb reads its
    reviews, so a vocabulary fitted here gives a classifier on that data the same tokens.
    """

    def __init__(
        self,
        files: Sequence[str] = (),
        labelled_files: Sequence[str] = (),
        text_folders: Sequence[str] = (),
        strip_line_break_tags: bool = False,
        **kwargs,
    ) -> None:
        if not files and not labelled_files and not text_folders:
            raise SeqlabError("UnlabelledTextDataModule needs files=[...], labelled_files=[...] or text_folders=[...]")
        super().__init__(files=files, **kwargs)
        self.labelled_files = [Path(f) for f in labelled_files]
        self.text_folders = [Path(f) for f in text_folders]
        self.strip_line_break_tags = strip_line_break_tags

    def source_identity(self) -> dict:
        return {
            "labelled_files": file_identity(self.labelled_files),
            "text_folders": [folder_identity(folder, ".txt") for folder in self._checked_folders()],
            "files": file_identity(self.files),
            "encoding": self.encoding,
            "strip_line_break_tags": self.strip_line_break_tags,
        }

    def read_text(self) -> str:
        texts = ["\n".join(read_label_text_lines(path, self.encoding).texts) for path in self.labelled_files]
        for folder in self._checked_folders():
            # One text a line, as in the other sources: a text's own line breaks become spaces.
            texts.extend(" ".join(read_text(path, self.encoding, allow_empty=True).split()) for path in sorted(folder.glob("*.txt")))
        if self.files:
            texts.append(super().read_text())
        text = "\n".join(texts)
        return LINE_BREAK.sub(" ", text) if self.strip_line_break_tags else text

    def _checked_folders(self) -> list[Path]:
        for folder in self.text_folders:
            if not folder.is_dir():
                raise SeqlabError(f"{folder}: no such folder; data.text_folders names folders of one text per *.txt file")
        return self.text_folders
