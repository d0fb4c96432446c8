"""The token cache: a second run reads memory-mapped arrays instead of tokenising; a changed file or setting rebuilds."""

import logging
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from data_fixtures import labelled_rows, make_aclimdb, write_rows
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import WordTokenizer


class CountingWordTokenizer(WordTokenizer):
    """A word tokenizer that counts the texts it fits and encodes."""

    calls = {"fit": 0, "encode": 0}

    def fit(self, texts):
        CountingWordTokenizer.calls["fit"] += 1
        super().fit(texts)

    def encode_batch(self, texts, max_length=None):
        CountingWordTokenizer.calls["encode"] += len(texts)
        return super().encode_batch(texts, max_length)


@pytest.fixture
def counting():
    CountingWordTokenizer.calls = {"fit": 0, "encode": 0}
    return CountingWordTokenizer.calls


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.iterdir()) if cache_dir.exists() else []


def build(path, cache_dir, **kwargs):
    datamodule = TextFilesDataModule(train_file=str(path), tokenizer=CountingWordTokenizer(), cache_dir=str(cache_dir), **kwargs)
    datamodule.setup()
    return datamodule


def arrays(datamodule):
    return {split: (np.asarray(ds.ids.values).tolist(), ds.ids.offsets.tolist(), ds.labels.tolist()) for split, ds in datamodule.datasets.items()}


def test_second_run_hits_the_cache_and_skips_tokenising(tmp_path, counting, caplog):
    path = write_rows(tmp_path / "train.csv", labelled_rows(200), "csv")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        first = build(path, cache, max_length=8)
    assert counting == {"fit": 1, "encode": 200} and "data cache miss" in caplog.text
    assert len(entries(cache)) == 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        second = build(path, cache, max_length=8)
    assert counting == {"fit": 1, "encode": 200}, "a cache hit must neither fit nor tokenise"
    assert "data cache hit" in caplog.text
    assert arrays(second) == arrays(first)
    assert isinstance(second.datasets["train"].ids.values, np.memmap)
    # The fitted tokenizer comes back from the cache with the ids it produced.
    assert second.tokenizer.to_dict() == first.tokenizer.to_dict()
    assert second.label_names == first.label_names and second.model_dims() == first.model_dims()
    assert max(len(second.datasets["train"].ids[i]) for i in range(len(second.datasets["train"]))) <= 8


def test_a_changed_file_or_setting_rebuilds(tmp_path, counting):
    path = write_rows(tmp_path / "train.jsonl", labelled_rows(100), "jsonl")
    cache = tmp_path / "cache"
    build(path, cache)
    assert counting["fit"] == 1
    build(path, cache, max_length=4)  # a changed truncation
    assert counting["fit"] == 2
    build(path, cache, split_seed=7)  # a changed split
    assert counting["fit"] == 3
    build(path, cache)  # as the first: a hit
    assert counting["fit"] == 3
    write_rows(path, labelled_rows(100, seed=5), "jsonl")  # new content, same size or not
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    rebuilt = build(path, cache)
    assert counting["fit"] == 4
    assert len(entries(cache)) == 4
    assert rebuilt.split_sizes["data/train_size"] == 80


def test_a_changed_tokenizer_setting_rebuilds_and_cache_dir_null_never_writes(tmp_path):
    path = write_rows(tmp_path / "train.tsv", labelled_rows(60), "tsv")
    cache = tmp_path / "cache"
    for min_freq in (1, 2, 1):
        TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(min_freq=min_freq), cache_dir=str(cache)).setup()
    assert len(entries(cache)) == 2
    TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(), cache_dir=None).setup()
    assert len(entries(cache)) == 2


def test_imdb_cache_notices_an_edited_review(tmp_path, caplog):
    root = make_aclimdb(tmp_path, per_folder=6)
    kwargs = dict(data_dir=str(tmp_path), labels=["neg", "pos"], cache_dir=str(tmp_path / ".cache"))
    IMDBDataModule(tokenizer=WordTokenizer(), **kwargs).setup()
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        IMDBDataModule(tokenizer=WordTokenizer(), **kwargs).setup()
    assert "data cache hit" in caplog.text
    caplog.clear()
    review = next((root / "test" / "pos").glob("*.txt"))
    review.write_text("an edited review")
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        IMDBDataModule(tokenizer=WordTokenizer(), **kwargs).setup()
    assert "data cache miss" in caplog.text


