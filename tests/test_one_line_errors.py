"""The catalogue of mistakes a user makes on the command line: each ends in one line naming the key or
file and the fix, a non-zero exit, no Python traceback, and no results (no new metrics.json or checkpoint)."""

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import FAST, run_cli
from data_fixtures import labelled_rows, write_rows


@dataclass
class Mistake:
    args: list[str]  # the command line; {run}, {data}, {lstm_run} and {lstm_ckpt} are filled in
    names: str  # what the error line must say
    # Hydra reports its own mistakes (an unknown option or key) in a few lines, without a traceback.
    hydra_message: bool = False
    results_in: str = "{run}"  # the dir where no metrics.json or checkpoint may appear
    error_lines: int = 1  # a multirun reports each failed job


TRAIN = ["seqlab-train", *FAST, "hydra.run.dir={run}"]
# Other data configs have no data.train_size (and the like).
FAST_MODEL = [o for o in FAST if not o.startswith("data.")]
TEXT_FILES = ["seqlab-train", *FAST_MODEL, "hydra.run.dir={run}", "data=text_files", "paths.data_dir={data}"]

CATALOGUE = {
    # Reported in one line before this catalogue was written.
    "unknown group option": Mistake([*TRAIN, "model=transformerr"], "Available options in 'model'", hydra_message=True),
    "unknown key": Mistake([*TRAIN, "trainer.max_epoch=3"], "trainer.max_epoch", hydra_message=True),
    "wrong type": Mistake([*TRAIN, "trainer.max_epochs=three"], "trainer.max_epochs='three' has the wrong type"),
    # Hydra stops on these with a traceback while composing, before any seqlab code runs.
    "config group set to null": Mistake([*TRAIN, "finetune=null"], "finetune=null: a config group is not set to null; remove it with ~finetune"),
    "eval's config group set to null": Mistake(["seqlab-eval", "logger=null", "hydra.run.dir={run}"], "remove it with ~logger"),
    "missing checkpoint": Mistake([*TRAIN, "ckpt_path=/no/such.ckpt"], "checkpoint /no/such.ckpt does not exist"),
    "missing last checkpoint": Mistake([*TRAIN, "ckpt_path=last"], "(ckpt_path=last resumes in the run dir"),
    "optimized metric not produced": Mistake([*TRAIN, "optimized_metric=val/bleu", "debug=fdr"], "optimized_metric='val/bleu' was not produced"),
    "eval without a checkpoint": Mistake(["seqlab-eval", "hydra.run.dir={run}"], "seqlab-eval needs ckpt_path=<checkpoint file or run dir>"),
    "missing training file": Mistake([*TEXT_FILES, "data.train_file=nowhere.csv"], "nowhere.csv: no such file"),
    "text that is not UTF-8": Mistake([*TEXT_FILES, "data.train_file=latin1.csv"], "latin1.csv: not UTF-8 text"),
    # Settings out of range.
    "batch size 0": Mistake([*TRAIN, "data.batch_size=0"], "data.batch_size=0"),
    "eval batch size 0": Mistake([*TRAIN, "data.eval_batch_size=0"], "data.eval_batch_size=0"),
    "negative learning rate": Mistake([*TRAIN, "optimizer.lr=-1"], "optimizer.lr=-1"),
    "negative max_epochs": Mistake([*TRAIN, "trainer.max_epochs=-5"], "trainer.max_epochs"),
    "hidden_dim 0": Mistake([*TRAIN, "model.hidden_dim=0"], "model.hidden_dim must be a positive integer"),
    "embed_dim 0": Mistake([*TRAIN, "model.embed_dim=0"], "model.embed_dim must be a positive integer"),
    "num_layers 0": Mistake([*TRAIN, "model.num_layers=0"], "model.num_layers must be a positive integer"),
    "transformer num_heads 0": Mistake(
        ["seqlab-train", "model=transformer", "model.num_heads=0", "hydra.run.dir={run}"], "model.num_heads must be a positive integer"
    ),
    # Settings without a value (`???` in the config).
    "text_files without a training file": Mistake(TEXT_FILES, "data.train_file is mandatory: pass data.train_file=<path>"),
    "text_lm without files": Mistake(["seqlab-train", "data=text_lm", "hydra.run.dir={run}"], "data.files is mandatory"),
    # A checkpoint of another architecture.
    "resume with another model": Mistake(
        ["seqlab-train", *FAST, "hydra.run.dir={lstm_run}", "ckpt_path=last", "model=gru"], "holds another model", results_in="{lstm_run}"
    ),
    "eval with another model": Mistake(["seqlab-eval", "ckpt_path={lstm_ckpt}", "model=transformer", "hydra.run.dir={run}"], "holds another model"),
    # A multirun whose jobs fail: one line per failed job.
    "multirun with failing jobs": Mistake(
        ["seqlab-train", "-m", *FAST, "model.hidden_dim=0,-1", "hydra.sweep.dir={run}"],
        "model.hidden_dim must be a positive integer",
        results_in="{run}/1",
        error_lines=2,
    ),
    # Bad data: seqlab.data reports these.
    "single-class training data": Mistake([*TEXT_FILES, "data.train_file=oneclass.csv"], "oneclass.csv: only one label"),
    "holdout fractions over 1": Mistake(
        [*TEXT_FILES, "data.train_file=train.csv", "data.val_fraction=0.95", "data.test_fraction=0.1"], "data.val_fraction=0.95 + data.test_fraction=0.1"
    ),
    # Deployment.
    # The port is checked before the bundle is read.
    "serve on a port out of range": Mistake(["seqlab-serve", "bundle=exported", "port=99999", "hydra.run.dir={run}"], "port=99999"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    write_rows(folder / "train.csv", labelled_rows(60), "csv")
    write_rows(folder / "oneclass.csv", labelled_rows(30, labels=("pos",)), "csv")
    latin1 = write_rows(folder / "latin1.csv", labelled_rows(30), "csv")
    latin1.write_bytes(latin1.read_bytes() + "pos,un film café\n".encode("latin-1"))
    return folder


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory) -> Path:
    """One tiny LSTM run, trained once for the cases that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("lstm") / "run"
    result = run_cli("seqlab-train", *FAST, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def results(run_dir: Path) -> dict[str, int]:
    """What a finished run leaves: metrics.json and checkpoints, with their modification times."""
    paths = [run_dir / "metrics.json", *run_dir.glob("checkpoints/*.ckpt")]
    return {str(p): p.stat().st_mtime_ns for p in paths if p.is_file()}


@dataclass
class Outcome:
    result: subprocess.CompletedProcess
    results_before: dict[str, int]
    results_after: dict[str, int]


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, Outcome]:
    """The selected cases, run side by side: each is mostly a Python process importing torch and Lightning."""
    test_name = test_a_mistake_is_one_line_naming_the_key_and_the_fix.__name__
    cases = [item.callspec.params["case"] for item in request.session.items if getattr(item, "originalname", None) == test_name]
    lines = " ".join(" ".join([*CATALOGUE[case].args, CATALOGUE[case].results_in]) for case in cases)
    places = {name: request.getfixturevalue(name) for name in ("data", "lstm_run") if "{" + name + "}" in lines}
    if "{lstm_ckpt}" in lines:
        places["lstm_ckpt"] = request.getfixturevalue("lstm_run") / "checkpoints" / "last.ckpt"

    def run(case: str) -> Outcome:
        mistake, folder = CATALOGUE[case], tmp_path_factory.mktemp("case")
        case_places = {**places, "run": folder / "run"}
        results_dir = Path(mistake.results_in.format(**case_places))
        before = results(results_dir)
        result = run_cli(*[arg.format(**case_places) for arg in mistake.args], cwd=folder)
        return Outcome(result, before, results(results_dir))

    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8)) as pool:
        return dict(zip(cases, pool.map(run, cases)))


@pytest.mark.parametrize("case", CATALOGUE, ids=list(CATALOGUE))
def test_a_mistake_is_one_line_naming_the_key_and_the_fix(case, outcomes):
    mistake, outcome = CATALOGUE[case], outcomes[case]
    result = outcome.result
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert mistake.names in result.stderr, result.stderr[-3000:]
    if not mistake.hydra_message:
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: ") and mistake.names in lines[-1], result.stderr[-3000:]
        assert sum(line.startswith("Error: ") for line in lines) == mistake.error_lines, result.stderr[-3000:]
    assert outcome.results_after == outcome.results_before


def test_a_damaged_cache_entry_is_rebuilt_with_a_one_line_warning(compose_config, data, tmp_path):
    """Not a mistake of the user's: the run goes on, and says so in one line."""
    overrides = ["data=text_files", "data.train_file=train.csv", f"paths.data_dir={tmp_path}"]
    shutil.copy(data / "train.csv", tmp_path / "train.csv")
    instantiate(compose_config(overrides).data).setup()
    (entry,) = (tmp_path / ".cache").iterdir()
    (entry / "meta.json").write_text("{damaged")

    result = run_cli("seqlab-train", *FAST_MODEL, *overrides, "debug=fdr", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    warnings = [line for line in output.splitlines() if "[WARNING]" in line and entry.name in line]
    assert len(warnings) == 1 and f"{entry.name} is damaged" in warnings[0], output[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())
