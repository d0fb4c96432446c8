"""A bundle's tokenizer.json is a standard Hugging Face tokenizer file: with `tokenizers`, numpy and ONNX
Runtime alone, a user who never installs seqlab gets the predictions seqlab-predict gives."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST, read_metrics, run_cli
from seqlab.data.synthetic import generate_reviews

pytest.importorskip("onnxruntime")

MAX_LENGTH = 24

# Run by a bare interpreter: it must not need seqlab, and checks that it never imported it.
OUTSIDE_SEQLAB = """
import json, sys
import numpy as np
import onnxruntime
from tokenizers import Tokenizer

bundle, texts_file = sys.argv[1], sys.argv[2]
texts = open(texts_file, encoding="utf-8").read().split("\\n")[:-1]
tokenizer = Tokenizer.from_file(f"{bundle}/tokenizer.json")  # pads to the longest text, cuts at the model's limit
labels = sorted(json.load(open(f"{bundle}/labels.json")).items(), key=lambda item: item[1])
session = onnxruntime.InferenceSession(f"{bundle}/model.onnx", providers=["CPUExecutionProvider"])
encodings = tokenizer.encode_batch(texts)
# An empty text is read as one pad token: lengths are at least 1 and so is the width.
lengths = np.array([max(sum(e.attention_mask), 1) for e in encodings], dtype=np.int64)
input_ids = np.full((len(texts), max(len(encodings[0].ids), 1)), tokenizer.padding["pad_id"], dtype=np.int64)
for row, encoding in enumerate(encodings):
    input_ids[row, : len(encoding.ids)] = encoding.ids
probs = session.run(["probs"], {"input_ids": input_ids, "lengths": lengths})[0]
print(json.dumps([{name: float(p) for (name, _), p in zip(labels, row)} for row in probs]))
assert "seqlab" not in sys.modules
"""


# Word in the default run; BPE and char each train and export a run of their own (about 20 s each).
@pytest.fixture(scope="module", params=["word", pytest.param("bpe", marks=pytest.mark.slow), pytest.param("char", marks=pytest.mark.slow)])
def bundle(request, tmp_path_factory) -> Path:
    """An ONNX bundle of a classifier trained with the `data/tokenizer` of the param, inputs cut at MAX_LENGTH tokens."""
    root = tmp_path_factory.mktemp(request.param)
    run_dir = root / "run"
    overrides = [*FAST, "trainer.max_epochs=1", f"data/tokenizer={request.param}", f"data.max_length={MAX_LENGTH}"]
    if request.param == "bpe":
        overrides.append("data.tokenizer.vocab_size=400")
    result = run_cli("seqlab-train", *overrides, f"hydra.run.dir={run_dir}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(
        "seqlab-export", f"ckpt_path={read_metrics(run_dir)['ckpt_path']}", f"output_dir={root / 'bundle'}", f"hydra.run.dir={root / 'export'}", cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "bundle"


def test_the_standard_tokenizer_file_and_onnx_runtime_alone_predict_what_seqlab_predict_does(bundle, tmp_path):
    reviews = generate_reviews(40, seed=5).texts
    # An empty text, one far past the limit, and characters the training split never had.
    texts = [*reviews[:20], "", " and ".join(reviews[20:30]), "Ünïcödé ☃ <pad> text", *reviews[30:]]
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("".join(text + "\n" for text in texts), encoding="utf-8")

    output = tmp_path / "predictions.jsonl"
    result = run_cli("seqlab-predict", f"bundle={bundle}", f"input={texts_file}", f"output={output}", f"hydra.run.dir={tmp_path / 'predict'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from_seqlab = [json.loads(line)["probs"] for line in output.read_text().splitlines()]

    outside = subprocess.run([sys.executable, "-I", "-c", OUTSIDE_SEQLAB, str(bundle), str(texts_file)], capture_output=True, text=True, cwd=tmp_path)
    assert outside.returncode == 0, outside.stderr[-3000:]
    from_standard_file = json.loads(outside.stdout)

    assert len(from_standard_file) == len(from_seqlab) == len(texts)
    for ours, theirs in zip(from_seqlab, from_standard_file):
        assert ours.keys() == theirs.keys()
        assert max(abs(ours[name] - theirs[name]) for name in ours) <= 1e-6


def test_the_bundle_keeps_seqlabs_tokenizer_settings_apart_with_checksums(bundle):
    from seqlab.data.download import sha256_of

    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ("tokenizer.json", "seqlab_tokenizer.json"):
        assert manifest["files"][name]["sha256"] == sha256_of(bundle / name)
    settings = json.loads((bundle / "seqlab_tokenizer.json").read_text())
    assert settings["name"] == bundle.parent.name.rstrip("0123456789") and settings["pad_token"] == "<pad>"
    standard = json.loads((bundle / "tokenizer.json").read_text())
    assert standard["truncation"]["max_length"] == MAX_LENGTH == manifest["max_length"]
    assert standard["padding"]["pad_token"] == "<pad>" and standard["padding"]["strategy"] == "BatchLongest"


def test_a_bundle_with_the_old_seqlab_format_tokenizer_still_predicts_the_same(bundle, tmp_path):
    from seqlab.data.download import sha256_of
    from seqlab.deploy.predictors import predictor_from_bundle

    old = tmp_path / "old-bundle"
    old.mkdir()
    for name in ("model.onnx", "labels.json"):
        (old / name).write_bytes((bundle / name).read_bytes())
    (old / "tokenizer.json").write_bytes((bundle.parent / "run" / "tokenizer.json").read_bytes())  # {"name", "settings", "state"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = {path.name: {"sha256": sha256_of(path), "bytes": path.stat().st_size} for path in old.iterdir()}
    (old / "manifest.json").write_text(json.dumps(manifest))

    texts = ["a moving film", "", " and ".join(generate_reviews(10, seed=3).texts)]
    assert predictor_from_bundle(str(old), "test").predict(texts) == predictor_from_bundle(str(bundle), "test").predict(texts)
