"""seqlab-generate and seqlab-eval's language-model report on a tiny character GPT trained here."""

import math
import random

import pytest

from conftest import read_metrics, run_cli
from seqlab.cli.eval import evaluate
from seqlab.cli.export import export
from seqlab.cli.generate import generate
from seqlab.cli.predict import predict

WORDS = "the king and queen of the land spoke to their people in the great hall".split()
PROMPT = "the king"


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("lm")
    rng = random.Random(0)
    text_file = root / "corpus.txt"
    text_file.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(300)))
    run_dir = root / "run"
    result = run_cli(
        "seqlab-train",
        "data=text_lm",
        f"data.files=[{text_file}]",
        "model=gpt",
        "task=language_modeling",
        "monitor=val/loss",
        "monitor_mode=min",
        "data.block_size=16",
        "model.block_size=16",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.hidden_dim=16",
        "data.train_samples_per_epoch=320",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        "task.sample_length=0",
        "callbacks.progress_bar=null",
        "callbacks.model_summary=null",
        f"hydra.run.dir={run_dir}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "learning_curves.png").is_file()
    return read_metrics(run_dir)["ckpt_path"]


def test_generate_prints_a_sample_that_the_seed_reproduces(lm_checkpoint, tmp_path, compose_config, in_hydra):
    settings = [f"ckpt_path={lm_checkpoint}", f"prompt={PROMPT}", "max_new_tokens=30", "temperature=0.8", "top_k=5", "seed=3"]
    result = run_cli("seqlab-generate", *settings, f"hydra.run.dir={tmp_path / 'cli'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.rstrip("\n")
    assert printed.startswith(PROMPT) and len(printed) > len(PROMPT) + 10
    assert set(printed) <= set("".join(WORDS) + " \n")  # a character model samples its own vocabulary
    [again] = in_hydra(generate, compose_config(settings, config_name="generate"))
    assert again == printed
    [other_seed] = in_hydra(generate, compose_config([*settings[:-1], "seed=4"], config_name="generate"))
    assert other_seed != printed


def test_a_prompt_longer_than_the_context_is_said_once(lm_checkpoint, compose_config, in_hydra, caplog):
    long_prompt = " ".join(WORDS)
    samples = in_hydra(
        generate,
        compose_config([f"ckpt_path={lm_checkpoint}", f"prompt='{long_prompt}'", "max_new_tokens=5", "temperature=0", "num_samples=2"], config_name="generate"),
    )
    assert len(samples) == 2 and samples[0] == samples[1] and samples[0].startswith(long_prompt)
    warnings = [r.getMessage() for r in caplog.records if "context" in r.getMessage()]
    assert warnings == [f"the prompt has {len(long_prompt)} tokens, more than the model's context of 16: it conditions on the last 16"]


@pytest.mark.parametrize("command", [predict, export], ids=["predict", "export"])
def test_classifier_commands_refuse_a_language_model(lm_checkpoint, compose_config, in_hydra, tmp_path, capsys, command):
    (tmp_path / "in.txt").write_text("the king\n")
    overrides = {"predict": [f"input={tmp_path / 'in.txt'}", f"output={tmp_path / 'out.jsonl'}"], "export": [f"output_dir={tmp_path / 'bundle'}"]}[
        command.__name__
    ]
    with pytest.raises(SystemExit):
        in_hydra(command, compose_config([f"ckpt_path={lm_checkpoint}", *overrides], config_name=command.__name__))
    assert f"holds a language model, but seqlab-{command.__name__} needs a text classifier" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "bundle").exists()


def test_eval_reports_loss_perplexity_and_bits_per_character(lm_checkpoint, compose_config, in_hydra, tmp_path):
    eval_dir = tmp_path / "eval"
    in_hydra(evaluate, compose_config([f"ckpt_path={lm_checkpoint}", "callbacks.progress_bar=null"], config_name="eval", run_dir=eval_dir))
    metrics = read_metrics(eval_dir)
    report = metrics["report"]
    assert report["loss"] == metrics["test/loss"]
    assert report["perplexity"] == pytest.approx(math.exp(metrics["test/loss"]), rel=1e-6)
    # Characters are tokens here, so bits per character is the task's own bpc.
    assert report["bits_per_character"] == pytest.approx(metrics["test/bpc"], rel=1e-5)
    assert report["tokens"] == report["characters"] == metrics["data/test_size"] - 1
    assert 0 < report["bits_per_character"] < math.log2(len(set("".join(WORDS) + " \n")) + 2) + 1
