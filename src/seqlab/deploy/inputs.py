"""Texts to predict, streamed from a file in batches: one text a line, or CSV / JSONL with a text column.

The format follows the suffix: `.csv` and `.tsv` are tables with a header, `.jsonl` and `.ndjson`
hold one JSON object a line, anything else is plain text, one text a line. A file of the same kind as
the one a model was trained on (the same suffix) is read as that was: in its `data.format`, the texts
in its `data.text_column`. Files are read as they are consumed, so inputs larger than memory stream
through. Each text comes with the other fields of its row (ids and the like), which the predictions
carry on.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqlab.data.io import StreamedLines
from seqlab.errors import SeqlabError

DELIMITERS = {"csv": ",", "tsv": "\t"}
SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_TEXT_COLUMN = "text"


@dataclass(frozen=True)
class TrainingFile:
    """How a run read its training file (data=text_files), for inputs of the same kind."""

    suffix: str  # the training file's suffix, lower case
    format: str  # its data.format: csv, tsv, jsonl, parquet or label_text
    text_column: str


@dataclass
class TextBatch:
    texts: list[str]
    bytes_read: int  # how far into the file this batch ends, for progress
    fields: list[dict[str, Any]] = field(default_factory=list)  # each text's row without the text (plain lines: {})


def input_format(path: Path, trained_on: TrainingFile | None = None) -> str:
    """csv, tsv, jsonl or lines (one text a line): the training file's format for a file with its suffix
    (when seqlab-predict reads that format), else the suffix's."""
    suffix = path.suffix.lower()
    if trained_on and suffix == trained_on.suffix and trained_on.format in (*DELIMITERS, "jsonl"):
        return trained_on.format
    return SUFFIX_FORMATS.get(suffix, "lines")


def read_text_batches(path: str | Path, batch_size: int, text_column: str | None = None, trained_on: TrainingFile | None = None) -> Iterator[TextBatch]:
    """Batches of at most `batch_size` texts in file order. The texts are in `text_column`; None: in the
    training file's text column when the input is read in its format, else in `text`."""
    path = Path(path)
    if not path.is_file():
        raise SeqlabError(f"input {path} does not exist")
    kind = input_format(path, trained_on)
    if text_column is None:
        text_column = trained_on.text_column if trained_on and kind == trained_on.format else DEFAULT_TEXT_COLUMN
    reader = StreamedLines(path)
    batch = TextBatch([], 0)
    for text, fields in _rows(path, kind, reader, text_column):
        batch.texts.append(text)
        batch.fields.append(fields)
        if len(batch.texts) == batch_size:
            batch.bytes_read = reader.bytes_read
            yield batch
            batch = TextBatch([], 0)
    if batch.texts:
        batch.bytes_read = reader.bytes_read
        yield batch


def _rows(path: Path, kind: str, reader: StreamedLines, text_column: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each text with the rest of its row."""
    if kind == "lines":
        for line in reader:
            line = line.rstrip("\r\n")
            yield (line.removeprefix("\ufeff") if reader.line_number == 1 else line), {}
    elif kind in DELIMITERS:
        rows = csv.DictReader(reader, delimiter=DELIMITERS[kind])
        columns = [name.removeprefix("\ufeff") for name in rows.fieldnames or []]
        rows.fieldnames = columns
        if columns and text_column not in columns:
            raise SeqlabError(f"{path} has no column {text_column!r} (columns: {', '.join(columns)}); pass text_column=<name>")
        for row in rows:
            text = row.pop(text_column, None)
            if text is None:
                raise SeqlabError(f"{path}:{reader.line_number}: the row has no value in column {text_column!r}")
            row.pop(None, None)  # the cells of a row longer than the header, which name no column
            yield text, row
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
            text = record.pop(text_column)
            yield text, record
