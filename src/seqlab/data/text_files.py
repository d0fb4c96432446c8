"""Labelled text from the user's own files: CSV, TSV, JSONL, Parquet, or `LABEL TEXT` lines.

Every reader fails with one line naming the file (and the line or row) and the problem: a missing
file, an empty one, a missing column, text that does not decode in `data.encoding` (default UTF-8).
Files are read through `seqlab.data.io`, so line-based formats break lines at `\n` (or `\r\n`)
only; CSV fields may be of any length.
"""

import csv
import ctypes
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seqlab.data.cache import file_identity
from seqlab.data.classification import LabelledTexts, TextClassificationDataModule
from seqlab.data.io import decode, read_text, text_lines
from seqlab.errors import SeqlabError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "label_text")
# The settings that name a labelled file's two columns, for the message when a file lacks one.
COLUMN_KEYS = ("data.text_column", "data.label_column")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".txt": "label_text"}


def read_label_text_lines(path: Path, encoding: str = "utf-8") -> LabelledTexts:
    """`LABEL TEXT` per line (the label is the first whitespace-separated field)."""
    texts, labels = [], []
    for number, line in enumerate(text_lines(read_text(path, encoding)), start=1):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if not text.strip():
            raise SeqlabError(f"{path}:{number}: expected 'LABEL TEXT', got {line[:60]!r}")
        labels.append(label)
        texts.append(text.strip())
    return LabelledTexts(texts, labels)


@contextmanager
def unlimited_csv_fields() -> Iterator[None]:
    """Let the csv module read fields of any length while the block runs.

    Its default limit (131,072 characters) refuses a long review that JSONL reads. The limit is a
    process-wide setting of the csv module, so it is raised to the largest the platform allows (a C
    long) only around a read and put back after.
    """
    previous = csv.field_size_limit(2 ** (8 * ctypes.sizeof(ctypes.c_long) - 1) - 1)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def read_delimited(
    path: Path, delimiter: str, text_column: str, label_column: str, encoding: str = "utf-8", keys: tuple[str, str] = COLUMN_KEYS
) -> LabelledTexts:
    """CSV or TSV with a header row naming the columns; quoted fields may span lines and be of any length."""
    reader = csv.DictReader(io.StringIO(read_text(path, encoding), newline=""), delimiter=delimiter)
    texts, labels = [], []
    with unlimited_csv_fields():
        try:
            columns = reader.fieldnames or []
            _check_columns(path, columns, (text_column, label_column), keys)
            for row in reader:
                texts.append(_field(path, f"line {reader.line_num}", row.get(text_column), text_column, allow_empty=True))
                labels.append(_field(path, f"line {reader.line_num}", row.get(label_column), label_column))
        except csv.Error as error:
            raise SeqlabError(f"{path}: line {reader.line_num}: {error}") from None
    return _nonempty(path, LabelledTexts(texts, labels))


