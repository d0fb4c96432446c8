"""Reading text files: decoding in `data.encoding` and breaking lines, with one-line errors naming the file.

Every file seqlab reads as text comes through here: the training data's files (whole, as `read_text`)
and seqlab-predict's inputs (streamed a line at a time, as `StreamedLines`). Lines break at `\n` (or
`\r\n`) only: `str.splitlines` also breaks at NEL (U+0085, a cp1252 ellipsis read as latin-1),
U+2028, U+2029, \x0b, \x0c and \x1c-\x1e, which occur inside real sentences.
"""

import codecs
from collections.abc import Iterator
from pathlib import Path

from seqlab.errors import SeqlabError


def decode(data: bytes, encoding: str, source: Path | str) -> str:
    """`data` decoded as `encoding` (a UTF-8 byte-order mark is dropped); the error names `source` (the
    file, or the file and field), the byte and the setting that reads other encodings."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise SeqlabError(f"data.encoding={encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1, cp1252)") from None
    try:
        return data.decode("utf-8-sig" if codec == "utf-8" else codec)
    except UnicodeDecodeError as error:
        name = "UTF-8" if codec == "utf-8" else encoding
        raise SeqlabError(
            f"{source}: not {name} text ({error.reason} at byte {error.start}); set data.encoding to the file's encoding (e.g. data.encoding=latin-1)"
        ) from None


def read_text(path: Path, encoding: str = "utf-8", allow_empty: bool = False) -> str:
    """The file's text in `encoding` (for UTF-8, a byte-order mark is dropped), which must not be empty
    unless `allow_empty`."""
    if not path.is_file():
        raise SeqlabError(f"{path}: no such file")
    text = decode(path.read_bytes(), encoding, path)
    if not allow_empty and not text.strip():
        raise SeqlabError(f"{path}: the file is empty")
    return text


def text_lines(text: str) -> list[str]:
    """The lines of `text`, broken at `\n` and `\r\n` only (see the module docstring)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


class StreamedLines:
    """The UTF-8 lines of a file, each with its `\n`, decoded as they are read, for files larger than
    memory; `bytes_read` and `line_number` say how far the reading has got."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bytes_read = 0
        self.line_number = 0

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as file:
            for raw in file:  # a binary file's lines end at b"\n" only
                self.bytes_read += len(raw)
                self.line_number += 1
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise SeqlabError(f"{self.path}:{self.line_number}: not UTF-8 text ({error.reason})") from None
