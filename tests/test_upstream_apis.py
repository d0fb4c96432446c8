"""What seqlab takes from Lightning and Hydra beyond their public APIs, each checked where its one adapter uses it.

When an upgrade changes one of them, its test here fails saying what changed and which adapter to update:
seqlab.launch.lightning_launchers (Lightning's launchers) and seqlab.sweeps.hydra_internals (Hydra's
basic sweeper and failed jobs).
"""

import os
import sys

import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning import Trainer

from seqlab.launch.lightning_launchers import (
    LAUNCH_ENV_VARS,
    RankCommandLauncher,
    SpawnLauncherWithProgress,
    bring_back_fit_progress,
    start_extra_ranks_with,
)
from seqlab.sweeps.hydra_internals import basic_sweeper, failed_job_error, wrap_launcher

# Each extra rank writes the world size it was given to rank<LOCAL_RANK> in its working dir.
RANK_SCRIPT = "import os, pathlib; pathlib.Path('rank' + os.environ['LOCAL_RANK']).write_text(os.environ['WORLD_SIZE'])"


def test_lightning_starts_extra_ranks_with_seqlabs_command_and_seqlab_ends_them(tmp_path, monkeypatch):
    for name in LAUNCH_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # else Lightning sets the thread count
    launcher = RankCommandLauncher(LightningEnvironment(), num_processes=3, num_nodes=1, command=lambda: ([sys.executable, "-c", RANK_SCRIPT], str(tmp_path)))

    assert launcher.launch(lambda: "the job ran") == "the job ran"
    assert launcher.end_job(failed=False) == []
    started = sorted(path.name for path in tmp_path.glob("rank*"))
    assert started == ["rank1", "rank2"], (
        "Lightning's _SubprocessScriptLauncher.launch no longer starts the extra ranks through _call_children_scripts "
        f"(ranks started: {started}): update seqlab.launch.lightning_launchers.RankCommandLauncher"
    )
    assert (tmp_path / "rank1").read_text() == "3"
    assert launcher.procs == [], "RankCommandLauncher.end_job left ranks in the list Lightning's observer watches"
    assert not [name for name in LAUNCH_ENV_VARS if name in os.environ], "the next job of a multirun would inherit this job's ranks"


@pytest.mark.parametrize(("strategy", "launcher_class"), [("ddp", RankCommandLauncher), ("ddp_spawn", SpawnLauncherWithProgress)], ids=["ddp", "ddp_spawn"])
def test_lightning_strategies_take_seqlabs_launchers(strategy, launcher_class):
    trainer = Trainer(strategy=strategy, accelerator="cpu", devices=2, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    start_extra_ranks_with(trainer.strategy, lambda: ([], "."))
    bring_back_fit_progress(trainer.strategy)
    assert type(trainer.strategy.launcher) is launcher_class, (
        f"Lightning's {strategy} strategy now launches with {type(trainer.strategy.launcher).__name__}, or no longer reads "
        "Strategy._launcher: update seqlab.launch.lightning_launchers"
    )


def test_hydras_basic_sweeper_is_found_and_its_launcher_wrapped():
    sweeper = basic_sweeper(max_batch_size=2, params=None)
    assert isinstance(sweeper, Sweeper) and type(sweeper).__name__ == "BasicSweeper", type(sweeper)
    assert "launcher" in vars(sweeper), "Hydra's basic sweeper no longer keeps its launcher in `launcher`: update seqlab.sweeps.hydra_internals.wrap_launcher"
    sweeper.launcher = "hydra's launcher"
    wrap_launcher(sweeper, lambda launcher: ("wrapped", launcher))
    assert sweeper.launcher == ("wrapped", "hydra's launcher")


def test_hydra_keeps_a_failed_jobs_error_where_seqlab_reads_it(capsys):
    error = ValueError("the job's own error")
    job = JobReturn(status=JobStatus.FAILED)
    job.return_value = error
    assert failed_job_error(job) is error, "Hydra moved a failed job's error: update seqlab.sweeps.hydra_internals.failed_job_error"
    # Why seqlab does not read it through the public property: that raises, and writes to stderr first.
    with pytest.raises(ValueError):
        job.return_value
    assert "Error executing job" in capsys.readouterr().err, (
        "JobReturn.return_value no longer writes to stderr: seqlab.sweeps.hydra_internals.failed_job_error could use it"
    )
