"""Inference in batches of texts of similar length: seqlab-eval's test loader and seqlab-predict batch
texts longest first (less padding), and give the same metrics and predictions, in the input's order,
as batches in input order."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, compose_run_config, read_metrics, train_in_process
from seqlab.cli.eval import evaluate
from seqlab.cli.predict import predict, predict_longest_first
from seqlab.data.synthetic import generate_reviews
from seqlab.data.tokenizers import WordTokenizer
from seqlab.deploy.predictors import RUN_OF_TEXTS, ClassificationPredictor, Predictions, Predictor
from seqlab.models.rnn import RNNClassifier
from seqlab.runs import build_datamodule


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("inference") / "run"
    train_in_process([*TINY, "data.test_size=120", "data.eval_batch_size=16"], run_dir)
    return run_dir


def run_in_hydra(task_function, overrides: list[str], config_name: str, run_dir: Path):
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    cfg = compose_run_config(overrides, config_name, run_dir)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        return task_function(cfg)


def test_test_loader_batches_longest_first_and_predictions_return_to_test_order(tmp_path):
    cfg = compose_run_config(["data.test_size=200", "data.eval_batch_size=16"], "train", tmp_path / "run")
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    lengths = [batch["lengths"] for batch in datamodule.test_dataloader()]
    flat = torch.cat(lengths)
    assert torch.equal(flat, flat.sort(descending=True).values)
    by_length_padding = sum(len(batch) * int(batch.max()) - int(batch.sum()) for batch in lengths)

    torch.manual_seed(0)
    net = RNNClassifier(vocab_size=datamodule.tokenizer.vocab_size, pad_id=datamodule.tokenizer.pad_id, num_classes=2, embed_dim=8, hidden_dim=8).eval()
    with torch.inference_mode():
        by_length = datamodule.in_test_order(torch.cat([net(b["input_ids"], b["lengths"]) for b in datamodule.test_dataloader()]))
        datamodule.sort_test_by_length = False
        loader = datamodule.test_dataloader()
        in_order = torch.cat([net(b["input_ids"], b["lengths"]) for b in loader])
    torch.testing.assert_close(by_length, in_order, atol=1e-5, rtol=0)
    in_order_padding = sum(len(b["lengths"]) * int(b["lengths"].max()) - int(b["lengths"].sum()) for b in loader)
    assert by_length_padding < in_order_padding / 2


def test_eval_metrics_and_report_are_those_of_input_order(run_dir, tmp_path):
    ckpt = read_metrics(run_dir)["ckpt_path"]
    for name, setting in (("by_length", "true"), ("in_order", "false")):
        overrides = [f"ckpt_path={ckpt}", "callbacks.progress_bar=null", f"data.sort_test_by_length={setting}"]
        run_in_hydra(evaluate, overrides, "eval", tmp_path / name)
    by_length, in_order = read_metrics(tmp_path / "by_length"), read_metrics(tmp_path / "in_order")
    for metric in ("test/acc", "test/f1", "test/auroc"):
        assert by_length[metric] == in_order[metric]
    assert by_length["test/loss"] == pytest.approx(in_order["test/loss"], abs=1e-6)
    assert by_length["report"]["confusion_matrix"] == in_order["report"]["confusion_matrix"]
    assert by_length["report"]["roc"]["tpr"] == pytest.approx(in_order["report"]["roc"]["tpr"], abs=1e-6)


def test_eval_runs_the_model_over_the_test_set_once(run_dir, tmp_path, monkeypatch):
    texts_seen = []
    forward = RNNClassifier.forward

    def counting_forward(self, input_ids, lengths):
        texts_seen.append(len(lengths))
        return forward(self, input_ids, lengths)

    monkeypatch.setattr(RNNClassifier, "forward", counting_forward)
    ckpt = read_metrics(run_dir)["ckpt_path"]
    run_in_hydra(evaluate, [f"ckpt_path={ckpt}", "callbacks.progress_bar=null"], "eval", tmp_path / "eval")
    metrics = read_metrics(tmp_path / "eval")
    # The report (confusion matrix, ROC) comes from the test loop's own predictions, not a second pass.
    assert sum(texts_seen) == metrics["data/test_size"] == sum(map(sum, metrics["report"]["confusion_matrix"]))


def test_predict_by_length_writes_the_predictions_of_input_order_in_input_order(run_dir, tmp_path):
    reviews = generate_reviews(90, seed=3).texts
    # Lengths from one word to many reviews' worth, so the longest-first batches differ from file order.
    texts = [" ".join(reviews[: 1 + i % 7]) if i % 3 else review.split()[0] for i, review in enumerate(reviews)]
    input_file = tmp_path / "in.jsonl"
    input_file.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(texts)))
    ckpt = read_metrics(run_dir)["ckpt_path"]
    outputs = {}
    for setting in ("true", "false"):
        output = tmp_path / f"{setting}.jsonl"
        overrides = [f"ckpt_path={ckpt}", f"input={input_file}", f"output={output}", "batch_size=8", f"sort_by_length={setting}"]
        assert run_in_hydra(predict, overrides, "predict", tmp_path / f"predict-{setting}") == len(texts)
        outputs[setting] = [json.loads(line) for line in output.read_text().splitlines()]
    by_length, in_order = outputs["true"], outputs["false"]
    assert [row["id"] for row in by_length] == list(range(len(texts)))
    assert [row["label"] for row in by_length] == [row["label"] for row in in_order]
    for a, b in zip(by_length, in_order):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)


class RecordingPredictor(Predictor):
    """Labels a text by its length's parity, says texts over `max_length` characters were truncated, and records its batches."""

    label_names = ["even", "odd"]
    max_length = 10

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def text_probabilities(self, texts):
        self.batches.append(list(texts))
        odd = np.array([len(text) % 2 for text in texts], dtype=np.float64)
        return np.stack([1 - odd, odd], axis=1), [i for i, text in enumerate(texts) if len(text) > self.max_length]


