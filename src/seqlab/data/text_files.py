"""Labelled text from the user's own files: CSV, TSV, JSONL, Parquet, or `LABEL TEXT` lines.

Every reader fails with one line naming the file (and the line or row) and the problem: a missing
file, an empty one, a missing column, text that is not UTF-8.
"""

import csv
import io
import json
from pathlib import Path
from typing import Any

from seqlab.data.cache import file_identity
from seqlab.data.classification import LabelledTexts, TextClassificationDataModule
from seqlab.errors import SeqlabError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "label_text")
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".txt": "label_text"}


def read_text(path: Path) -> str:
    """The file's text, which must be UTF-8 (a byte-order mark is dropped) and not empty."""
    if not path.is_file():
        raise SeqlabError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SeqlabError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not text.strip():
        raise SeqlabError(f"{path}: the file is empty")
    return text


def read_label_text_lines(path: Path) -> LabelledTexts:
    """`LABEL TEXT` per line (the label is the first whitespace-separated field)."""
    texts, labels = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if not text.strip():
            raise SeqlabError(f"{path}:{number}: expected 'LABEL TEXT', got {line[:60]!r}")
        labels.append(label)
        texts.append(text.strip())
    return LabelledTexts(texts, labels)


def read_delimited(path: Path, delimiter: str, text_column: str, label_column: str) -> LabelledTexts:
    """CSV or TSV with a header row naming the columns; quoted fields may span lines."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    columns = reader.fieldnames or []
    _check_columns(path, columns, text_column, label_column)
    texts, labels = [], []
    try:
        for row in reader:
            texts.append(_field(path, f"line {reader.line_num}", row.get(text_column), text_column, allow_empty=True))
            labels.append(_field(path, f"line {reader.line_num}", row.get(label_column), label_column))
    except csv.Error as error:
        raise SeqlabError(f"{path}: line {reader.line_num}: {error}") from None
    return _nonempty(path, LabelledTexts(texts, labels))


def read_jsonl(path: Path, text_column: str, label_column: str) -> LabelledTexts:
    """One JSON object per line."""
    texts, labels = [], []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SeqlabError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise SeqlabError(f"{path}:{number}: expected a JSON object with fields {text_column!r} and {label_column!r}")
        for column in (text_column, label_column):
            if column not in record:
                raise SeqlabError(f"{path}:{number}: no field {column!r} (fields: {', '.join(record)}); set data.text_column / data.label_column")
        texts.append(_field(path, f"line {number}", record[text_column], text_column, allow_empty=True))
        labels.append(_field(path, f"line {number}", record[label_column], label_column))
    return _nonempty(path, LabelledTexts(texts, labels))


def read_parquet(path: Path, text_column: str, label_column: str) -> LabelledTexts:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SeqlabError(f"{path}: reading Parquet needs pyarrow: pip install 'seqlab[parquet]'") from None
    if not path.is_file():
        raise SeqlabError(f"{path}: no such file")
    try:
        columns = pq.read_schema(path).names
        _check_columns(path, columns, text_column, label_column)
        table = pq.read_table(path, columns=[text_column, label_column])
    except SeqlabError:
        raise
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged or foreign file
        raise SeqlabError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    texts, labels = [], []
    for row, (text, label) in enumerate(zip(table.column(text_column).to_pylist(), table.column(label_column).to_pylist())):
        texts.append(_field(path, f"row {row}", text, text_column, allow_empty=True))
        labels.append(_field(path, f"row {row}", label, label_column))
    return _nonempty(path, LabelledTexts(texts, labels))


def read_labelled_file(path: Path, format: str | None, text_column: str, label_column: str) -> LabelledTexts:
    """Read `path` in `format`, or in the format its extension names when `format` is None."""
    format = format or format_of(path)
    if format == "csv":
        return read_delimited(path, ",", text_column, label_column)
    if format == "tsv":
        return read_delimited(path, "\t", text_column, label_column)
    if format == "jsonl":
        return read_jsonl(path, text_column, label_column)
    if format == "parquet":
        return read_parquet(path, text_column, label_column)
    if format == "label_text":
        return _nonempty(path, read_label_text_lines(path))
    raise SeqlabError(f"data.format={format!r} is not one of {', '.join(FORMATS)}")


def format_of(path: Path) -> str:
    try:
        return EXTENSIONS[path.suffix.lower()]
    except KeyError:
        raise SeqlabError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; set data.format to one of {', '.join(FORMATS)}"
        ) from None


def _check_columns(path: Path, columns: list[str], text_column: str, label_column: str) -> None:
    for column in (text_column, label_column):
        if column not in columns:
            raise SeqlabError(f"{path}: no column {column!r} (columns: {', '.join(map(str, columns)) or 'none'}); set data.text_column / data.label_column")


def _field(path: Path, where: str, value: Any, column: str, allow_empty: bool = False) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise SeqlabError(f"{path}: {where}: {column!r} is not UTF-8 text ({error.reason})") from None
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


class TextFilesDataModule(TextClassificationDataModule):
    """Text classification from the user's files: `train_file`, and optionally `val_file` and `test_file`.

    Without a test file a seeded stratified `test_fraction` of the training file is the test set;
    without a validation file a `val_fraction` of the rest validates (or fold `fold` of `num_folds`).
    Label names are those in `labels` (ids in that order) or, by default, the training file's, sorted.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.file_names = {split: name for split, name in {"train": train_file, "val": val_file, "test": test_file}.items() if name}
        self.data_dir = data_dir
        self.format = format
        self.text_column = text_column
        self.label_column = label_column

    @property
    def files(self) -> dict[str, Path]:
        # Resolved when read, not when built: Hydra would wrap an error raised while instantiating.
        return {split: resolve_data_file(name, self.data_dir) for split, name in self.file_names.items()}

    def source_identity(self) -> dict[str, Any]:
        files = self.files
        return {
            "files": dict(zip(files, file_identity(files.values()))),
            "reader": [self.format, self.text_column, self.label_column],
        }

    def read_splits(self) -> dict[str, LabelledTexts]:
        splits = {split: read_labelled_file(path, self.format, self.text_column, self.label_column) for split, path in self.files.items()}
        if self.num_folds is not None:
            splits.pop("val", None)  # cross-validation draws validation folds from the training file
        return splits

    def split_source(self, split: str) -> str:
        own_file = split in self.file_names and not (split == "val" and self.num_folds is not None)
        return str(resolve_data_file(self.file_names[split if own_file else "train"], self.data_dir))
