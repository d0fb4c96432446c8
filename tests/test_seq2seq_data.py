"""data=parallel_text: splits by named groups, files or seeded shares; long pairs dropped or cut and
counted; batches ready for teacher forcing; one-line errors naming the file or the setting."""

import logging
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from parallel_fixtures import parallel_rows, write_parallel_tsv
from seqlab.data.parallel_text import ParallelTextDataModule, decode_target, special_ids
from seqlab.data.tokenizers import BPETokenizer, WordTokenizer
from seqlab.errors import SeqlabError

BOOKS = ["data.group_column=ref", r"data.group_pattern='^(.+) \d+:\d+$'", "data.val_groups=[Gamma]", "data.test_groups=[Delta]"]


def datamodule(tmp_path: Path, compose_config, *overrides: str, rows: int = 200) -> ParallelTextDataModule:
    train_file = write_parallel_tsv(tmp_path / "pairs.tsv", parallel_rows(rows))
    cfg = compose_config(
        ["data=parallel_text", f"data.train_file={train_file}", "data.source_column=en", "data.target_column=es", f"paths.data_dir={tmp_path}", *overrides]
    )
    module = instantiate(cfg.data)
    module.setup("fit")
    return module


def source_texts(module: ParallelTextDataModule, split: str) -> set[str]:
    dataset = module.datasets[split]
    return {module.tokenizer.decode(dataset.sources[i].tolist()).strip() for i in range(len(dataset))}


def test_named_groups_hold_out_whole_books(tmp_path: Path, compose_config) -> None:
    module = datamodule(tmp_path, compose_config, *BOOKS)
    rows = parallel_rows(200)
    by_book = {book: {row["en"] for row in rows if row["ref"].startswith(book)} for book in ("Alpha", "Beta", "Gamma", "Delta")}
    assert module.split_sizes == {"data/train_size": 100, "data/val_size": 50, "data/test_size": 50}
    assert source_texts(module, "val") == by_book["Gamma"]
    assert source_texts(module, "test") == by_book["Delta"]
    assert source_texts(module, "train") == by_book["Alpha"] | by_book["Beta"]


def test_without_groups_seeded_shares_of_the_file_validate_and_test(tmp_path: Path, compose_config) -> None:
    module = datamodule(tmp_path, compose_config, "data.val_fraction=0.1", "data.test_fraction=0.2")
    assert module.split_sizes == {"data/train_size": 140, "data/val_size": 20, "data/test_size": 40}
    assert not source_texts(module, "test") & source_texts(module, "val")


def test_one_tokenizer_is_fitted_on_both_sides_and_reported_with_special_ids(tmp_path: Path, compose_config) -> None:
    module = datamodule(tmp_path, compose_config, *BOOKS)
    dims = module.model_dims()
    vocab = module.tokenizer.vocab_size
    assert dims == {"vocab_size": vocab + 2, "pad_id": module.tokenizer.pad_id, "bos_id": vocab, "eos_id": vocab + 1}
    assert isinstance(module.tokenizer, BPETokenizer)
    for word in ("perro", "dog"):  # a word of each side is one token
        assert len(module.tokenizer.encode_batch([word])[0]) == 1


def test_a_batch_starts_the_target_input_with_bos_and_ends_its_output_with_eos(tmp_path: Path, compose_config) -> None:
    module = datamodule(tmp_path, compose_config, *BOOKS)
    ids = special_ids(module.tokenizer)
    batch = next(iter(module.val_dataloader()))
    target_lengths = (batch["target_out"] != -100).sum(1)
    assert (batch["target_in"][:, 0] == ids["bos_id"]).all()
    assert (batch["target_out"].gather(1, (target_lengths - 1)[:, None]).squeeze(1) == ids["eos_id"]).all()
    shifted = batch["target_out"][:, :-1]
    words = (shifted != -100) & (shifted != ids["eos_id"])
    assert torch.equal(batch["target_in"][:, 1:][words], shifted[words])  # the input is the output one step late
    first = batch["target_out"][0][: target_lengths[0]].tolist()
    assert decode_target(module.tokenizer, first) == batch["references"][0]