def read_jsonl(path: Path, text_column: str, label_column: str, encoding: str = "utf-8", keys: tuple[str, str] = COLUMN_KEYS) -> LabelledTexts:
    """One JSON object per line."""
    texts, labels = [], []
    for number, line in enumerate(text_lines(read_text(path, encoding)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SeqlabError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise SeqlabError(f"{path}:{number}: expected a JSON object with fields {text_column!r} and {label_column!r}")
        for column, key in zip((text_column, label_column), keys):
            if column not in record:
                raise SeqlabError(f"{path}:{number}: no field {column!r} (fields: {', '.join(record)}); set {key}")
        texts.append(_field(path, f"line {number}", record[text_column], text_column, allow_empty=True))
        labels.append(_field(path, f"line {number}", record[label_column], label_column))
    return _nonempty(path, LabelledTexts(texts, labels))


def read_parquet(path: Path, text_column: str, label_column: str, encoding: str = "utf-8", keys: tuple[str, str] = COLUMN_KEYS) -> LabelledTexts:
    try:  # pyarrow is optional (seqlab[parquet]) and slow to import: loaded only when a Parquet file is read
        import pyarrow.parquet as pq
    except ImportError:
        raise SeqlabError(f"{path}: reading Parquet needs pyarrow: pip install 'seqlab[parquet]'") from None
    if not path.is_file():
        raise SeqlabError(f"{path}: no such file")
    try:
        columns = pq.read_schema(path).names
        _check_columns(path, columns, (text_column, label_column), keys)
        table = pq.read_table(path, columns=[text_column, label_column])
    except SeqlabError:
        raise
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or foreign file
        raise SeqlabError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    texts, labels = [], []
    for row, (text, label) in enumerate(zip(table.column(text_column).to_pylist(), table.column(label_column).to_pylist())):
        texts.append(_field(path, f"row {row}", text, text_column, allow_empty=True, encoding=encoding))
        labels.append(_field(path, f"row {row}", label, label_column, encoding=encoding))
    return _nonempty(path, LabelledTexts(texts, labels))


def read_labelled_file(
    path: Path, format: str | None, text_column: str, label_column: str, encoding: str = "utf-8", keys: tuple[str, str] = COLUMN_KEYS
) -> LabelledTexts:
    """Read `path` in `format`, or in the format its extension names when `format` is None; text in `encoding`
    (Parquet's string columns are UTF-8 by definition; `encoding` decodes its binary columns). `keys`
    are the settings that name the two columns, for the message when the file lacks one."""
    format = format or format_of(path)
    if format == "csv":
        return read_delimited(path, ",", text_column, label_column, encoding, keys)
    if format == "tsv":
        return read_delimited(path, "\t", text_column, label_column, encoding, keys)
    if format == "jsonl":
        return read_jsonl(path, text_column, label_column, encoding, keys)
    if format == "parquet":
        return read_parquet(path, text_column, label_column, encoding, keys)
    if format == "label_text":
        return _nonempty(path, read_label_text_lines(path, encoding))
    raise SeqlabError(f"data.format={format!r} is not one of {', '.join(FORMATS)}")


def format_of(path: Path) -> str:
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise SeqlabError(f"{path}: cannot tell the format from the extension {path.suffix!r}; set data.format to one of {', '.join(FORMATS)}") from None


def _check_columns(path: Path, columns: list[str], wanted: tuple[str, str], keys: tuple[str, str]) -> None:
    for column, key in zip(wanted, keys):
        if column not in columns:
            raise SeqlabError(f"{path}: no column {column!r} (columns: {', '.join(map(str, columns)) or 'none'}); set {key}")


def _field(path: Path, where: str, value: Any, column: str, allow_empty: bool = False, encoding: str = "utf-8") -> str:
    if isinstance(value, bytes):
        value = decode(value, encoding, f"{path}: {where}: {column!r}")
    if value is None or (not allow_empty and str(value).strip() == ""):
        raise SeqlabError(f"{path}: {where}: no value in {column!r}")
    return str(value).strip()


def _nonempty(path: Path, data: LabelledTexts) -> LabelledTexts:
    if not data.texts:
        raise SeqlabError(f"{path}: the file has no rows")
    return data


def resolve_data_file(name: str, data_dir: str | None) -> Path:
    """A relative name is looked up in the current folder, then under `data_dir`."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists() or data_dir is None:
        return path
    under_data_dir = Path(data_dir) / path
    if under_data_dir.exists():
        return under_data_dir
    raise SeqlabError(f"{name}: no such file (looked in {Path.cwd()} and {data_dir})")


def resolve_data_files(file_names: dict[str, str], data_dir: str | None) -> dict[str, Path]:
    """Each split's file, as `resolve_data_file` finds it. DataModules call this when they read, not
    when they are built: Hydra would wrap an error raised while instantiating."""
    return {split: resolve_data_file(name, data_dir) for split, name in file_names.items()}


def files_source_identity(files: dict[str, Path], reader: list[Any]) -> dict[str, Any]:
    """The token cache's identity of a source read from files: each file's identity and the reader's settings."""
    return {"files": dict(zip(files, file_identity(files.values()))), "reader": reader}


class TextFilesDataModule(TextClassificationDataModule):
    """Text classification from the user's files: `train_file`, and optionally `val_file` and `test_file`.

    Without a test file a seeded stratified `test_fraction` of the training file is the test set;
    without a validation file a `val_fraction` of the rest validates (or fold `fold` of `num_folds`).
    Label names are those in `labels` (ids in that order) or, by default, the training file's, sorted.
    Files are read in `encoding` (default UTF-8; classic datasets such as Subj and TREC are latin-1).
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        format: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        data_dir: str | None = None,
        encoding: str = "utf-8",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_names = {split: name for split, name in {"train": train_file, "val": val_file, "test": test_file}.items() if name}
        self.data_dir = data_dir
        self.format = format
        self.text_column = text_column
        self.label_column = label_column
        self.encoding = encoding

    @property
    def files(self) -> dict[str, Path]:
        return resolve_data_files(self.file_names, self.data_dir)

    def source_identity(self) -> dict[str, Any]:
        return files_source_identity(self.files, [self.format, self.text_column, self.label_column, self.encoding])

    def read_splits(self) -> dict[str, LabelledTexts]:
        return {split: read_labelled_file(path, self.format, self.text_column, self.label_column, self.encoding) for split, path in self.files.items()}

    def split_source(self, split: str) -> str:
        own_file = split in self.file_names and not self.drawn_from_training(split)
        return str(resolve_data_file(self.file_names[split if own_file else "train"], self.data_dir))
