"""Fold ensembles: seqlab-predict, -eval and -export on the folds of one tiny 2-fold cross-validation
(`cv.folds=2`, trained here once), and seqlab-serve on the exported ensemble.

Each fold fits its own tokenizer on its own training part, so the members' vocabularies differ and
each must tokenise with its own.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, read_metrics, run_cli, running_service
from seqlab.cli.eval import evaluate
from seqlab.cli.predict import predict
from seqlab.data.synthetic import generate_reviews

pytest.importorskip("onnxruntime")
httpx = pytest.importorskip("httpx")

TEXTS = [*generate_reviews(40, seed=7).texts, "", "a moving film"]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> dict:
    """A 2-fold in-process cross-validation from the command line, and its ensemble exported to ONNX."""
    root = tmp_path_factory.mktemp("cv")
    run_dir = root / "cv"
    result = run_cli("seqlab-train", *FAST, "cv.folds=2", f"hydra.run.dir={run_dir}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = root / "bundle"
    result = run_cli("seqlab-export", f"ckpt_path={run_dir}", f"output_dir={bundle}", f"hydra.run.dir={root / 'export'}", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    folds = [run_dir / f"fold_{k}" for k in range(2)]
    return {"root": root, "run_dir": run_dir, "folds": folds, "ckpts": [read_metrics(fold)["ckpt_path"] for fold in folds], "bundle": bundle}


@pytest.fixture(scope="module")
def input_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "in.txt"
    path.write_text("".join(text + "\n" for text in TEXTS))
    return path


@pytest.fixture
def run_predict(compose_config, in_hydra, input_file, tmp_path):
    def _run(*overrides: str) -> list[dict]:
        output = tmp_path / "predictions.jsonl"
        cfg = compose_config([*overrides, f"input={input_file}", f"output={output}"], config_name="predict", run_dir=tmp_path / "predict")
        in_hydra(predict, cfg)
        return [json.loads(line) for line in output.read_text().splitlines()]

    return _run


def max_difference(a: list[dict], b: list[dict]) -> float:
    assert len(a) == len(b)
    return max(abs(x["probs"][name] - y["probs"][name]) for x, y in zip(a, b) for name in x["probs"])


def test_ensemble_probabilities_are_the_mean_of_its_members(cv_run, run_predict):
    members = [run_predict(f"ckpt_path={ckpt}") for ckpt in cv_run["ckpts"]]
    ensemble = run_predict(f"ckpt_path={cv_run['run_dir']}")
    assert len(ensemble) == len(TEXTS)
    for i, prediction in enumerate(ensemble):
        assert set(prediction) == {"label", "probs"}
        for name, probability in prediction["probs"].items():
            assert probability == pytest.approx((members[0][i]["probs"][name] + members[1][i]["probs"][name]) / 2, abs=1e-6)
        assert prediction["label"] == max(prediction["probs"], key=prediction["probs"].get)
    # The folds' vocabularies differ, so each member must have read the texts with its own tokenizer.
    vocabularies = [json.loads((fold / "tokenizer.json").read_text()) for fold in cv_run["folds"]]
    assert vocabularies[0] != vocabularies[1]
    # The same members named as a list of run dirs, or of checkpoints.
    assert max_difference(run_predict(f"ckpt_path=[{cv_run['folds'][0]},{cv_run['folds'][1]}]"), ensemble) == 0
    assert max_difference(run_predict(f"ckpt_path=[{cv_run['ckpts'][0]},{cv_run['ckpts'][1]}]"), ensemble) == 0


def test_eval_reports_the_ensemble_beside_each_member(cv_run, compose_config, in_hydra, tmp_path, capsys):
    eval_dir = tmp_path / "eval"
    in_hydra(evaluate, compose_config([f"ckpt_path={cv_run['run_dir']}", "callbacks.progress_bar=null"], config_name="eval", run_dir=eval_dir))
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert [row["member"] for row in metrics["members"]] == ["fold_0", "fold_1"]
    for row, fold in zip(metrics["members"], cv_run["folds"]):
        trained = read_metrics(fold)  # each fold tested itself on the same test split when it trained
        for name in ("test/acc", "test/f1", "test/auroc"):
            assert row[name] == pytest.approx(trained[name], abs=1e-6), name
        assert row["ckpt_path"] == trained["ckpt_path"]
    assert metrics["data/test_size"] == 200 and metrics["ckpt_path"] == cv_run["ckpts"]
    report = metrics["report"]
    assert report["accuracy"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert sum(map(sum, report["confusion_matrix"])) == 200
    assert (eval_dir / "confusion_matrix.png").is_file()
    table = capsys.readouterr().out
    assert "fold ensemble of 2 members" in table
    for label in ("fold_0", "fold_1", "mean of members", "ensemble"):
        assert label in table


def test_exported_ensemble_predicts_what_the_sweep_dir_predicts(cv_run, run_predict):
    manifest = json.loads((cv_run["bundle"] / "manifest.json").read_text())
    assert [member["dir"] for member in manifest["members"]] == ["members/0", "members/1"]
    assert [member["source_checkpoint"]["path"] for member in manifest["members"]] == cv_run["ckpts"]
    assert all(member["onnx_check"]["max_abs_diff"] <= 1e-4 for member in manifest["members"])
    for k in range(2):
        for name in ("model.onnx", "tokenizer.json", "labels.json"):
            assert f"members/{k}/{name}" in manifest["files"]
    from_bundle = run_predict(f"bundle={cv_run['bundle']}")
    from_sweep_dir = run_predict(f"ckpt_path={cv_run['run_dir']}")
    assert max_difference(from_bundle, from_sweep_dir) <= 1e-5
    assert [p["label"] for p in from_bundle] == [p["label"] for p in from_sweep_dir]


def test_a_changed_member_file_is_refused(cv_run, compose_config, in_hydra, input_file, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(cv_run["bundle"], bundle)
    with open(bundle / "members" / "1" / "model.onnx", "ab") as model:
        model.write(b"\0")
    with pytest.raises(SystemExit):
        in_hydra(predict, compose_config([f"bundle={bundle}", f"input={input_file}", f"output={tmp_path / 'out.jsonl'}"], config_name="predict"))
    assert "members/1/model.onnx does not match its sha256 checksum" in capsys.readouterr().err


def test_service_answers_from_the_ensemble_bundle_like_predict(cv_run, run_predict, tmp_path):
    expected = run_predict(f"ckpt_path={cv_run['run_dir']}")
    with running_service(f"bundle={cv_run['bundle']}", cwd=tmp_path) as url:
        assert httpx.get(f"{url}/health").json()["labels"] == ["negative", "positive"]
        answer = httpx.post(f"{url}/predict", json={"texts": TEXTS}, timeout=60)
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    assert [set(p) for p in predictions] == [{"label", "probs"}] * len(TEXTS)
    assert max_difference(predictions, expected) <= 1e-5


def with_label_names(ckpt: str, label_names: list[str] | None, path: Path) -> Path:
    """A copy of `ckpt` whose run record names other labels (None: a language model's record)."""
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["seqlab"]["label_names"] = label_names
    torch.save(checkpoint, path)
    return path


def test_members_with_other_labels_are_refused_naming_both(cv_run, compose_config, in_hydra, input_file, tmp_path, capsys):
    other = with_label_names(cv_run["ckpts"][1], ["negative", "neutral"], tmp_path / "other.ckpt")
    overrides = [f"ckpt_path=[{cv_run['ckpts'][0]},{other}]", f"input={input_file}", f"output={tmp_path / 'out.jsonl'}"]
    with pytest.raises(SystemExit):
        in_hydra(predict, compose_config(overrides, config_name="predict"))
    line = capsys.readouterr().err.strip()
    assert f"{cv_run['ckpts'][0]} and {other} have different labels (negative, positive vs negative, neutral)" in line
    assert len(line.splitlines()) == 1


def test_language_models_are_refused_as_members(cv_run, compose_config, in_hydra, tmp_path, capsys):
    language_model = with_label_names(cv_run["ckpts"][1], None, tmp_path / "lm.ckpt")
    with pytest.raises(SystemExit):
        in_hydra(evaluate, compose_config([f"ckpt_path=[{cv_run['ckpts'][0]},{language_model}]"], config_name="eval"))
    line = capsys.readouterr().err
    assert f"checkpoint {language_model} holds a language model, but a fold ensemble" in line and "classifiers only" in line


def test_unfinished_folds_are_refused_unless_allowed(cv_run, compose_config, in_hydra, input_file, run_predict, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    (sweep / "fold_1").mkdir(parents=True)  # a fold that never finished: no metrics.json
    shutil.copytree(cv_run["folds"][0], sweep / "fold_0")
    overrides = [f"ckpt_path={sweep}", f"input={input_file}", f"output={tmp_path / 'out.jsonl'}"]
    with pytest.raises(SystemExit):
        in_hydra(predict, compose_config(overrides, config_name="predict"))
    assert "fold 1 incomplete" in capsys.readouterr().err
    alone = run_predict(f"ckpt_path={sweep}", "ensemble.allow_missing=true")
    assert max_difference(alone, run_predict(f"ckpt_path={cv_run['ckpts'][0]}")) <= 1e-6

    shutil.rmtree(sweep / "fold_0")
    (sweep / "fold_0").mkdir()
    (sweep / "fold_0" / "job.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: out of memory"}))
    with pytest.raises(SystemExit):
        in_hydra(predict, compose_config(overrides, config_name="predict"))
    assert f"sweep dir {sweep} has no finished fold (fold 0 failed" in capsys.readouterr().err
