"""Pretraining an LSTM language model on IMDb's own text (experiment=imdb_pretrain_lm), then fine-tuning it
as a classifier (experiment=imdb_finetune): the pretraining text, the classifier's pooling, the weights
that load, and both presets end to end on a generated aclImdb folder."""

import json

import hydra
import pytest
import torch
from torch import nn

from conftest import read_metrics, train_in_process
from data_fixtures import labelled_rows, make_aclimdb, write_rows
from seqlab.cli.train import train
from seqlab.deploy.onnx_export import PaddedRNNClassifier
from seqlab.errors import SeqlabError
from seqlab.models.rnn import RNNClassifier
from seqlab.runs.record import read_run
from seqlab.tasks.finetuning import REPORT_FILE, initialise_from_checkpoint

UNLABELLED = [f"unlabelled review {i}: a quiet film<br /><br />with a loud ending." for i in range(40)]
# As small as the presets allow; both runs must use the same sizes for every weight to load.
TINY_LSTM = ["model.embed_dim=16", "model.hidden_dim=24", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def _write_imdb(data_dir):
    root = make_aclimdb(data_dir, per_folder=40)
    (root / "train" / "unsup.txt").write_text("\n".join(UNLABELLED) + "\n")
    return root


def _pretrain_overrides(data_dir, *extra: str) -> list[str]:
    return [
        "experiment=imdb_pretrain_lm",
        f"paths.data_dir={data_dir}",
        *TINY_LSTM,
        "data.block_size=16",
        "data.batch_size=8",
        "data.train_fraction=0.8",
        "data.train_samples_per_epoch=80",
        "trainer.max_steps=10",
        "trainer.val_check_interval=null",
        "scheduler.warmup_steps=2",
        "task.sample_length=4",
        *extra,
    ]


def _finetune_overrides(data_dir, ckpt: str, *extra: str) -> list[str]:
    return [
        "experiment=imdb_finetune",
        f"paths.data_dir={data_dir}",
        f"finetune.from_ckpt={ckpt}",
        *TINY_LSTM,
        "data.max_length=32",
        "trainer.max_epochs=2",
        "scheduler.warmup_steps=2",
        *extra,
    ]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny imdb_pretrain_lm run on a generated aclImdb folder: the data dir, the best checkpoint, the run dir."""

    root = tmp_path_factory.mktemp("imdb_pretrain")
    _write_imdb(root / "data")
    run_dir = root / "run"
    train_in_process(_pretrain_overrides(root / "data"), run_dir)
    return root / "data", read_metrics(run_dir)["ckpt_path"], run_dir


# -- the pretraining text ----------------------------------------------------------------------


def test_pretraining_text_is_the_unlabelled_and_training_reviews_never_the_test_reviews(compose_config, tmp_path):
    root = _write_imdb(tmp_path / "data")
    datamodule = hydra.utils.instantiate(compose_config(["data=imdb_lm", f"paths.data_dir={tmp_path / 'data'}"]).data)
    text = datamodule.read_text()
    lines = text.split("\n")
    for review in sorted((root / "train" / "pos").glob("*.txt")) + sorted((root / "train" / "neg").glob("*.txt")):
        assert review.read_text().replace("<br />", " ").strip() in lines
    for line in UNLABELLED:
        assert line.replace("<br />", " ") in lines
    # make_aclimdb starts every review with its split and label.
    assert "test pos" not in text and "test neg" not in text
    # data=imdb reads `<br />` as a space; the vocabulary the classifier reuses must not hold markup.
    assert "<br" not in text


def test_a_missing_review_folder_is_named(compose_config, tmp_path):
    (tmp_path / "data" / "aclImdb" / "train").mkdir(parents=True)
    (tmp_path / "data" / "aclImdb" / "train" / "unsup.txt").write_text("a film\n")
    datamodule = hydra.utils.instantiate(compose_config(["data=imdb_lm", f"paths.data_dir={tmp_path / 'data'}"]).data)
    with pytest.raises(SeqlabError, match=r"aclImdb/train/pos: no such folder.*data.text_folders"):
        datamodule.prepare_data()
        datamodule.setup("fit")


# -- the classifier over a language model's LSTM ---------------------------------------------------


def test_concat_pooling_is_the_last_state_max_and_mean_and_ignores_padding():
    torch.manual_seed(0)
    model = RNNClassifier(50, 3, pad_id=0, embed_dim=8, hidden_dim=12, pooling="concat").eval()
    assert model.head.in_features == 3 * 12
    ids = torch.randint(1, 50, (2, 7))
    lengths = torch.tensor([7, 4])
    ids[1, 4:] = 0
    padded = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], dim=1)
    assert torch.allclose(model(ids, lengths), model(padded, lengths), atol=1e-6)
    captured = {}
    model.head.register_forward_hook(lambda _module, inputs, _output: captured.update(pooled=inputs[0]))
    model(ids[1:, :4], lengths[1:])
    outputs, (hidden, _) = model.recurrence(model.embedding(ids[1:, :4]))
    assert torch.allclose(captured["pooled"], torch.cat([hidden[-1], outputs.amax(1), outputs.mean(1)], dim=-1), atol=1e-6)


def test_the_classifier_starts_from_the_language_models_embedding_and_lstm(pretrained, compose_config, tmp_path):
    data_dir, ckpt, _ = pretrained
    cfg = compose_config(_finetune_overrides(data_dir, ckpt))
    saved = read_run(ckpt, "finetune.from_ckpt")
    holder = nn.Module()
    holder.net = hydra.utils.instantiate(cfg.model, vocab_size=saved.tokenizer.vocab_size, num_classes=2, pad_id=saved.tokenizer.pad_id)
    report = initialise_from_checkpoint(holder, saved.tokenizer, saved, cfg.finetune, tmp_path)
    backbone = [name for name in holder.state_dict() if not name.startswith("net.head.")]
    assert sorted(report.loaded) == sorted(name.removeprefix("net.") for name in backbone)
    assert report.missing == ["head.bias", "head.weight"] and report.unexpected == [] and report.shape_mismatched == {}
    for name in backbone:
        assert torch.equal(holder.state_dict()[name], saved.state_dict[name]), name


# -- the presets --------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["imdb_pretrain_lm", "imdb_finetune"])
def test_the_presets_compose_with_a_fast_dev_run(compose_config, preset):
    checkpoint = ["finetune.from_ckpt=lm.ckpt"] if preset == "imdb_finetune" else []
    cfg = compose_config([f"experiment={preset}", "debug=fdr", *checkpoint])
    assert cfg.trainer.fast_dev_run is True
    if preset == "imdb_finetune":
        pretrain = compose_config(["experiment=imdb_pretrain_lm"])
        for size in ("embed_dim", "hidden_dim", "num_layers"):
            assert cfg.model[size] == pretrain.model[size], size
        assert cfg.model.bidirectional is False and cfg.model.pooling == "concat"
        assert cfg.finetune.tokenizer == "checkpoint" and cfg.trainer.max_time is not None


def test_a_pretrained_language_model_fine_tunes_as_an_imdb_classifier(pretrained, compose_config, in_hydra, tmp_path):
    data_dir, ckpt, pretrain_dir = pretrained
    in_hydra(train, compose_config(_finetune_overrides(data_dir, ckpt)))
    run_dir = tmp_path / "run"
    report = json.loads((run_dir / REPORT_FILE).read_text())
    assert report["missing"] == ["head.bias", "head.weight"] and report["unexpected"] == []
    assert {"embedding.weight", "recurrence.weight_ih_l0", "recurrence.weight_hh_l0"} <= set(report["loaded"])
    # The reviews were tokenised with the pretraining run's vocabulary.
    assert json.loads((run_dir / "tokenizer.json").read_text()) == json.loads((pretrain_dir / "tokenizer.json").read_text())
    assert "test/acc" in read_metrics(run_dir)


def test_the_pair_runs_on_a_users_own_text_and_topics(compose_config, in_hydra, tmp_path):
    """The same two commands on other data: pretraining on a plain text file (data=text_lm, which
    reads characters unless told otherwise), fine-tuning on a four-topic CSV (data=text_files) from
    the pretraining's run dir (its best checkpoint)."""
    topics = ("world", "sports", "business", "science")
    rows = labelled_rows(120, labels=topics)
    (tmp_path / "corpus.txt").write_text("\n".join(text for text, _ in rows) + "\n")
    write_rows(tmp_path / "topics.csv", rows, "csv")
    pretrain = [o for o in _pretrain_overrides(tmp_path) if not o.startswith("paths.data_dir")]
    lm_dir = tmp_path / "lm"
    train_in_process([*pretrain, "data=text_lm", f"data.files=[{tmp_path / 'corpus.txt'}]"], lm_dir)
    assert json.loads((lm_dir / "tokenizer.json").read_text())["name"] == "word"
    finetune = _finetune_overrides(tmp_path, str(lm_dir), "data=text_files", f"data.train_file={tmp_path / 'topics.csv'}")
    in_hydra(train, compose_config(finetune))
    metrics = read_metrics(tmp_path / "run")
    head = torch.load(tmp_path / "run" / metrics["ckpt_path"], weights_only=True)["state_dict"]["net.head.weight"]
    assert head.shape[0] == len(topics) and "test/acc" in metrics


def test_a_concat_pooling_classifier_exports_with_the_same_outputs():
    torch.manual_seed(0)
    model = RNNClassifier(50, 2, pad_id=0, embed_dim=8, hidden_dim=12, pooling="concat").eval()
    ids = torch.randint(1, 50, (3, 9))
    lengths = torch.tensor([9, 5, 1])
    ids[1, 5:] = ids[2, 1:] = 0
    with torch.no_grad():
        assert torch.allclose(PaddedRNNClassifier(model)(ids, lengths), model(ids, lengths), atol=1e-5)
