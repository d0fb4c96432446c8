"""task=seq2seq: BLEU and chrF as sacreBLEU computes them; `seqlab-train` from parallel text to a run
dir with translation metrics; and the commands that read a translation run: eval, predict, export, serve."""

import json
from pathlib import Path

import pytest
import sacrebleu

from conftest import read_metrics, run_cli, running_service
from parallel_fixtures import LEXICON, parallel_rows, write_parallel_tsv
from seqlab import runs
from seqlab.errors import SeqlabError
from seqlab.tasks.seq2seq import corpus_scores

REFERENCES = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
HYPOTHESES = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]


def test_references_against_themselves_score_100() -> None:
    assert corpus_scores(REFERENCES, REFERENCES) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}


def test_scores_are_sacrebleus_on_detokenised_text() -> None:
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score)
    assert 0 < scores["bleu"] < 100


TINY = [
    "data=parallel_text",
    "model=transformer_seq2seq",
    "task=seq2seq",
    # As the bible_en_es presets name their columns: through a key of their own, which eval must carry.
    "+pair=[en,es]",
    "data.source_column=${pair[0]}",
    "data.target_column=${pair[1]}",
    "data.group_column=ref",
    r"data.group_pattern='^(.+) \d+:\d+$'",
    "data.val_groups=[Gamma]",
    "data.test_groups=[Delta]",
    "data.tokenizer.vocab_size=300",
    "data.batch_size=16",
    "model.hidden_dim=32",
    "model.num_heads=2",
    "model.num_layers=1",
    "task.test_beam_size=3",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A tiny translation run, trained once for the tests of the commands that read it."""
    folder = tmp_path_factory.mktemp("seq2seq")
    train_file = write_parallel_tsv(folder / "pairs.tsv", parallel_rows(120))
    run_dir = folder / "run"
    result = run_cli("seqlab-train", *TINY, f"data.train_file={train_file}", f"paths.data_dir={folder}", f"hydra.run.dir={run_dir}", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def test_train_writes_translation_metrics_the_tokenizer_and_sample_translations(trained_run: Path) -> None:
    metrics = read_metrics(trained_run)
    for metric in ("val/bleu", "val/chrf", "val/loss", "val/ppl", "test/bleu", "test/chrf", "test/loss", "test/ppl", "train/loss"):
        assert metric in metrics
    assert metrics["data/val_size"] == metrics["data/test_size"] == 30
    assert metrics["ckpt_path"].endswith(".ckpt")  # the best by val/bleu, the task's monitor
    assert json.loads((trained_run / "tokenizer.json").read_text())["name"] == "bpe"
    assert "translations at step" in (trained_run / "train.log").read_text()


@pytest.mark.slow
def test_eval_reports_bleu_chrf_and_sample_translations(trained_run: Path, tmp_path: Path) -> None:
    metrics = read_metrics(trained_run)
    result = run_cli("seqlab-eval", f"ckpt_path={metrics['ckpt_path']}", f"hydra.run.dir={tmp_path / 'eval'}", "print_config=false", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["test/bleu"] == pytest.approx(metrics["test/bleu"])
    report = evaluated["report"]
    assert report["bleu"] == evaluated["test/bleu"] and report["sentences"] == 30 and report["beam_size"] == 3
    assert set(report["samples"][0]) == {"translation", "reference"}
    assert len((tmp_path / "eval" / "translations.jsonl").read_text().splitlines()) == 30

    greedy = run_cli(
        "seqlab-eval", f"ckpt_path={metrics['ckpt_path']}", "+task.test_beam_size=1", f"hydra.run.dir={tmp_path / 'greedy'}", "print_config=false", cwd=tmp_path
    )
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    assert json.loads((tmp_path / "greedy" / "metrics.json").read_text())["report"]["beam_size"] == 1


SOURCES = ["the dog sees a cat", "a small bird runs", "the red house"]


def translations(output: Path) -> list[str]:
    return [json.loads(line)["translation"] for line in output.read_text().splitlines()]


@pytest.mark.slow
def test_predict_and_serve_translate_with_a_checkpoint_and_its_safetensors_bundle(trained_run: Path, tmp_path: Path) -> None:
    ckpt_path = read_metrics(trained_run)["ckpt_path"]
    (tmp_path / "sources.txt").write_text("\n".join(SOURCES) + "\n")
    from_checkpoint = run_cli("seqlab-predict", f"ckpt_path={ckpt_path}", "input=sources.txt", "output=from_ckpt.jsonl", cwd=tmp_path)
    assert from_checkpoint.returncode == 0, from_checkpoint.stderr[-3000:]
    exported = run_cli("seqlab-export", f"ckpt_path={ckpt_path}", "format=safetensors", "output_dir=bundle", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    from_bundle = run_cli("seqlab-predict", "bundle=bundle", "input=sources.txt", "output=from_bundle.jsonl", cwd=tmp_path)
    assert from_bundle.returncode == 0, from_bundle.stderr[-3000:]
    expected = translations(tmp_path / "from_ckpt.jsonl")
    assert len(expected) == 3 and translations(tmp_path / "from_bundle.jsonl") == expected
    httpx = pytest.importorskip("httpx")  # the optional `serve` extra
    with running_service("bundle=bundle", cwd=tmp_path) as url:
        answer = httpx.post(f"{url}/predict", json={"texts": SOURCES}, timeout=30).json()
    assert answer == {"translations": expected}


@pytest.mark.slow
def test_a_run_with_a_tokenizer_per_side_evaluates_predicts_and_exports(tmp_path: Path) -> None:
    train_file = write_parallel_tsv(tmp_path / "pairs.tsv", parallel_rows(120))
    separate = ["data.separate_tokenizers=true", "data/tokenizer@data.target_tokenizer=word"]
    result = run_cli("seqlab-train", *TINY, *separate, f"data.train_file={train_file}", f"paths.data_dir={tmp_path}", "hydra.run.dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    assert json.loads((run_dir / "tokenizer.json").read_text())["name"] == "bpe"
    assert json.loads((run_dir / "target_tokenizer.json").read_text())["name"] == "word"
    metrics = read_metrics(run_dir)
    evaluated = run_cli("seqlab-eval", f"ckpt_path={metrics['ckpt_path']}", "hydra.run.dir=eval", "print_config=false", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/bleu"] == pytest.approx(metrics["test/bleu"])

    (tmp_path / "sources.txt").write_text("\n".join(SOURCES) + "\n")
    from_checkpoint = run_cli("seqlab-predict", f"ckpt_path={metrics['ckpt_path']}", "input=sources.txt", "output=from_ckpt.jsonl", cwd=tmp_path)
    assert from_checkpoint.returncode == 0, from_checkpoint.stderr[-3000:]
    expected = translations(tmp_path / "from_ckpt.jsonl")
    assert len(expected) == 3 and any(expected)
    # Every translated word comes from the target side's vocabulary (a word tokenizer of Spanish).
    assert set(" ".join(expected).split()) <= set(LEXICON.values())
    exported = run_cli("seqlab-export", f"ckpt_path={metrics['ckpt_path']}", "format=safetensors", "output_dir=bundle", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert {"tokenizer.json", "target_tokenizer.json"} <= set(manifest["files"])
    from_bundle = run_cli("seqlab-predict", "bundle=bundle", "input=sources.txt", "output=from_bundle.jsonl", cwd=tmp_path)
    assert from_bundle.returncode == 0, from_bundle.stderr[-3000:]
    assert translations(tmp_path / "from_bundle.jsonl") == expected


def test_shared_embeddings_with_a_tokenizer_per_side_are_refused_in_one_line_naming_the_setting(tmp_path: Path, compose_config) -> None:
    train_file = write_parallel_tsv(tmp_path / "pairs.tsv", parallel_rows(80))
    cfg = compose_config(
        [*TINY, "data.separate_tokenizers=true", "model.shared_embeddings=true", f"data.train_file={train_file}", f"paths.data_dir={tmp_path}"]
    )
    datamodule = runs.build_datamodule(cfg)
    with pytest.raises(SeqlabError, match=r"^model\.shared_embeddings=true needs one vocabulary for both sides.*set model\.shared_embeddings=false$"):
        runs.build_task(cfg, datamodule)
