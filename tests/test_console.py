"""What a run prints: Lightning's and torch's known noise left out (and back with show_known_noise=true),
the model summary once per cross-validated run, and the model's CPU threads (`threads`)."""

import os

import pytest
import pytorch_lightning as pl
import torch

from conftest import FAST, run_cli
from seqlab.cli.train import train
from seqlab.launch.threads import busy_machine_warning

# Every line below is printed by seqlab-train on a machine with SLURM's srun installed (a stand-in here).
KNOWN_NOISE = (
    "Tip: For seamless cloud logging",
    "The `srun` command is available on your system but is not used",
    "`isinstance(treespec, LeafSpec)` is deprecated",
    "Trainer already configured with model summary callbacks",
)
SUMMARY_LINE = "Trainable params"


@pytest.fixture
def machine_with_srun(tmp_path) -> dict[str, str]:
    """The environment of a machine where `srun` is on the PATH, with Python's default warnings shown."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONWARNINGS": "default::FutureWarning"}


def test_cross_validated_run_prints_no_known_noise_and_one_model_summary(tmp_path, machine_with_srun):
    overrides = [o for o in FAST if not o.startswith("callbacks.model_summary")]
    result = run_cli("seqlab-train", *overrides, "trainer.max_epochs=1", "cv.folds=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=machine_with_srun)
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert [line for line in KNOWN_NOISE if line in console] == []
    assert console.count(SUMMARY_LINE) == 1
    assert (tmp_path / "run" / "fold_1" / "metrics.json").is_file()


def test_show_known_noise_shows_it(tmp_path, machine_with_srun):
    overrides = [o for o in FAST if not o.startswith("callbacks.model_summary")]
    result = run_cli(
        "seqlab-train", *overrides, "trainer.max_epochs=1", "show_known_noise=true", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=machine_with_srun
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert [line for line in KNOWN_NOISE if line not in console] == []


class ThreadsDuringFit(pl.Callback):
    """Records torch's intra-op thread count while the model trains."""

    seen: list[int] = []

    def on_train_start(self, trainer, pl_module):
        ThreadsDuringFit.seen.append(torch.get_num_threads())


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_setting_runs_the_model_on_that_many_threads(compose_config, in_hydra, torch_threads):
    torch.set_num_threads(2)
    ThreadsDuringFit.seen = []
    probe = "+callbacks.threads_probe={_target_: test_console.ThreadsDuringFit}"
    in_hydra(train, compose_config([*FAST, "trainer.max_epochs=1", "threads=1", probe]))
    assert ThreadsDuringFit.seen == [1]


def test_threads_below_one_is_one_line_naming_the_setting(compose_config, in_hydra, capsys, torch_threads):
    with pytest.raises(SystemExit):
        in_hydra(train, compose_config([*FAST, "threads=0"]))
    assert "threads=0: set it to 1 or more, or to null" in capsys.readouterr().err


def test_busy_machine_warning_when_the_load_exceeds_the_cores():
    assert busy_machine_warning(load=1.5, cores=2) is None
    assert busy_machine_warning(load=2.0, cores=2) is None
    warning = busy_machine_warning(load=6.3, cores=2)
    assert "load average 6.3" in warning and "2 cores" in warning and "threads=1" in warning
