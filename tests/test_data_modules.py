"""Every DataModule builds from small files the tests write, with the splits, labels and batches users rely on."""

import json

import numpy as np
import pytest
import torch

from data_fixtures import labelled_rows, make_aclimdb, make_sst2, write_rows
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.language_modeling import LanguageModelingDataModule
from seqlab.data.sst2 import SST2DataModule
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer

EXTENSIONS = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "parquet": "parquet", "label_text": "txt"}


def texts_of(datamodule, split: str) -> list[str]:
    dataset = datamodule.datasets[split]
    return [datamodule.tokenizer.decode(dataset.ids[i].tolist()) for i in range(len(dataset))]


@pytest.mark.parametrize("format", list(EXTENSIONS))
def test_text_files_reads_each_format_and_splits_the_training_file(tmp_path, format):
    rows = labelled_rows(100)
    path = write_rows(tmp_path / f"train.{EXTENSIONS[format]}", rows, format)
    datamodule = TextFilesDataModule(train_file=str(path), tokenizer=CharTokenizer(), cache_dir=str(tmp_path / "cache"), split_seed=3)
    datamodule.setup()
    assert datamodule.split_sizes == {"data/train_size": 80, "data/val_size": 10, "data/test_size": 10}
    assert datamodule.label_names == ["neg", "pos"]
    # Stratified: each held-out share has as many of each label.
    for split in ("val", "test"):
        assert np.bincount(datamodule.datasets[split].labels).tolist() == [5, 5]
    # Every row lands in exactly one split, with its own label.
    label_of = dict(rows)
    seen = []
    for split in ("train", "val", "test"):
        for text, label_id in zip(texts_of(datamodule, split), datamodule.datasets[split].labels):
            assert label_of[text] == datamodule.label_names[label_id]
            seen.append(text)
    assert sorted(seen) == sorted(label_of)
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape[0] == 32 and batch["input_ids"].dtype == torch.int64
    assert batch["input_ids"].shape[1] == int(batch["lengths"].max())


def test_text_files_uses_given_validation_and_test_files_and_columns(tmp_path):
    files = {
        split: write_rows(tmp_path / f"{split}.jsonl", labelled_rows(n, ("sports", "politics", "tech"), seed), "jsonl", "body", "topic")
        for split, n, seed in (("train", 30, 0), ("val", 9, 1), ("test", 12, 2))
    }
    datamodule = TextFilesDataModule(
        train_file=str(files["train"]),
        val_file=str(files["val"]),
        test_file=str(files["test"]),
        text_column="body",
        label_column="topic",
        tokenizer=BPETokenizer(vocab_size=300),
        cache_dir=None,
    )
    datamodule.setup()
    assert datamodule.split_sizes == {"data/train_size": 30, "data/val_size": 9, "data/test_size": 12}
    assert datamodule.label_names == ["politics", "sports", "tech"]
    datamodule.save_to(tmp_path)
    assert json.loads((tmp_path / "labels.json").read_text()) == {"politics": 0, "sports": 1, "tech": 2}
    assert load_tokenizer(tmp_path / "tokenizer.json").encode_batch(["review 3"]) == datamodule.tokenizer.encode_batch(["review 3"])


def test_text_files_declared_labels_fix_the_ids_and_relative_names_resolve_under_data_dir(tmp_path):
    write_rows(tmp_path / "data" / "reviews.csv", labelled_rows(40), "csv")
    datamodule = TextFilesDataModule(train_file="reviews.csv", data_dir=str(tmp_path / "data"), labels=["pos", "neg"], tokenizer=WordTokenizer())
    datamodule.setup()
    assert datamodule.label_names == ["pos", "neg"]
    assert datamodule.split_sizes["data/train_size"] == 32


def test_imdb_reads_the_aclimdb_layout_strips_markup_and_splits_validation_from_training(tmp_path):
    make_aclimdb(tmp_path, per_folder=20)
    datamodule = IMDBDataModule(data_dir=str(tmp_path), labels=["neg", "pos"], tokenizer=CharTokenizer(), val_fraction=0.1, cache_dir=str(tmp_path / ".cache"))
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.split_sizes == {"data/train_size": 36, "data/val_size": 4, "data/test_size": 40}
    assert np.bincount(datamodule.datasets["val"].labels).tolist() == [2, 2]
    test_texts = texts_of(datamodule, "test")
    assert all(text.startswith("test ") and "<br" not in text and "The end." in text for text in test_texts)
    # Each review keeps the label of its folder.
    for text, label_id in zip(test_texts, datamodule.datasets["test"].labels):
        assert text.split()[1] == datamodule.label_names[label_id]
    assert all(text.startswith("train ") for split in ("train", "val") for text in texts_of(datamodule, split))


def test_sst2_uses_its_three_files(tmp_path):
    make_sst2(tmp_path, (60, 20, 30))
    datamodule = SST2DataModule(data_dir=str(tmp_path), labels=["0", "1"], tokenizer=WordTokenizer(), cache_dir=str(tmp_path / ".cache"))
    datamodule.setup()
    assert datamodule.split_sizes == {"data/train_size": 60, "data/val_size": 20, "data/test_size": 30}


def test_text_lm_splits_a_text_file_by_position(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"line {i}: to be or not to be\n" for i in range(200)))
    datamodule = LanguageModelingDataModule(files=[str(path)], tokenizer=CharTokenizer(), block_size=16, batch_size=4, cache_dir=str(tmp_path / "cache"))
    datamodule.setup()
    text = path.read_text()
    cut = int(len(text) * 0.9)
    assert datamodule.tokenizer.decode(datamodule.segments["train"][0].tolist()) == text[:cut]
    assert datamodule.tokenizer.decode(datamodule.segments["val"][0].tolist()) == text[cut:]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (4, 16)
    assert torch.equal(batch["input_ids"][:, 1:], batch["targets"][:, :-1])


@pytest.mark.parametrize(
    "data,tokenizer", [("imdb", "word"), ("sst2", "bpe"), ("text_files", "pretrained"), ("shakespeare", "word"), ("synthetic_sentiment", "char")]
)
def test_the_tokenizer_group_composes_with_the_data_groups(compose_config, data, tokenizer):
    cfg = compose_config([f"data={data}", f"data/tokenizer={tokenizer}"])
    assert (
        cfg.data.tokenizer._target_.split(".")[-1]
        == {"word": "WordTokenizer", "bpe": "BPETokenizer", "char": "CharTokenizer", "pretrained": "PretrainedTokenizer"}[tokenizer]
    )
    assert data == "synthetic_sentiment" or cfg.data.cache_dir.endswith("/.cache")
