"""What every DataModule offers a run, whatever its family: the loader settings applied alike, the token
cache, the fold check, split sizes and the tokenizer file; and data options that state the shared
settings once."""

import logging
from importlib.resources import files

import numpy as np
import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seqlab.data.base import SequenceDataModule
from seqlab.data.cache import CacheEntry, RaggedArray, encode_texts, file_identity
from seqlab.data.io import read_text, text_lines
from seqlab.data.tokenizers import CharTokenizer, load_tokenizer
from seqlab.deploy.inputs import read_text_batches
from seqlab.errors import SeqlabError

LOADER_SETTINGS = ["data.eval_batch_size=7", "data.num_workers=1", "data.pin_memory=true", "data.persistent_workers=true"]


@pytest.mark.parametrize("data", ["synthetic_sentiment", "text_lm"])
def test_both_families_apply_the_loader_settings_alike(compose_config, tmp_path, data):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 40)
    sizes = ["data.train_size=60", "data.val_size=20", "data.test_size=20"] if data == "synthetic_sentiment" else [f"data.files=[{text}]", "data.block_size=8"]
    cfg = compose_config([f"data={data}", f"paths.data_dir={tmp_path}", *sizes, *LOADER_SETTINGS])
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, SequenceDataModule)
    datamodule.setup("fit")
    for loader, batch_size in ((datamodule.train_dataloader(), cfg.data.batch_size), (datamodule.val_dataloader(), 7), (datamodule.test_dataloader(), 7)):
        assert (loader.batch_size, loader.num_workers, loader.pin_memory, loader.persistent_workers) == (batch_size, 1, True, True)
    # Persistent workers need workers: without any, the setting is dropped rather than refused by torch.
    alone = instantiate(compose_config([f"data={data}", f"paths.data_dir={tmp_path}", *sizes, "data.persistent_workers=true"]).data)
    alone.setup("fit")
    assert alone.val_dataloader().persistent_workers is False


class ReversedLines(SequenceDataModule):
    """A family of the user's own: each line of a file read backwards, one line a sequence."""

    def __init__(self, path: str, tokenizer, **settings) -> None:
        super().__init__(tokenizer, batch_size=2, **settings)
        self.path = path
        self.builds = 0
        self.sequences: dict[str, RaggedArray] = {}

    def source_identity(self):
        return file_identity([self.path])

    def _split_settings(self):
        return {"split": [self.num_folds, self.fold]}

    def _build(self) -> CacheEntry:
        self.builds += 1
        lines = [line[::-1] for line in text_lines(read_text(self.path)) if line]
        self.tokenizer.fit(lines[:-2])
        ragged = {"train": encode_texts(self.tokenizer, lines[:-2]), "val": encode_texts(self.tokenizer, lines[-2:])}
        return CacheEntry({"tokenizer": self.tokenizer.to_dict(), "splits": ["train", "val"]}, ragged, {})

    def _use(self, entry: CacheEntry) -> None:
        self.sequences = {split: entry.ragged[split] for split in entry.meta["splits"]}

    def _sizes(self):
        return {split: len(ragged) for split, ragged in self.sequences.items()}

    def task_dims(self):
        return {}


def test_a_family_written_on_the_base_gets_the_cache_fold_check_sizes_and_tokenizer_file(tmp_path, caplog):
    path = tmp_path / "lines.txt"
    path.write_text("abc\nbcd\ncde\ndef\n")
    first = ReversedLines(path, CharTokenizer(), cache_dir=str(tmp_path / "cache"))
    first.setup()
    assert first.split_sizes == {"data/train_size": 2, "data/val_size": 2}
    assert first.tokenizer.decode(np.asarray(first.sequences["train"][1]).tolist()) == "dcb"
    first.save_to(tmp_path)
    assert load_tokenizer(tmp_path / "tokenizer.json").to_dict() == first.tokenizer.to_dict()
    assert first.model_dims() == {"vocab_size": first.tokenizer.vocab_size}

    second = ReversedLines(path, CharTokenizer(), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="seqlab.data.cache"):
        second.setup()
    assert second.builds == 0 and "data cache hit" in caplog.text
    assert second.tokenizer.to_dict() == first.tokenizer.to_dict()

    with pytest.raises(SeqlabError, match=r"data.fold must be in 0..2 for data.num_folds=3, got 3"):
        ReversedLines(path, CharTokenizer(), num_folds=3, fold=3).setup()


def test_predict_input_names_the_file_and_line_that_is_not_utf8(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"a good film\n\xff bad bytes\n")
    with pytest.raises(SeqlabError) as caught:
        list(read_text_batches(path, batch_size=8))
    assert str(caught.value) == f"{path}:2: not UTF-8 text (invalid start byte)"


def test_predict_input_and_training_files_break_lines_at_newlines_only(tmp_path):
    # NEL, U+2028 and a form feed sit inside real sentences; only "\n" (or "\r\n") ends a text.
    lines = ["one\u0085still one", "two\u2028still two\x0c", "three"]
    path = tmp_path / "in.txt"
    path.write_text("\r\n".join(lines) + "\n", newline="")
    assert [text for batch in read_text_batches(path, batch_size=2) for text in batch.texts] == lines
    assert text_lines(read_text(path))[:-1] == lines


# -- the data options' settings -------------------------------------------------------------------

SHARED = files("seqlab.conf") / "data" / "shared"
DATA_OPTIONS = sorted(entry.name.removesuffix(".yaml") for entry in (files("seqlab.conf") / "data").iterdir() if entry.name.endswith(".yaml"))


@pytest.mark.parametrize("data", DATA_OPTIONS)
def test_every_data_option_takes_the_loader_and_fold_settings_from_one_file(compose_config, data):
    shared = yaml.safe_load((SHARED / "loader.yaml").read_text())
    own = yaml.safe_load((files("seqlab.conf") / "data" / f"{data}.yaml").read_text())
    assert not set(shared) & set(own), f"data/{data}.yaml repeats settings of data/shared/loader.yaml"
    composed = OmegaConf.to_container(compose_config([f"data={data}"]).data)
    assert {key: composed[key] for key in shared} == shared