def test_predict_longest_first_batches_by_length_and_answers_in_input_order():
    texts = ["a" * n for n in (3, 12, 1, 7, 15, 2, 11, 4)]
    predictor = RecordingPredictor()
    predictions = predict_longest_first(predictor, texts, batch_size=3)
    assert [len(text) for batch in predictor.batches for text in batch] == [15, 12, 11, 7, 4, 3, 2, 1]
    assert isinstance(predictions, Predictions)
    assert [item["label"] for item in predictions.items] == [("odd" if len(text) % 2 else "even") for text in texts]
    assert predictions.truncated == [1, 4, 6]  # positions in the input, not in the batches


class PaddedWidths(ClassificationPredictor):
    """A word-tokenised classifier whose 'probabilities' are each text's token count and its batch's padded width."""

    def __init__(self, texts: list[str]) -> None:
        tokenizer = WordTokenizer()
        tokenizer.fit(texts)
        super().__init__(tokenizer, ["length", "width"], max_length=None)
        self.calls: list[int] = []

    def probabilities(self, input_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        self.calls.append(len(lengths))
        return np.stack([lengths, np.full(len(lengths), input_ids.shape[1])], axis=1).astype(np.float32)


def test_one_call_of_many_texts_pads_runs_of_similar_length_and_answers_in_order():
    # What seqlab-serve hands the model: many requests' texts merged, short and long mixed.
    texts = [" ".join(["word"] * length) for length in [3, 300, 5, 280, 4, 290] * 20]
    predictor = PaddedWidths(texts)
    probs, truncated = predictor.text_probabilities(texts)
    assert truncated == []
    assert probs[:, 0].tolist() == [len(text.split()) for text in texts]  # each text's own row, in input order
    assert max(predictor.calls) <= RUN_OF_TEXTS
    short = probs[:, 0] < 10
    # Short texts are padded among short ones (all but those of the one run that holds both), not to 300.
    assert (probs[short, 1] < 10).sum() > short.sum() - RUN_OF_TEXTS


def test_no_texts_give_no_rows():
    probs, truncated = PaddedWidths(["a few words"]).text_probabilities([])
    assert probs.shape == (0, 2) and truncated == []
