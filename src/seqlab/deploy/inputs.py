"""Texts to predict, streamed from a file in batches: one text a line, or CSV / JSONL with a text column.

The format follows the suffix: `.csv` and `.tsv` are tables with a header, `.jsonl` and `.ndjson`
hold one JSON object a line, anything else is plain text, one text a line. Files are read as they
are consumed, so inputs larger than memory stream through.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seqlab.data.io import StreamedLines
from seqlab.errors import SeqlabError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class TextBatch:
    texts: list[str]
    bytes_read: int  # how far into the file this batch ends, for progress


def input_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return "table"
    return "jsonl" if suffix in JSONL_SUFFIXES else "lines"


def read_text_batches(path: str | Path, batch_size: int, text_column: str = "text") -> Iterator[TextBatch]:
    """Batches of at most `batch_size` texts in file order."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"input {path} does not exist")
    reader = StreamedLines(path)
    texts: list[str] = []
    for text in _texts(path, reader, text_column):
        texts.append(text)
        if len(texts) == batch_size:
            yield TextBatch(texts, reader.bytes_read)
            texts = []
    if texts:
        yield TextBatch(texts, reader.bytes_read)


def _texts(path: Path, reader: StreamedLines, text_column: str) -> Iterator[str]:
    kind = input_format(path)
    if kind == "lines":
        for line in reader:
            line = line.rstrip("\r\n")
            yield line.removeprefix("\ufeff") if reader.line_number == 1 else line
    elif kind == "table":
        rows = csv.DictReader(reader, delimiter=TABLE_SUFFIXES[path.suffix.lower()])
        columns = [name.removeprefix("\ufeff") for name in rows.fieldnames or []]
        rows.fieldnames = columns
        if columns and text_column not in columns:
            raise SeqlabError(f"{path} has no column {text_column!r} (columns: {', '.join(columns)}); pass text_column=<name>")
        for row in rows:
            text = row.get(text_column)
            if text is None:
                raise SeqlabError(f"{path}:{reader.line_number}: the row has no value in column {text_column!r}")
            yield text
    else:
        for line in reader:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SeqlabError(f"{path}:{reader.line_number}: not a JSON object ({error.msg})") from None
            if not isinstance(record, dict) or text_column not in record:
                keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                raise SeqlabError(f"{path}:{reader.line_number}: no key {text_column!r} (found: {keys}); pass text_column=<name>")
            if not isinstance(record[text_column], str):
                raise SeqlabError(f"{path}:{reader.line_number}: {text_column!r} must be a string, got {type(record[text_column]).__name__}")
            yield record[text_column]
