"""Readers for labelled text files."""

from pathlib import Path

from seqlab.data.classification import LabelledTexts
from seqlab.errors import SeqlabError


def read_label_text_lines(path: Path) -> LabelledTexts:
    """`LABEL TEXT` per line (the label is the first whitespace-separated field)."""
    if not path.is_file():
        raise SeqlabError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise SeqlabError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    texts, labels = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if not text.strip():
            raise SeqlabError(f"{path}:{number}: expected 'LABEL TEXT', got {line[:60]!r}")
        labels.append(label)
        texts.append(text.strip())
    if not texts:
        raise SeqlabError(f"{path}: the file is empty")
    return LabelledTexts(texts, labels)
