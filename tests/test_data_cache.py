"""The token cache: a second run reads memory-mapped arrays instead of tokenising; a changed file or setting rebuilds."""

import logging
import os

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
