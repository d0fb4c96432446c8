"""`data.num_folds=K data.fold=i`: the K validation folds partition the training data exactly, the same seed
gives the same folds, and the test set is untouched, for every DataModule with a training split."""

from collections import Counter

import numpy as np
import pytest

from data_fixtures import labelled_rows, make_aclimdb, make_sst2, write_rows
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.splits import kfold_split
from seqlab.data.sst2 import SST2DataModule
from seqlab.data.synthetic import SyntheticSentimentDataModule
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import CharTokenizer
from seqlab.errors import SeqlabError

K = 4


def texts(datamodule, split):
    dataset = datamodule.datasets[split]
    return [datamodule.tokenizer.decode(dataset.ids[i].tolist()) for i in range(len(dataset))]


def classification_modules(tmp_path):
    write_rows(tmp_path / "train.parquet", labelled_rows(50, ("a", "b", "c")), "parquet")
    make_aclimdb(tmp_path, per_folder=9)
    make_sst2(tmp_path, (30, 10, 10))
    return {
        "text_files": lambda **kw: TextFilesDataModule(train_file=str(tmp_path / "train.parquet"), **kw),
        "imdb": lambda **kw: IMDBDataModule(data_dir=str(tmp_path), **kw),
        "sst2": lambda **kw: SST2DataModule(data_dir=str(tmp_path), **kw),
        "synthetic_sentiment": lambda **kw: SyntheticSentimentDataModule(train_size=200, val_size=5, test_size=5, **kw),
    }


@pytest.mark.parametrize("name", ["text_files", "imdb", "sst2", "synthetic_sentiment"])
def test_validation_folds_partition_the_training_data(tmp_path, name):
    make = classification_modules(tmp_path)[name]
    folds = []
    for fold in range(K):
        datamodule = make(tokenizer=CharTokenizer(), num_folds=K, fold=fold, split_seed=11, cache_dir=str(tmp_path / ".cache"))
        datamodule.setup()
        folds.append({split: texts(datamodule, split) for split in ("train", "val", "test")})
    everything = Counter(folds[0]["train"] + folds[0]["val"])
    if name != "synthetic_sentiment":  # generated reviews repeat now and then; the file fixtures never do
        assert len(everything) == sum(everything.values())
    # The validation folds are disjoint and together are the training data.
    assert Counter(text for fold in folds for text in fold["val"]) == everything
    for fold in folds:
        assert Counter(fold["train"] + fold["val"]) == everything
        assert fold["test"] == folds[0]["test"]
    sizes = sorted(len(fold["val"]) for fold in folds)
    assert sizes[-1] - sizes[0] <= 1

    again = make(tokenizer=CharTokenizer(), num_folds=K, fold=2, split_seed=11, cache_dir=None)
    again.setup()
    assert texts(again, "val") == folds[2]["val"]
    other_seed = make(tokenizer=CharTokenizer(), num_folds=K, fold=2, split_seed=12, cache_dir=None)
    other_seed.setup()
    assert texts(other_seed, "val") != folds[2]["val"]


def test_kfold_split_is_stratified_and_exact():
    labels = ["x"] * 30 + ["y"] * 9 + ["z"] * 3
    validation = [kfold_split(labels, 3, fold, seed=5)[1] for fold in range(3)]
    assert sorted(np.concatenate(validation).tolist()) == list(range(len(labels)))
    for val in validation:
        counts = Counter(labels[i] for i in val)
        assert counts["x"] == 10 and counts["y"] == 3 and counts["z"] == 1


def test_language_modelling_folds_partition_the_training_text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{i} all the world's a stage\n" for i in range(100)))
    text = path.read_text()
    val_texts, tests = [], []
    for fold in range(K):
        datamodule = LanguageModelingDataModule(
            files=[str(path)], tokenizer=CharTokenizer(), block_size=8, num_folds=K, fold=fold, cache_dir=str(tmp_path / ".cache")
        )
        datamodule.setup()

        def decode(split: str) -> str:
            return "".join(datamodule.tokenizer.decode(s.tolist()) for s in datamodule.segments[split])

        val_texts.append(decode("val"))
        tests.append(decode("test"))
        assert len(decode("train")) + len(decode("val")) == int(len(text) * 0.9)
    assert "".join(val_texts) == text[: int(len(text) * 0.9)]
    assert tests == [text[int(len(text) * 0.9) :]] * K


@pytest.mark.parametrize("fold", [-1, K, None])
def test_a_fold_outside_the_range_is_one_clear_error(tmp_path, fold):
    make = classification_modules(tmp_path)["text_files"]
    with pytest.raises(SeqlabError, match=rf"data.fold must be in 0..{K - 1}"):
        make(tokenizer=CharTokenizer(), num_folds=K, fold=fold, cache_dir=str(tmp_path / ".cache")).setup()
    assert not (tmp_path / ".cache").exists()
