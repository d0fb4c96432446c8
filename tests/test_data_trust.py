"""Data a user can trust: long fields, line separators inside texts, other encodings, single-class and
over-split training data, and a cross-validation summary that says when folds are missing."""

import csv
import json
import shutil

import pytest
import yaml
from hydra.utils import instantiate

from conftest import run_cli
from data_fixtures import labelled_rows, make_aclimdb, make_sst2, setup_error, write_rows
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.sst2 import SST2DataModule
from seqlab.data.text_files import TextFilesDataModule, read_labelled_file
from seqlab.data.tokenizers import WordTokenizer
from seqlab.data.unlabelled import UnlabelledTextDataModule


def cache_entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


# -- long fields -------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["csv", "tsv"])
def test_a_field_longer_than_the_csv_module_default_limit_is_read_whole(tmp_path, format):
    long_review = ("a long and winding film " * 9000)[:199_999] + "!"
    rows = [*labelled_rows(20), (long_review, "pos")]
    path = write_rows(tmp_path / f"train.{format}", rows, format)
    limit_before = csv.field_size_limit()

    data = read_labelled_file(path, None, "text", "label")

    assert len(long_review) == 200_000 and data.texts[-1] == long_review and len(data.texts) == 21
    assert csv.field_size_limit() == limit_before, "the csv module's process-wide limit is left as it was"
    datamodule = TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(), val_fraction=0.2, test_fraction=0.2)
    datamodule.setup()
    assert sum(datamodule.split_sizes.values()) == 21


# -- line separators inside texts ---------------------------------------------------------------

