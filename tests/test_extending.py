"""A model and a data option from a user's own package (tests/outside_package, docs/extending.md) train,
evaluate and export without editing seqlab; loading its checkpoint needs `trusted_packages`."""

import json
import os
from pathlib import Path

import pytest

from conftest import read_metrics, run_cli
from seqlab.errors import SeqlabError

OUTSIDE_PACKAGE = Path(__file__).parent / "outside_package"
# The package is importable by the commands, as if it were installed, without changing the environment.
ENV = {"PYTHONPATH": os.pathsep.join([str(OUTSIDE_PACKAGE), os.environ.get("PYTHONPATH", "")])}
OWN_GROUPS = ["hydra.searchpath=[pkg://mymodels.conf]", "data=tiny_reviews", "model=bag_of_words"]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("outside")
    run_dir = root / "run"
    result = run_cli(
        "seqlab-train",
        *OWN_GROUPS,
        *QUIET,
        "trainer.max_epochs=2",
        "optimizer.lr=0.02",
        f"paths.data_dir={root / 'data'}",
        f"hydra.run.dir={run_dir}",
        env=ENV,
        cwd=root,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"root": root, "run_dir": run_dir, "metrics": read_metrics(run_dir)}


def test_the_user_model_trains_from_its_own_package(trained):
    config = (trained["run_dir"] / ".hydra" / "config.yaml").read_text()
    assert "mymodels.bag_of_words.BagOfWordsClassifier" in config and "mymodels.tiny_reviews.TinyReviewsDataModule" in config
    assert trained["metrics"]["test/acc"] > 0.9  # one word in each review gives its label away


def test_eval_of_a_user_model_is_refused_unless_its_package_is_trusted(trained, tmp_path):
    ckpt = trained["metrics"]["ckpt_path"]
    result = run_cli("seqlab-eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'refused'}", env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "'mymodels." in lines[0], result.stderr
    assert "trusted_packages=[mymodels]" in lines[0]

    result = run_cli(
        "seqlab-eval", f"ckpt_path={ckpt}", "trusted_packages=[mymodels]", f"hydra.run.dir={tmp_path / 'eval'}", env=ENV, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test/acc"] == pytest.approx(trained["metrics"]["test/acc"])


def test_a_user_model_exports_and_predicts_from_its_bundle_when_trusted(trained, tmp_path):
    ckpt, bundle = trained["metrics"]["ckpt_path"], tmp_path / "bundle"
    trust = "trusted_packages=[mymodels]"
    result = run_cli(
        "seqlab-export",
        f"ckpt_path={ckpt}",
        "format=safetensors",
        f"output_dir={bundle}",
        trust,
        f"hydra.run.dir={tmp_path / 'x'}",
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (tmp_path / "texts.txt").write_text("a wonderful moving film\na dull boring mess\n")
    predict = ["seqlab-predict", f"bundle={bundle}", "input=texts.txt", "output=out.jsonl", f"hydra.run.dir={tmp_path / 'p'}"]

    refused = run_cli(*predict, env=ENV, cwd=tmp_path, timeout=300)
    assert refused.returncode == 1 and "'mymodels." in refused.stderr

    result = run_cli(*predict, trust, env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", ["mymodels.bag_of_words", "", "my-models"])
def test_a_trusted_package_must_be_a_top_level_package_name(name):
    from seqlab.runs.recorded_config import check_recorded_config

    with pytest.raises(SeqlabError, match="trusted_packages"):
        check_recorded_config({"model": {"_target_": "mymodels.bag_of_words.BagOfWordsClassifier"}}, "run.ckpt", trusted_packages=[name])


def test_trusting_a_package_lets_through_only_targets_under_it():
    from seqlab.runs.recorded_config import check_recorded_config

    check_recorded_config({"model": {"_target_": "mymodels.bag_of_words.BagOfWordsClassifier"}}, "run.ckpt", trusted_packages=["mymodels"])
    for target in ("mymodelsx.Net", "os.system", "mymodels"):
        with pytest.raises(SeqlabError, match=repr(target)):
            check_recorded_config({"model": {"_target_": target}}, "run.ckpt", trusted_packages=["mymodels"])