def test_language_modelling_text_is_cached(tmp_path, caplog):
    path = tmp_path / "corpus.txt"
    path.write_text("to be or not to be, that is the question\n" * 50)
    kwargs = dict(files=[str(path)], block_size=8, cache_dir=str(tmp_path / "cache"))
    first = LanguageModelingDataModule(tokenizer=WordTokenizer(), **kwargs)
    first.setup()
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        second = LanguageModelingDataModule(tokenizer=WordTokenizer(), **kwargs)
        second.setup()
    assert "data cache hit" in caplog.text
    assert second.split_sizes == first.split_sizes
    assert [s.tolist() for s in second.segments["val"]] == [s.tolist() for s in first.segments["val"]]


def test_a_file_changed_with_the_same_size_and_time_is_not_served_stale(tmp_path, counting):
    path = write_rows(tmp_path / "train.csv", labelled_rows(60), "csv")
    cache = tmp_path / "cache"
    first = build(path, cache)
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b"neg,", b"xxx,"))  # same length, other labels
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)

    second = build(path, cache)

    assert counting["fit"] == 2 and len(entries(cache)) == 2
    assert first.label_names == ["neg", "pos"] and second.label_names == ["pos", "xxx"]


def test_imdb_review_changed_with_the_same_size_and_time_rebuilds(tmp_path, caplog):
    root = make_aclimdb(tmp_path, per_folder=4)
    kwargs = dict(data_dir=str(tmp_path), labels=["neg", "pos"], cache_dir=str(tmp_path / ".cache"))
    IMDBDataModule(tokenizer=WordTokenizer(), **kwargs).setup()
    review = next((root / "train" / "neg").glob("*.txt"))
    stat = review.stat()
    review.write_text(review.read_text().swapcase())
    os.utime(review, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        IMDBDataModule(tokenizer=WordTokenizer(), **kwargs).setup()
    assert "data cache miss" in caplog.text


def damage(folder, how):
    if how == "truncated values":
        values = next(folder.glob("*.values.npy"))
        values.write_bytes(values.read_bytes()[: values.stat().st_size // 2])
    elif how == "truncated offsets":
        offsets = next(folder.glob("*.offsets.npy"))
        offsets.write_bytes(offsets.read_bytes()[:100])
    elif how == "garbage meta.json":
        (folder / "meta.json").write_bytes(b"\x00{garbage")
    elif how == "meta.json of another shape":
        (folder / "meta.json").write_text("[1, 2, 3]")
    elif how == "missing array":
        next(folder.glob("*.labels.npy")).unlink()


@pytest.mark.parametrize("how", ["truncated values", "truncated offsets", "garbage meta.json", "meta.json of another shape", "missing array"])
def test_a_damaged_entry_is_rebuilt_with_a_one_line_warning(tmp_path, counting, caplog, how):
    path = write_rows(tmp_path / "train.csv", labelled_rows(80), "csv")
    cache = tmp_path / "cache"
    expected = arrays(build(path, cache))
    (key,) = entries(cache)
    damage(cache / key, how)

    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        rebuilt = build(path, cache)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "damaged" in warnings[0] and key in warnings[0], warnings
    assert counting["fit"] == 2 and arrays(rebuilt) == expected
    assert entries(cache) == [key]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        build(path, cache)
    assert "data cache hit" in caplog.text and counting["fit"] == 2


KILLED_WRITE = """
import os, sys
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import WordTokenizer
os.rename = lambda *args: os._exit(9)  # killed after writing every file, before the entry is renamed into place
TextFilesDataModule(train_file=sys.argv[1], tokenizer=WordTokenizer(), cache_dir=sys.argv[2]).setup()
"""


def test_a_write_killed_midway_is_cleaned_up_by_the_next_run_but_live_writes_are_not(tmp_path):
    path = write_rows(tmp_path / "train.csv", labelled_rows(40), "csv")
    cache = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(path), str(cache)], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr[-2000:]
    (left_behind,) = entries(cache)
    assert left_behind.startswith(".")
    # Other writes of the same entry: named after their host and process id, as the killed one is.
    prefix, pid, suffix = left_behind.rsplit(".", 2)
    key, host = prefix[1:].split(".", 1)
    live_here = f".{key}.{host}.{os.getpid()}.{suffix}"
    fresh_elsewhere = f".{key}.node-b.{pid}.{suffix}"
    stale_elsewhere = f".{key}.node-c.{pid}.{suffix}"
    for name in (live_here, fresh_elsewhere, stale_elsewhere):
        shutil.copytree(cache / left_behind, cache / name)
    two_hours_ago = time.time() - 7200
    os.utime(cache / stale_elsewhere, (two_hours_ago, two_hours_ago))

    TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(), cache_dir=str(cache)).setup()

    assert entries(cache) == sorted([key, live_here, fresh_elsewhere])
