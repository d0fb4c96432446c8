"""The language-modelling task: token-weighted loss, perplexity and bits per character; training end to end with a sample."""

import functools
import logging
import math
import random

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from conftest import read_metrics
from seqlab.cli.train import train
from seqlab.data.language_modeling import IGNORE_INDEX, LanguageModelingDataModule
from seqlab.data.tokenizers import CharTokenizer
from seqlab.models.gpt import GPT
from seqlab.tasks.language_modeling import LanguageModelingTask


@pytest.fixture
def text_file(tmp_path):
    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + "." for _ in range(300)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_validation_loss_is_the_mean_over_tokens_not_batches(text_file):
    """A short, padded last window weighs by its tokens; ppl = exp(loss), bpc = loss / ln 2."""
    datamodule = LanguageModelingDataModule([str(text_file)], CharTokenizer(), block_size=13, batch_size=4, eval_batch_size=5)
    datamodule.setup("fit")
    loader = datamodule.val_dataloader()
    assert (list(loader)[-1]["targets"] == IGNORE_INDEX).any(), "the test needs a padded last window"
    torch.manual_seed(0)
    task = LanguageModelingTask(
        functools.partial(GPT, block_size=13, num_layers=1, num_heads=2, hidden_dim=16),
        dims=datamodule.model_dims(),
        tokenizer=datamodule.tokenizer,
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3),
    )
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    metrics = trainer.validate(task, dataloaders=loader, verbose=False)[0]

    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            logits = task.net.eval()(batch["input_ids"])
            total += F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((batch["targets"] != IGNORE_INDEX).sum())
    assert count == sum(len(s) for s in datamodule.segments["val"]) - 1
    assert metrics["val/loss"] == pytest.approx(total / count, rel=1e-4)  # float32 sums
    assert metrics["val/ppl"] == pytest.approx(math.exp(total / count), rel=1e-4)
    assert metrics["val/bpc"] == pytest.approx(total / count / math.log(2), rel=1e-4)


@pytest.mark.parametrize("decay_embeddings", [False, True])
def test_decay_embeddings_puts_the_token_and_position_embeddings_under_weight_decay(decay_embeddings):
    """nanoGPT decays every matrix; by default embeddings (the tied output layer too) are left out."""
    task = LanguageModelingTask(
        functools.partial(GPT, block_size=8, num_layers=1, num_heads=2, hidden_dim=16),
        dims={"vocab_size": 11},
        tokenizer=CharTokenizer(),
        optimizer=functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1),
        decay_embeddings=decay_embeddings,
    )
    decay = {id(p): group["weight_decay"] for group in task.create_optimizer().param_groups for p in group["params"]}
    by_name = {name: decay[id(p)] for name, p in task.net.named_parameters()}
    embeddings = {"transformer.wte.weight", "transformer.wpe.weight"}
    assert {by_name[name] for name in embeddings} == {0.1 if decay_embeddings else 0.0}
    assert by_name["transformer.h.0.attn.c_attn.weight"] == 0.1
    assert by_name["transformer.ln_f.weight"] == 0.0


LM_RUN = [
    "data=text_lm",
    "task=language_modeling",
    "data.block_size=16",
    "data.batch_size=8",
    "data.eval_batch_size=32",
    "data.train_samples_per_epoch=400",
    "trainer.max_epochs=2",
    "task.sample_length=30",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("gpt", ["model.block_size=16", "model.num_layers=1", "model.num_heads=2", "model.hidden_dim=32"]),
        ("lstm_lm", ["model.embed_dim=16", "model.hidden_dim=32", "model.num_layers=1"]),
    ],
)
def test_language_model_trains_end_to_end_and_logs_a_sample(compose_config, in_hydra, tmp_path, text_file, caplog, model, extra):
    cfg = compose_config([*LM_RUN, f"data.files=[{text_file}]", f"model={model}", *extra])
    with caplog.at_level(logging.INFO, logger="seqlab"):
        value = in_hydra(train, cfg)
    metrics = read_metrics(tmp_path / "run")
    assert value == metrics["val/loss"]
    assert metrics["val/loss"] < math.log(metrics["data/val_size"] and 15)  # learnt something: below a uniform guess over the characters
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-5)
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / math.log(2), rel=1e-5)
    assert metrics["global_step"] == 100
    samples = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sample at step")]
    assert [s.split(":")[0] for s in samples] == ["sample at step 50", "sample at step 100"]
    assert len(samples[-1].split(":", 1)[1].strip("\n")) >= 20
    assert any("parameters" in r.getMessage() for r in caplog.records)


def test_word_vocabularies_get_perplexity_but_no_bits_per_character(compose_config, in_hydra, tmp_path, text_file):
    cfg = compose_config(
        [
            *LM_RUN,
            f"data.files=[{text_file}]",
            "model=lstm_lm",
            "model.embed_dim=8",
            "model.hidden_dim=8",
            "model.num_layers=1",
            "trainer.max_epochs=1",
            "data.tokenizer._target_=seqlab.data.tokenizers.WordTokenizer",
        ]
    )
    in_hydra(train, cfg)
    metrics = read_metrics(tmp_path / "run")
    assert "val/ppl" in metrics and "val/bpc" not in metrics


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([*LM_RUN, "data.files=[{text_file}]", "model=lstm"], "task=language_modeling takes model=gpt or lstm_lm"),
        (
            ["data.train_size=50", "data.val_size=10", "data.test_size=10", "model=gpt"],
            "task=classification takes model=lstm, gru, rnn, transformer, cnn or gpt_classifier",
        ),
    ],
    ids=["classifier-as-lm", "lm-as-classifier"],
)
def test_a_model_that_does_not_fit_the_task_is_a_one_line_error(compose_config, in_hydra, text_file, capsys, overrides, message):
    cfg = compose_config([o.format(text_file=text_file) for o in overrides])
    with pytest.raises(SystemExit) as exit_info:
        in_hydra(train, cfg)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("Error: ") and message in error[0]