# Characters str.splitlines() breaks at that real sentences contain: NEL (a cp1252 ellipsis read as
# latin-1), the Unicode line and paragraph separators, vertical tab, form feed, file/group/record separators.
SEPARATORS = ["\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


def texts_with_separators() -> list[tuple[str, str]]:
    return [(f"sentence {i} goes on{char}and ends here", ("neg", "pos")[i % 2]) for i, char in enumerate(SEPARATORS)]


def write_label_text(path, rows, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(f"{label} {text}\r\n" for text, label in rows).encode(encoding))
    return path


@pytest.mark.parametrize("format", ["label_text", "jsonl"])
def test_line_separators_inside_a_text_keep_the_example_whole(tmp_path, format):
    rows = texts_with_separators()
    if format == "jsonl":
        # As written by json.dumps(..., ensure_ascii=False): NEL, U+2028 and U+2029 stay raw.
        path = tmp_path / "train.jsonl"
        path.write_text("".join(json.dumps({"text": t, "label": label}, ensure_ascii=False) + "\n" for t, label in rows), encoding="utf-8")
    else:
        path = write_label_text(tmp_path / "train.txt", rows)

    data = read_labelled_file(path, None, "text", "label")

    assert data.texts == [text for text, _ in rows]
    assert data.labels == [label for _, label in rows]


def test_sst2_and_unlabelled_lines_keep_separators_inside_sentences(tmp_path):
    root = make_sst2(tmp_path)
    rows = texts_with_separators()
    write_label_text(root / "stsa.binary.dev", [(text, "01"[i % 2]) for i, (text, _) in enumerate(rows)])
    splits = SST2DataModule(data_dir=str(tmp_path), tokenizer=WordTokenizer()).read_splits()
    assert splits["val"].texts == [text for text, _ in rows]

    unlabelled = UnlabelledTextDataModule(labelled_files=[str(root / "stsa.binary.dev")], tokenizer=WordTokenizer())
    assert unlabelled.read_text() == "\n".join(text for text, _ in rows)


# -- encodings ----------------------------------------------------------------------------------

LATIN_1_ROWS = [(f"un film {word} n{i}", ("neg", "pos")[i % 2]) for i, word in enumerate(["café", "naïf", "déjà vu", "señor", "Köln", "über"] * 4)]


def latin1_datamodules(tmp_path, encoding):
    """One DataModule of each file-reading kind over latin-1 files, and a text each must read back."""
    common = dict(tokenizer=WordTokenizer(), encoding=encoding)
    write_label_text(tmp_path / "train.txt", LATIN_1_ROWS, "latin-1")
    csv_path = tmp_path / "train.csv"
    csv_path.write_bytes(b"label,text\n" + "".join(f"{label},{t}\n" for t, label in LATIN_1_ROWS).encode("latin-1"))
    root = make_sst2(tmp_path)
    write_label_text(root / "stsa.binary.train", [(t, "01"[i % 2]) for i, (t, _) in enumerate(LATIN_1_ROWS)], "latin-1")
    imdb = make_aclimdb(tmp_path, per_folder=3)
    (imdb / "train" / "pos" / "9_9.txt").write_bytes("un film café<br />fin".encode("latin-1"))
    return {
        "text_files label_text": (TextFilesDataModule(train_file=str(tmp_path / "train.txt"), **common), "un film café n0"),
        "text_files csv": (TextFilesDataModule(train_file=str(csv_path), **common), "un film café n0"),
        "sst2": (SST2DataModule(data_dir=str(tmp_path), **common), "un film café n0"),
        "imdb": (IMDBDataModule(data_dir=str(tmp_path), download=False, **common), "un film café fin"),
        "text_lm": (LanguageModelingDataModule(files=[str(tmp_path / "train.txt")], **common), "pos un film naïf n1"),
        "unlabelled": (UnlabelledTextDataModule(labelled_files=[str(tmp_path / "train.txt")], **common), "un film naïf n1"),
    }


def test_data_encoding_reads_latin_1_files_in_every_file_reading_datamodule(tmp_path):
    for kind, (datamodule, expected) in latin1_datamodules(tmp_path, "latin-1").items():
        if isinstance(datamodule, LanguageModelingDataModule):
            assert expected in datamodule.read_text(), kind
        else:
            assert expected in {text for split in datamodule.read_splits().values() for text in split.texts}, kind
        datamodule.setup()


def test_undecodable_text_names_the_file_the_byte_and_data_encoding(tmp_path):
    for kind, (datamodule, _) in latin1_datamodules(tmp_path, "utf-8").items():
        message = setup_error(datamodule)
        assert message.split(": ", 1)[0].endswith(("train.txt", "train.csv", "stsa.binary.train", "9_9.txt")), (kind, message)
        assert "not UTF-8 text" in message and "at byte" in message and "data.encoding=latin-1" in message, (kind, message)
    unknown = TextFilesDataModule(train_file=str(tmp_path / "train.txt"), tokenizer=WordTokenizer(), encoding="utf-9")
    assert setup_error(unknown) == "data.encoding='utf-9' is not a text encoding Python knows (e.g. utf-8, latin-1, cp1252)"


REQUIRED = {"text_files": ["data.train_file=t.csv"], "text_lm": ["data.files=[t.txt]"]}


@pytest.mark.parametrize("data", ["text_files", "sst2", "imdb", "text_lm", "shakespeare", "sst2_shakespeare_lm"])
def test_data_encoding_is_a_setting_of_every_file_reading_data_config(compose_config, data):
    cfg = compose_config([f"data={data}", "data.encoding=latin-1", *REQUIRED.get(data, [])])
    assert instantiate(cfg.data).encoding == "latin-1"


# -- training data a classifier cannot learn from -----------------------------------------------


def test_single_class_training_data_is_refused_in_one_line_and_nothing_is_cached(tmp_path):
    write_rows(tmp_path / "d" / "oneclass.csv", labelled_rows(30, labels=("pos",)), "csv")
    result = run_cli(
        "seqlab-train",
        "data=text_files",
        "data.train_file=d/oneclass.csv",
        f"paths.data_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "Error: d/oneclass.csv: only one label ('pos'); classification needs at least two"
    assert "Traceback" not in result.stderr
    assert cache_entries(tmp_path / ".cache") == []


def test_holdout_fractions_that_leave_no_training_data_are_reported_as_given(tmp_path):
    path = write_rows(tmp_path / "train.csv", labelled_rows(40), "csv")
    cache = tmp_path / "cache"

    def datamodule(**fractions):
        return TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(), cache_dir=str(cache), **fractions)

    assert setup_error(datamodule(val_fraction=0.95, test_fraction=0.1)) == (
        "data.val_fraction=0.95 + data.test_fraction=0.1 = 1.05 leaves no training data; their sum must be below 1"
    )
    assert setup_error(datamodule(val_fraction=-0.1, test_fraction=0.1)) == "data.val_fraction must be between 0 and 1, got -0.1"
    assert cache_entries(cache) == []


# -- seqlab-cv-summary --------------------------------------------------------------------------

TINY = [
    "data.train_size=200",
    "data.val_size=20",
    "data.test_size=20",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "model.hidden_dim=8",
    "model.embed_dim=8",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def test_cv_summary_exits_non_zero_and_names_folds_without_a_result(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", "-m", "data.num_folds=2", "data.fold=0,1", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert run_cli("seqlab-cv-summary", str(sweep), cwd=tmp_path).returncode == 0

    fold_1 = next(d for d in sweep.iterdir() if (d / ".hydra").is_dir() and yaml.safe_load((d / ".hydra" / "config.yaml").read_text())["data"]["fold"] == 1)
    (fold_1 / "metrics.json").unlink()
    result = run_cli("seqlab-cv-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (f"Error: {sweep}: fold 1 incomplete (no result); cv_summary.json summarises the completed folds only")
    summary = json.loads((sweep / "cv_summary.json").read_text())
    assert [(f["fold"], f["status"]) for f in summary["folds"]] == [(0, "completed"), (1, "incomplete")]
    assert summary["metrics"]["val/acc"]["n"] == 1

    shutil.rmtree(fold_1)
    result = run_cli("seqlab-cv-summary", str(sweep), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (f"Error: {sweep}: fold 1 missing (no job dir); cv_summary.json summarises the completed folds only")
