"""Bad input is one line naming the file and the problem, and leaves nothing half-written in the cache."""

import json

import pytest

from conftest import run_cli
from data_fixtures import labelled_rows, make_aclimdb, make_sst2, setup_error, write_rows
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.sst2 import SST2DataModule
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import WordTokenizer


def text_files(tmp_path, name, **kwargs):
    return TextFilesDataModule(train_file=str(tmp_path / name), tokenizer=WordTokenizer(), cache_dir=str(tmp_path / "cache"), **kwargs)


def assert_cache_empty(tmp_path):
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_file(tmp_path):
    message = setup_error(text_files(tmp_path, "absent.csv"))
    assert "absent.csv" in message and "no such file" in message


@pytest.mark.parametrize("format", ["csv", "tsv", "jsonl", "label_text"])
def test_empty_file(tmp_path, format):
    (tmp_path / "empty.data").write_text("\n \n")
    message = setup_error(text_files(tmp_path, "empty.data", format=format))
    assert "empty.data" in message and "empty" in message
    assert_cache_empty(tmp_path)


def test_header_only_csv_and_empty_parquet_have_no_rows(tmp_path):
    (tmp_path / "header.csv").write_text("text,label\n")
    assert "has no rows" in setup_error(text_files(tmp_path, "header.csv"))
    write_rows(tmp_path / "none.parquet", [], "parquet")
    assert "none.parquet: the file has no rows" in setup_error(text_files(tmp_path, "none.parquet"))


@pytest.mark.parametrize("format,extension", [("csv", "csv"), ("tsv", "tsv"), ("jsonl", "jsonl"), ("parquet", "parquet")])
def test_missing_column_names_the_setting_for_it(tmp_path, format, extension):
    write_rows(tmp_path / f"train.{extension}", labelled_rows(20), format, text_column="review")
    message = setup_error(text_files(tmp_path, f"train.{extension}"))
    assert f"train.{extension}" in message and "'text'" in message and message.endswith("; set data.text_column")
    write_rows(tmp_path / f"stars.{extension}", labelled_rows(20), format, label_column="stars")
    message = setup_error(text_files(tmp_path, f"stars.{extension}"))
    assert "'label'" in message and message.endswith("; set data.label_column")
    assert_cache_empty(tmp_path)


def test_label_outside_the_declared_set_names_the_file(tmp_path):
    write_rows(tmp_path / "train.csv", labelled_rows(20), "csv")
    write_rows(tmp_path / "test.csv", labelled_rows(10, ("neg", "pos", "neutral")), "csv")
    message = setup_error(text_files(tmp_path, "train.csv", test_file=str(tmp_path / "test.csv"), labels=["neg", "pos"]))
    assert "test.csv" in message and "'neutral'" in message and "outside the declared set" in message
    assert_cache_empty(tmp_path)


def test_sst2_label_outside_the_declared_set(tmp_path):
    root = make_sst2(tmp_path)
    with open(root / "stsa.binary.dev", "a") as file:
        file.write("2 a third label\n")
    message = setup_error(SST2DataModule(data_dir=str(tmp_path), labels=["0", "1"], tokenizer=WordTokenizer(), cache_dir=str(tmp_path / "cache")))
    assert "stsa.binary.dev" in message and "'2'" in message
    assert_cache_empty(tmp_path)


@pytest.mark.parametrize("format,extension", [("csv", "csv"), ("jsonl", "jsonl"), ("label_text", "txt")])
def test_text_that_does_not_decode(tmp_path, format, extension):
    path = write_rows(tmp_path / f"train.{extension}", labelled_rows(20), format)
    path.write_bytes(path.read_bytes() + "pos caf\xe9 latin-1\n".encode("latin-1"))
    message = setup_error(text_files(tmp_path, f"train.{extension}"))
    assert f"train.{extension}" in message and "not UTF-8" in message
    assert_cache_empty(tmp_path)


def test_imdb_review_that_does_not_decode_and_missing_folders(tmp_path):
    root = make_aclimdb(tmp_path, per_folder=3)
    (root / "test" / "neg" / "99_1.txt").write_bytes(b"\xff\xfe broken")
    message = setup_error(IMDBDataModule(data_dir=str(tmp_path), tokenizer=WordTokenizer(), cache_dir=str(tmp_path / "cache")))
    assert "99_1.txt: not UTF-8" in message
    assert_cache_empty(tmp_path)
    (root / "test" / "neg" / "99_1.txt").unlink()
    (root / "train" / "pos").rename(root / "train" / "positive")
    message = setup_error(IMDBDataModule(data_dir=str(tmp_path), tokenizer=WordTokenizer(), cache_dir=str(tmp_path / "cache")))
    assert "train/pos: no such folder" in message


def test_language_modelling_bad_files(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\x80\x81 not text")
    for name, problem in (("absent.txt", "no such file"), ("empty.txt", "the file is empty"), ("binary.txt", "not UTF-8")):
        datamodule = LanguageModelingDataModule(files=[str(tmp_path / name)], tokenizer=WordTokenizer(), cache_dir=str(tmp_path / "cache"))
        assert f"{name}: {problem}" in setup_error(datamodule)
    assert_cache_empty(tmp_path)


def test_malformed_lines_name_the_line(tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "fine", "label": "pos"}) + "\n{not json\n")
    assert "train.jsonl:2: not valid JSON" in setup_error(text_files(tmp_path, "train.jsonl"))
    (tmp_path / "train.txt").write_text("pos a good one\nneg\n")
    assert "train.txt:2: expected 'LABEL TEXT'" in setup_error(text_files(tmp_path, "train.txt"))
    (tmp_path / "train.data").write_text("pos text\n")
    assert "set data.format" in setup_error(text_files(tmp_path, "train.data"))


def test_cli_reports_a_missing_training_file_in_one_line(tmp_path):
    result = run_cli(
        "seqlab-train", "data=text_files", "data.train_file=nowhere.csv", f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"Error: nowhere.csv: no such file (looked in {tmp_path} and {tmp_path})"
    assert "Traceback" not in result.stderr


def test_cli_reports_undecodable_text_with_nothing_cached(tmp_path):
    path = write_rows(tmp_path / "train.csv", labelled_rows(30), "csv")
    path.write_bytes(path.read_bytes() + b"pos,\xe9t\xe9\n")
    result = run_cli(
        "seqlab-train", "data=text_files", "data.train_file=train.csv", f"paths.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: train.csv: not UTF-8 text (invalid continuation byte at byte")
    assert not (tmp_path / ".cache").exists()
