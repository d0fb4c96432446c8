"""Small datasets the data tests write: labelled rows in every file format, an aclImdb-shaped folder,
SST-2-shaped files and plain text."""

import csv
import json
import random
import tarfile
from pathlib import Path

import pytest

from seqlab.errors import SeqlabError

WORDS = "the a movie film plot acting was is good bad great awful dull fun and but very not really quite".split()
# Row numbers are spelt with these letters, and every text carries all of them, so a character
# tokenizer fitted on any share of the rows decodes every row exactly.
DIGITS = "qwertyuiop"


def labelled_rows(count: int, labels: tuple[str, ...] = ("neg", "pos"), seed: int = 0) -> list[tuple[str, str]]:
    """`count` (text, label) rows, every text distinct (it carries its row number), labels in turn."""
    rng = random.Random(seed)
    spell = str.maketrans("0123456789", DIGITS)
    return [
        (f"review {str(i).translate(spell)} {DIGITS} " + " ".join(rng.choices(WORDS, k=rng.randrange(3, 12))), labels[i % len(labels)]) for i in range(count)
    ]


def write_rows(path: Path, rows: list[tuple[str, str]], format: str, text_column: str = "text", label_column: str = "label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if format in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter="," if format == "csv" else "\t")
            writer.writerow([label_column, text_column])
            writer.writerows([(label, text) for text, label in rows])
    elif format == "jsonl":
        path.write_text("".join(json.dumps({text_column: text, label_column: label, "id": i}) + "\n" for i, (text, label) in enumerate(rows)))
    elif format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({text_column: [t for t, _ in rows], label_column: [label for _, label in rows]}), path)
    elif format == "label_text":
        path.write_text("".join(f"{label} {text}\n" for text, label in rows))
    else:
        raise ValueError(format)
    return path


def make_aclimdb(data_dir: Path, per_folder: int = 10) -> Path:
    """`data_dir/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`, reviews with `<br />` markup."""
    root = data_dir / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, (text, _) in enumerate(labelled_rows(per_folder, seed=2 * (split == "test") + (label == "pos"))):
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(f"{split} {label} {text}.<br /><br />The end.")
    (root / "README").write_text("Large Movie Review Dataset (fixture)\n")
    return root


def make_aclimdb_archive(path: Path, per_folder: int = 10) -> Path:
    """A tar.gz with an aclImdb folder inside, as the official archive has."""
    source = path.parent / "archive-source"
    make_aclimdb(source, per_folder)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / "aclImdb", arcname="aclImdb")
    return path


def make_sst2(data_dir: Path, sizes: tuple[int, int, int] = (60, 20, 30)) -> Path:
    root = data_dir / "sst2"
    for (name, size), seed in zip(zip(("train", "dev", "test"), sizes), range(3)):
        write_rows(root / f"stsa.binary.{name}", labelled_rows(size, ("0", "1"), seed), "label_text")
    return root


def setup_error(datamodule) -> str:
    """The one-line SeqlabError a data module's set-up stops with."""
    with pytest.raises(SeqlabError) as caught:
        datamodule.prepare_data()
        datamodule.setup()
    message = str(caught.value)
    assert "\n" not in message
    return message
