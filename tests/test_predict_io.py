"""seqlab-predict's input and output on a tiny classifier trained on a CSV whose texts are in `review`:
an input of the kind it trained on is read the same way, and every output line carries the input's ids."""

import csv
import json
from pathlib import Path

import pytest

from conftest import read_metrics, run_cli
from data_fixtures import labelled_rows
from seqlab.cli.predict import predict
from seqlab.deploy.inputs import TrainingFile, read_text_batches

TINY = ["trainer.max_epochs=1", "model.hidden_dim=16", "model.embed_dim=8", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A classifier trained by seqlab-train on reviews.csv (columns id, review, stars)."""
    root = tmp_path_factory.mktemp("trained")
    rows = [[i, text, label] for i, (text, label) in enumerate(labelled_rows(80))]
    write_table(root / "reviews.csv", ["id", "review", "stars"], rows)
    result = run_cli(
        "seqlab-train",
        "data=text_files",
        "data.train_file=reviews.csv",
        "data.text_column=review",
        "data.label_column=stars",
        *TINY,
        f"hydra.run.dir={root / 'run'}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "ckpt": read_metrics(root / "run")["ckpt_path"]}


@pytest.fixture
def run_predict(compose_config, in_hydra, tmp_path):
    def _run(input_path: Path, *overrides: str, output: str = "predictions.jsonl") -> Path:
        output_path = tmp_path / output
        cfg = compose_config([f"input={input_path}", f"output={output_path}", *overrides], config_name="predict", run_dir=tmp_path / "predict")
        in_hydra(predict, cfg)
        return output_path

    return _run


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_input_like_the_training_file_is_read_from_its_text_column_and_keeps_its_fields(trained, run_predict, tmp_path):
    texts = [text for text, _ in labelled_rows(12, seed=5)]
    input_path = write_table(tmp_path / "test.csv", ["id", "review", "label"], [[f"r{i}", text, "pos"] for i, text in enumerate(texts)])
    predictions = read_jsonl(run_predict(input_path, f"ckpt_path={trained['ckpt']}"))
    assert [p["id"] for p in predictions] == [f"r{i}" for i in range(12)]
    # The input's own `label` (a labelled test file) stays beside the prediction's.
    assert all(set(p) == {"id", "input_label", "label", "probs"} and p["input_label"] == "pos" for p in predictions)
    assert all(set(p["probs"]) == {"neg", "pos"} and p["label"] in ("neg", "pos") for p in predictions)
    # The same texts as plain lines: the same predictions.
    lines = tmp_path / "test.txt"
    lines.write_text("".join(text + "\n" for text in texts))
    assert [p["probs"] for p in read_jsonl(run_predict(lines, f"ckpt_path={trained['ckpt']}"))] == [p["probs"] for p in predictions]


def test_explicit_text_column_overrides_the_checkpoints(trained, run_predict, tmp_path, capsys):
    input_path = write_table(tmp_path / "other.csv", ["id", "body"], [[1, "a good film"], [2, "a dull film"]])
    with pytest.raises(SystemExit):
        run_predict(input_path, f"ckpt_path={trained['ckpt']}")
    assert "has no column 'review' (columns: id, body); pass text_column=<name>" in capsys.readouterr().err
    predictions = read_jsonl(run_predict(input_path, f"ckpt_path={trained['ckpt']}", "text_column=body"))
    assert [p["id"] for p in predictions] == ["1", "2"]


def test_another_kind_of_file_reads_the_text_key(trained, run_predict, tmp_path):
    input_path = tmp_path / "test.jsonl"
    input_path.write_text("".join(json.dumps({"text": text, "n": i, "meta": {"src": "web"}}) + "\n" for i, (text, _) in enumerate(labelled_rows(5))))
    predictions = read_jsonl(run_predict(input_path, f"ckpt_path={trained['ckpt']}"))
    assert [(p["n"], p["meta"]) for p in predictions] == [(i, {"src": "web"}) for i in range(5)]


def test_csv_output_from_the_command_line_has_the_input_columns_label_and_probs(trained, tmp_path):
    texts = [text for text, _ in labelled_rows(6, seed=9)]
    input_path = write_table(tmp_path / "test.csv", ["id", "review", "source"], [[100 + i, text, "shop"] for i, text in enumerate(texts)])
    output = tmp_path / "predictions.csv"
    result = run_cli(
        "seqlab-predict", f"ckpt_path={trained['ckpt']}", f"input={input_path}", f"output={output}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output, newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == ["id", "source", "label", "probs.neg", "probs.pos"]
    assert [row["id"] for row in rows] == [str(100 + i) for i in range(6)]
    for row in rows:
        assert float(row["probs.neg"]) + float(row["probs.pos"]) == pytest.approx(1.0, abs=1e-5)
        assert row["label"] == max(("neg", "pos"), key=lambda name: float(row[f"probs.{name}"]))


def test_a_file_with_the_training_files_suffix_is_read_in_its_format(tmp_path):
    """A run trained with data.format=tsv on .txt files reads .txt inputs as TSV, the texts in its column."""
    input_path = write_table(tmp_path / "new.txt", ["review", "id"], [["a good film", "a"], ["a dull film", "b"]], delimiter="\t")
    trained_on = TrainingFile(suffix=".txt", format="tsv", text_column="review")
    [batch] = read_text_batches(input_path, batch_size=8, trained_on=trained_on)
    assert batch.texts == ["a good film", "a dull film"]
    assert batch.fields == [{"id": "a"}, {"id": "b"}]
    # Without the run's format, a .txt file is one text a line.
    [batch] = read_text_batches(input_path, batch_size=8)
    assert batch.texts == ["review\tid", "a good film\ta", "a dull film\tb"]