def test_long_training_pairs_are_dropped_and_long_evaluation_pairs_cut_with_counts(tmp_path: Path, compose_config, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="seqlab.data.parallel_text"):
        module = datamodule(tmp_path, compose_config, *BOOKS, "data.max_source_length=5", "data.max_target_length=5", "data/tokenizer=word")
    assert isinstance(module.tokenizer, WordTokenizer)
    long_rows = [row for row in parallel_rows(200) if len(row["en"].split()) > 5]
    long_train = sum(1 for row in long_rows if row["ref"].startswith(("Alpha", "Beta")))
    assert len(module.datasets["train"]) == 100 - long_train
    assert len(module.datasets["val"]) == 50 and module.datasets["val"].sources.lengths.max() == 5
    assert f"{long_train} of 100 train pairs are longer than 5 source / 5 target tokens: dropped" in caplog.text
    assert "val pairs are longer than 5 source / 5 target tokens: cut" in caplog.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.source_column=english"], r"pairs.tsv: no column 'english' \(columns: ref, en, es\); set data.source_column$"),
        (["data.target_column=spanish"], r"no column 'spanish' \(columns: ref, en, es\); set data.target_column$"),
        (
            ["data.group_column=book", "data.val_groups=[a]", "data.test_groups=[b]"],
            r"no column 'book' \(columns: ref, en, es\); set data.group_column \(null: no groups\)$",
        ),
        (BOOKS[:3], "data.group_column='ref' needs data.test_groups"),
        (
            ["data.group_column=ref", "data.val_groups=[Gamma]", "data.test_groups=[Delta]"],
            r"data.val_groups: \['Gamma'\] are not groups of .*data.group_pattern",
        ),
        ([*BOOKS[:3], "data.test_groups=[Omega]"], r"data.test_groups: \['Omega'\] are not groups of"),
        (["data.group_column=ref", "data.group_pattern='^Book'", "data.val_groups=[a]", "data.test_groups=[b]"], "data.group_pattern '\\^Book' does not match"),
    ],
)
def test_a_bad_setting_stops_in_one_line_naming_it(tmp_path: Path, compose_config, overrides: list[str], message: str) -> None:
    with pytest.raises(SeqlabError, match=message):
        datamodule(tmp_path, compose_config, *overrides)


def test_folds_with_groups_validate_on_whole_groups_of_the_training_books(tmp_path: Path, compose_config) -> None:
    folds = [datamodule(tmp_path, compose_config, *BOOKS, "data.num_folds=2", f"data.fold={fold}", rows=400) for fold in (0, 1)]
    val_books = [source_texts(module, "val") for module in folds]
    assert not val_books[0] & val_books[1]
    for module in folds:
        assert not source_texts(module, "val") & source_texts(module, "train")
        assert module.split_sizes["data/test_size"] == 100  # Delta, never in a fold
    assert sum(module.split_sizes["data/val_size"] for module in folds) == 300  # Alpha, Beta and Gamma between them


def test_separate_tokenizers_are_each_fitted_on_their_own_side(tmp_path: Path, compose_config) -> None:
    module = datamodule(tmp_path, compose_config, *BOOKS, "data.separate_tokenizers=true", "data/tokenizer@data.target_tokenizer=word")
    source, target = module.tokenizer, module.target_tokenizer
    assert isinstance(source, BPETokenizer) and isinstance(target, WordTokenizer)
    assert len(source.encode_batch(["dog"])[0]) == 1 and len(source.encode_batch(["perro"])[0]) > 1  # BPE never merged a Spanish word
    assert len(target.encode_batch(["perro"])[0]) == 1 and target.encode_batch(["dog"]) == target.encode_batch(["xyz"])  # unknown to the target side
    assert source.vocab_size != target.vocab_size
    vocab = target.vocab_size
    assert module.model_dims() == {
        "vocab_size": vocab + 2,
        "pad_id": target.pad_id,
        "bos_id": vocab,
        "eos_id": vocab + 1,
        "source_vocab_size": source.vocab_size,
        "source_pad_id": source.pad_id,
    }
    batch = next(iter(module.val_dataloader()))
    first_source = batch["source_ids"][0][: batch["source_lengths"][0]].tolist()
    first_target = batch["target_out"][0][batch["target_out"][0] != -100].tolist()
    assert source.decode(first_source).strip() in source_texts(module, "val")
    assert decode_target(target, first_target) == batch["references"][0]


def test_another_target_tokenizer_builds_a_new_cache_entry_rather_than_reusing_stale_ids(tmp_path: Path, compose_config) -> None:
    separate = ["data.separate_tokenizers=true", f"data.cache_dir={tmp_path / 'cache'}"]
    first = datamodule(tmp_path, compose_config, *BOOKS, *separate, "data.target_tokenizer.vocab_size=262")
    second = datamodule(tmp_path, compose_config, *BOOKS, *separate, "data.target_tokenizer.vocab_size=280")
    assert first.target_tokenizer.vocab_size == 262 and second.target_tokenizer.vocab_size == 280
    assert len(list((tmp_path / "cache").iterdir())) == 2
    shared = datamodule(tmp_path, compose_config, *BOOKS, f"data.cache_dir={tmp_path / 'cache'}")
    assert shared.target_tokenizer is shared.tokenizer and len(list((tmp_path / "cache").iterdir())) == 3
