"""seqlab-predict, seqlab-export, seqlab-serve and seqlab-eval's report on one tiny classifier trained here.

The classifier is a bidirectional LSTM, so the export exercises the backward direction's
padding-free rewrite; its inputs are cut at 64 tokens, so truncation is easy to reach.
"""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import FAST, read_metrics, run_cli, running_service
from seqlab.cli.eval import evaluate
from seqlab.cli.export import export
from seqlab.cli.generate import generate
from seqlab.cli.predict import predict
from seqlab.data.synthetic import generate_reviews

pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")

MAX_LENGTH = 64
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A classifier trained by seqlab-train and exported to ONNX by seqlab-export, both from the command line."""
    root = tmp_path_factory.mktemp("trained")
    run_dir = root / "run"
    result = run_cli(
        "seqlab-train",
        *FAST,
        "trainer.max_epochs=1",
        "model.bidirectional=true",
        f"data.max_length={MAX_LENGTH}",
        f"hydra.run.dir={run_dir}",
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = read_metrics(run_dir)["ckpt_path"]
    bundle = root / "bundle-onnx"
    result = run_cli("seqlab-export", f"ckpt_path={ckpt}", f"output_dir={bundle}", f"hydra.run.dir={root / 'export'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "run_dir": run_dir, "ckpt": ckpt, "onnx": bundle}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    reviews = generate_reviews(150, seed=99).texts
    # An empty text, and one far past the model's 24-token limit.
    return [*reviews[:100], "", " and ".join(reviews[100:120]), *reviews[120:]]


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(text + "\n" for text in texts))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def run_predict(compose_config, in_hydra, tmp_path):
    def _run(*overrides: str) -> list[dict]:
        output = tmp_path / "predictions.jsonl"
        cfg = compose_config([*overrides, f"output={output}"], config_name="predict", run_dir=tmp_path / "predict")
        assert in_hydra(predict, cfg) > 0
        return read_jsonl(output)

    return _run


def max_difference(a: list[dict], b: list[dict]) -> float:
    assert len(a) == len(b)
    return max(abs(x["probs"][name] - y["probs"][name]) for x, y in zip(a, b) for name in x["probs"])


# -- seqlab-predict ---------------------------------------------------------------------------


def test_predict_from_checkpoint_labels_every_text_in_order(trained, texts, run_predict, tmp_path, caplog):
    predictions = run_predict(f"ckpt_path={trained['ckpt']}", f"input={write_lines(tmp_path / 'in.txt', texts)}", "batch_size=32")
    assert len(predictions) == len(texts)
    for prediction in predictions:
        assert set(prediction) == {"label", "probs"}
        assert set(prediction["probs"]) == {"negative", "positive"}
        assert sum(prediction["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["label"] == max(prediction["probs"], key=prediction["probs"].get)
    # Order: each text alone gives the prediction found at its position.
    alone = run_predict(f"ckpt_path={trained['ckpt']}", f"input={write_lines(tmp_path / 'one.txt', [texts[7]])}")
    assert max_difference(alone, predictions[7:8]) <= 1e-6
    # The over-long text is truncated, and that is said once.
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 132 texts" in warnings[0] and f"limit of {MAX_LENGTH} tokens" in warnings[0] and "text 102" in warnings[0]


def test_onnx_bundle_predicts_what_the_checkpoint_predicts(trained, texts, run_predict, tmp_path):
    """Done-when: ckpt_path= and an ONNX bundle= agree within 1e-4, whatever the batching."""
    input_file = write_lines(tmp_path / "in.txt", texts)
    from_checkpoint = run_predict(f"ckpt_path={trained['ckpt']}", f"input={input_file}", "batch_size=64")
    from_onnx = run_predict(f"bundle={trained['onnx']}", f"input={input_file}", "batch_size=7")
    assert max_difference(from_checkpoint, from_onnx) <= TOLERANCE
    assert [p["label"] for p in from_checkpoint] == [p["label"] for p in from_onnx]


def test_csv_and_jsonl_inputs_give_the_same_predictions(trained, texts, run_predict, tmp_path):
    import csv

    with open(tmp_path / "in.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "review"])
        writer.writerows([index, text] for index, text in enumerate(texts[:40]))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": text, "n": i}) + "\n" for i, text in enumerate(texts[:40])))
    from_lines = run_predict(f"bundle={trained['onnx']}", f"input={write_lines(tmp_path / 'in.txt', texts[:40])}")
    from_csv = run_predict(f"bundle={trained['onnx']}", f"input={tmp_path / 'in.csv'}", "text_column=review")
    from_jsonl = run_predict(f"bundle={trained['onnx']}", f"input={tmp_path / 'in.jsonl'}")
    predicted = [[(p["label"], p["probs"]) for p in rows] for rows in (from_lines, from_csv, from_jsonl)]
    assert predicted[0] == predicted[1] == predicted[2]


def test_predict_command_line(trained, tmp_path):
    output = tmp_path / "out" / "predictions.jsonl"
    input_file = write_lines(tmp_path / "in.txt", ["the film was truly wonderful", "the plot was dull"])
    result = run_cli(
        "seqlab-predict", f"bundle={trained['onnx']}", f"input={input_file}", f"output={output}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [set(p) for p in read_jsonl(output)] == [{"label", "probs"}] * 2


# -- seqlab-export ----------------------------------------------------------------------------


def test_onnx_bundle_is_self_contained_with_dynamic_axes_and_checksums(trained):
    import onnx

    from seqlab.data.download import sha256_of

    bundle = trained["onnx"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["labels.json", "model.onnx", "seqlab_tokenizer.json", "tokenizer.json"]
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_of(bundle / name)
    assert manifest["format"] == "onnx" and manifest["kind"] == "classification" and manifest["max_length"] == MAX_LENGTH
    assert {"seqlab", "torch", "onnx", "onnxruntime", "tokenizers"} <= set(manifest["versions"])
    assert manifest["onnx_check"]["max_abs_diff"] <= TOLERANCE and len(manifest["onnx_check"]["batch_shapes"]) >= 3
    # The same labels.json as the run dir's.
    assert json.loads((bundle / "labels.json").read_text()) == json.loads((trained["run_dir"] / "labels.json").read_text()) == {"negative": 0, "positive": 1}
    graph = onnx.load(str(bundle / "model.onnx")).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert all(isinstance(dim, str) and dim for dims in shapes.values() for dim in dims), shapes
    assert set(shapes) == {"input_ids", "lengths"} and not list(bundle.parent.glob(".*partial"))


def test_safetensors_bundle_predicts_what_the_checkpoint_predicts(trained, texts, compose_config, in_hydra, run_predict, tmp_path):
    from safetensors.torch import load_file

    bundle = tmp_path / "bundle-st"
    in_hydra(export, compose_config([f"ckpt_path={trained['ckpt']}", "format=safetensors", f"output_dir={bundle}"], config_name="export"))
    assert sorted(p.name for p in bundle.iterdir()) == [
        "config.json",
        "labels.json",
        "manifest.json",
        "model.safetensors",
        "seqlab_tokenizer.json",
        "tokenizer.json",
    ]
    assert any(name.startswith("net.") for name in load_file(bundle / "model.safetensors"))
    input_file = write_lines(tmp_path / "in.txt", texts[:60])
    assert max_difference(run_predict(f"ckpt_path={trained['ckpt']}", f"input={input_file}"), run_predict(f"bundle={bundle}", f"input={input_file}")) <= 1e-6


def test_export_check_refuses_a_model_that_disagrees(trained, tmp_path):
    """The agreement check compares ONNX Runtime with the task it was exported from: a changed task fails it."""
    from omegaconf import OmegaConf

    from seqlab.deploy.onnx_export import check_onnx
    from seqlab.errors import SeqlabError
    from seqlab.runs.trained import CLASSIFICATION, load_trained_task

    loaded = load_trained_task(trained["ckpt"], OmegaConf.create({"data_dir": str(tmp_path)}), CLASSIFICATION, "test")
    tokenizer = loaded.datamodule.tokenizer
    check = check_onnx(loaded.task, trained["onnx"] / "model.onnx", tokenizer.vocab_size, tokenizer.pad_id, MAX_LENGTH)
    assert check["max_abs_diff"] <= TOLERANCE
    with torch.no_grad():
        loaded.task.net.head.bias[0] += 0.5  # a shift of one class changes the probabilities
    with pytest.raises(SeqlabError, match="disagrees with PyTorch"):
        check_onnx(loaded.task, trained["onnx"] / "model.onnx", tokenizer.vocab_size, tokenizer.pad_id, MAX_LENGTH)


def test_labels_json_reads_back_in_output_order_in_both_forms(tmp_path):
    """The {name: id} form run dirs and bundles write, and the list form of bundles exported before it."""
    from seqlab.data.labels import read_label_names, write_label_ids

    write_label_ids(tmp_path / "labels.json", ["tech", "arts", "sports"])
    assert json.loads((tmp_path / "labels.json").read_text()) == {"tech": 0, "arts": 1, "sports": 2}
    assert read_label_names(tmp_path / "labels.json") == ["tech", "arts", "sports"]
    (tmp_path / "old.json").write_text('["negative", "positive"]')
    assert read_label_names(tmp_path / "old.json") == ["negative", "positive"]


def test_a_failed_export_leaves_nothing(tmp_path):
    from seqlab.deploy.bundle import bundle_writer

    with pytest.raises(RuntimeError):
        with bundle_writer(tmp_path / "bundle", overwrite=False) as staging:
            (staging / "model.onnx").write_text("half")
            raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
def test_export_forward_equals_the_packed_forward_whatever_the_padding(cell, pooling):
    from seqlab.deploy.onnx_export import PaddedRNNClassifier
    from seqlab.models.rnn import RNNClassifier

    torch.manual_seed(0)
    model = RNNClassifier(vocab_size=30, num_classes=3, cell=cell, pooling=pooling, bidirectional=True, num_layers=2, embed_dim=6, hidden_dim=8).eval()
    padded = PaddedRNNClassifier(model).eval()
    ids, lengths = torch.randint(1, 30, (5, 9)), torch.tensor([9, 1, 4, 7, 2])
    ids[torch.arange(9)[None, :] >= lengths[:, None]] = 0
    with torch.no_grad():
        expected = model(ids, lengths)
        assert torch.allclose(padded(ids, lengths), expected, atol=1e-6)
        wider = torch.cat([ids, torch.zeros(5, 6, dtype=torch.long)], dim=1)  # more padding changes nothing
        assert torch.allclose(padded(wider, lengths), expected, atol=1e-6)


# -- bad input --------------------------------------------------------------------------------


def damaged_copy(bundle: Path, tmp_path: Path, damage: str) -> Path:
    copy = tmp_path / f"bundle-{damage}"
    shutil.copytree(bundle, copy)
    if damage == "missing":
        (copy / "tokenizer.json").unlink()
    else:
        (copy / "labels.json").write_text('{"positive": 0, "negative": 1}')
    return copy


JSON_TEXT = json.dumps({"text": "a good film"})
BAD_INPUTS = {
    "bundle missing a file": (lambda t, p: [f"bundle={damaged_copy(t['onnx'], p, 'missing')}"], "is missing tokenizer.json"),
    "bundle with a wrong checksum": (lambda t, p: [f"bundle={damaged_copy(t['onnx'], p, 'changed')}"], "labels.json does not match its sha256"),
    "not a bundle": (lambda t, p: [f"bundle={p}"], "has no manifest.json"),
    "empty input": (lambda t, p: [f"ckpt_path={t['ckpt']}", f"input={write_lines(p / 'empty.txt', [])}"], "holds no texts"),
    "csv without the text column": (
        lambda t, p: [f"bundle={t['onnx']}", f"input={write_lines(p / 'x.csv', ['id,body', '1,good'])}"],
        "has no column 'text' (columns: id, body)",
    ),
    "bad jsonl line": (lambda t, p: [f"bundle={t['onnx']}", f"input={write_lines(p / 'x.jsonl', [JSON_TEXT, '{oops'])}"], "x.jsonl:2: not a JSON object"),
    "not a checkpoint": (lambda t, p: [f"ckpt_path={write_lines(p / 'x.ckpt', ['junk'])}"], "is not a readable checkpoint"),
    "both sources": (lambda t, p: [f"ckpt_path={t['ckpt']}", f"bundle={t['onnx']}"], "needs one of ckpt_path=<checkpoint> or bundle="),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_predict_bad_input_is_one_clear_line_and_writes_nothing(trained, compose_config, in_hydra, tmp_path, capsys, case):
    make_overrides, message = BAD_INPUTS[case]
    overrides = make_overrides(trained, tmp_path)
    if not any(o.startswith("input=") for o in overrides):
        overrides.append(f"input={write_lines(tmp_path / 'in.txt', ['the film was good'])}")
    output = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as stopped:
        in_hydra(predict, compose_config([*overrides, f"output={output}"], config_name="predict", run_dir=tmp_path / "run"))
    assert stopped.value.code == 1
    assert message in capsys.readouterr().err
    assert not output.exists() and not list(tmp_path.glob("out.jsonl*"))


def test_export_refuses_an_existing_output_dir(trained, compose_config, in_hydra, tmp_path, capsys):
    with pytest.raises(SystemExit):
        in_hydra(export, compose_config([f"ckpt_path={trained['ckpt']}", f"output_dir={trained['onnx']}"], config_name="export"))
    assert "already exists; choose another or add overwrite=true" in capsys.readouterr().err


def test_generate_refuses_a_classifier_checkpoint(trained, compose_config, in_hydra, capsys):
    with pytest.raises(SystemExit):
        in_hydra(generate, compose_config([f"ckpt_path={trained['ckpt']}", "prompt=the"], config_name="generate"))
    assert "holds a text classifier, but seqlab-generate needs a language model" in capsys.readouterr().err


# -- seqlab-serve -----------------------------------------------------------------------------


@pytest.fixture
def service(trained, tmp_path):
    with running_service(f"bundle={trained['onnx']}", "max_texts_per_request=32", "max_text_chars=5000", "batch_timeout_ms=20", cwd=tmp_path) as url:
        yield url


def test_service_answers_like_seqlab_predict_and_rejects_malformed_payloads(service, trained, texts, run_predict, tmp_path):
    health = httpx.get(f"{service}/health").json()
    assert health["status"] == "ok" and health["labels"] == ["negative", "positive"]

    batch = texts[95:105]  # includes the empty and the over-long text
    expected = run_predict(f"bundle={trained['onnx']}", f"input={write_lines(tmp_path / 'in.txt', batch)}")
    answer = httpx.post(f"{service}/predict", json={"texts": batch}, timeout=30)
    assert answer.status_code == 200
    assert max_difference(answer.json()["predictions"], expected) <= 1e-6
    assert answer.json()["truncated"] == [6]

    # Concurrent requests are batched together and each gets its own answers back.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: httpx.post(f"{service}/predict", json={"texts": batch[i : i + 2]}, timeout=30), range(8)))
    for i, reply in enumerate(answers):
        assert reply.status_code == 200 and max_difference(reply.json()["predictions"], expected[i : i + 2]) <= 1e-6

    malformed = {
        "not JSON": (b"{texts: oops", 422, "JSON decode error"),
        "texts not a list": (b'{"texts": "one text"}', 422, "texts: Input should be a valid list"),
        "a text not a string": (b'{"texts": ["ok", 3]}', 422, "texts.1: Input should be a valid string"),
        "no texts key": (b'{"text": ["ok"]}', 422, "texts: Field required"),
        "empty list": (b'{"texts": []}', 422, "send at least one text"),
        "too many texts": (json.dumps({"texts": ["good"] * 33}).encode(), 413, "33 texts in one request; the limit is 32"),
        "text too long": (json.dumps({"texts": ["ok", "x" * 5001]}).encode(), 413, "texts[1] has 5001 characters; the limit is 5000"),
    }
    for name, (body, status, message) in malformed.items():
        reply = httpx.post(f"{service}/predict", content=body, headers={"content-type": "application/json"}, timeout=30)
        assert reply.status_code == status, name
        assert message in reply.json()["error"], (name, reply.json())
    assert httpx.get(f"{service}/nope").json() == {"error": "Not Found"}


def test_texts_of_concurrent_requests_share_model_calls():
    import asyncio

    from seqlab.deploy.predictors import Predictions
    from seqlab.deploy.service import MicroBatcher

    class RecordingPredictor:
        def __init__(self):
            self.calls = []

        def predict(self, texts):
            self.calls.append(list(texts))
            return Predictions([{"label": text, "probs": {}} for text in texts], [])

    async def scenario(max_batch_size):
        predictor = RecordingPredictor()
        batcher = MicroBatcher(predictor, max_batch_size=max_batch_size, timeout_s=0.05)
        worker = asyncio.create_task(batcher.run())
        answers = await asyncio.gather(*(batcher.predict([f"r{i}a", f"r{i}b"]) for i in range(5)))
        worker.cancel()
        return predictor.calls, answers

    calls, answers = asyncio.run(scenario(64))
    assert len(calls) == 1 and len(calls[0]) == 10
    assert [[p["label"] for p, _ in answer] for answer in answers] == [[f"r{i}a", f"r{i}b"] for i in range(5)]
    calls, _ = asyncio.run(scenario(4))
    assert [len(call) for call in calls] == [4, 4, 2]


def test_a_run_dir_stands_for_its_best_checkpoint(trained, texts, run_predict, compose_config, in_hydra, tmp_path):
    input_file = write_lines(tmp_path / "in.txt", texts[:20])
    by_dir = run_predict(f"ckpt_path={trained['run_dir']}", f"input={input_file}")
    assert max_difference(by_dir, run_predict(f"ckpt_path={trained['ckpt']}", f"input={input_file}")) == 0
    in_hydra(evaluate, compose_config([f"ckpt_path={trained['run_dir']}", "callbacks.progress_bar=null"], config_name="eval", run_dir=tmp_path / "eval"))
    assert read_metrics(tmp_path / "eval")["ckpt_path"] == trained["ckpt"]


# -- seqlab-eval's report and the learning curves ----------------------------------------------


def test_eval_adds_a_classification_report_with_plots(trained, compose_config, in_hydra, tmp_path):
    eval_dir = tmp_path / "eval"
    cfg = compose_config([f"ckpt_path={trained['ckpt']}", "callbacks.progress_bar=null"], config_name="eval", run_dir=eval_dir)
    in_hydra(evaluate, cfg)
    metrics = read_metrics(eval_dir)
    report = metrics["report"]
    assert report["labels"] == ["negative", "positive"]
    assert sum(map(sum, report["confusion_matrix"])) == metrics["data/test_size"] == 200
    assert report["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert report["macro"]["f1"] == pytest.approx(metrics["test/f1"], abs=1e-5)
    for name, row in zip(report["labels"], report["confusion_matrix"]):
        assert report["per_class"][name]["support"] == sum(row)
    roc = report["roc"]
    assert roc["auc"] == pytest.approx(metrics["test/auroc"], abs=1e-5)
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0 and roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    for plot in ("confusion_matrix.png", "roc_curve.png"):
        assert (eval_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_draws_its_learning_curves(trained):
    assert (trained["run_dir"] / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = torch.load(trained["run_dir"] / "checkpoints" / "last.ckpt", weights_only=True)
    [history] = [state["history"] for key, state in checkpoint["callbacks"].items() if key.startswith("LearningCurves")]
    assert len(history["train/loss"]) >= 5 and [step for step, _ in history["val/acc"]] == [history["train/loss"][-1][0]]


def test_only_elman_rnns_that_onnx_can_compute_take_the_padded_form():
    from seqlab.deploy.onnx_export import has_padded_form
    from seqlab.models.rnn import RNNClassifier

    forms = {nl: has_padded_form(RNNClassifier(vocab_size=10, num_classes=2, cell="rnn", nonlinearity=nl)) for nl in ("tanh", "sigmoid")}
    assert forms == {"tanh": True, "sigmoid": False}
