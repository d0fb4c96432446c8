"""seqlab's cluster path on a real single-node SLURM cluster (scripts/cluster/local_slurm.sh): sweeps,
cross-validation, DDP, preemption, time limits, Optuna and the sbatch script, each run as a user runs it.

Marked `cluster` and left out of the default run: `bash scripts/cluster/local_slurm.sh up` (root, apt-get),
then `pytest -m cluster`. The fixture brings the cluster up itself, or skips saying why it cannot.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import FAST, REPO, read_metrics, run_cli

pytestmark = pytest.mark.cluster

LOCAL_SLURM = REPO / "scripts" / "cluster" / "local_slurm.sh"
# One CPU task per job, no GPUs asked for.
ON_SLURM = ["-m", "hydra/launcher=slurm", "trainer.accelerator=cpu", "hydra.launcher.gpus_per_node=null"]
# One torch thread per task: the node's cores are the machine's, shared with whatever else runs on it.
FAST_ONE_THREAD = [*FAST, "threads=1"]
SEQLAB_TRAIN = [sys.executable, "-m", "seqlab.cli.train"]
METRICS_OF_A_RUN = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss", "epoch", "global_step")


@pytest.fixture(scope="session", autouse=True)
def local_slurm():
    """The single-node cluster, brought up once for the session (left up: `local_slurm.sh down` stops it)."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (it installs slurm-wlm and starts its daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    up = subprocess.run(["bash", str(LOCAL_SLURM), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.skip(f"the local SLURM cluster did not come up: {up.stderr.strip()}")


def submitit_dirs(sweep: Path) -> list[str]:
    """The dirs of the jobs submitit ran, under <sweep>/.submitit: `<array id>_<index>` in an array, else `<job id>`."""
    return sorted(p.parent.name for p in (sweep / ".submitit").glob("*/*_log.out"))


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.5)


def test_sweep_of_two_jobs_runs_as_a_slurm_array(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", *ON_SLURM, "seed=1,2", *FAST_ONE_THREAD, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = submitit_dirs(sweep)
    assert len(set(jobs)) == 2 and {job.split("_")[1] for job in jobs} == {"0", "1"} and len({job.split("_")[0] for job in jobs}) == 1
    for job in ("0", "1"):
        assert json.loads((sweep / job / "job.json").read_text())["status"] == "completed"
        assert read_metrics(sweep / job)["epoch"] == 2
    # The cluster keeps accounting, as users' clusters do: submitit's polls of sacct succeed and print nothing.
    console = result.stdout + result.stderr
    assert "accounting storage is disabled" not in console and "Bypassing sacct error" not in console, console[-3000:]


def test_cross_validation_with_a_failed_fold_is_summarised_and_fails(tmp_path):
    """Three folds on SLURM; the one out of range fails, the others are summarised, the exit is non-zero."""
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", *ON_SLURM, "data.num_folds=3", "data.fold=0,1,3", *FAST_ONE_THREAD, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode != 0
    summary = json.loads((sweep / "cv_summary.json").read_text())
    assert [fold["status"] for fold in summary["folds"]] == ["completed", "completed", "failed"]
    assert "data.fold must be in 0..2" in summary["folds"][2]["error"]
    assert summary["metrics"]["val/acc"]["n"] == 2


def test_ddp_job_runs_both_ranks_in_one_run_dir(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("seqlab-train", *ON_SLURM, "trainer=ddp", "trainer.devices=2", *FAST_ONE_THREAD, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [job] = set(submitit_dirs(sweep))
    # One SLURM task per rank, each with its own submitit log.
    assert sorted(p.name for p in (sweep / ".submitit" / job).glob("*_log.out")) == [f"{job}_0_log.out", f"{job}_1_log.out"]
    log = (sweep / "0" / "train.log").read_text()
    assert "[rank 0]" in log and "[rank 1]" in log
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log  # Lightning's world size 2, ranks taken from SLURM
    assert read_metrics(sweep / "0")["epoch"] == 2
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "multirun.yaml"]


def test_requeued_job_resumes_from_its_last_checkpoint_with_the_metrics_of_an_uninterrupted_run(tmp_path):
    # Long enough (0.15 to 0.3 s an epoch) to be still training when SLURM kills it, 2 s after the requeue;
    # no early stopping, which could end it first.
    overrides = [*FAST_ONE_THREAD, "seed=7", "trainer.max_epochs=100", "~callbacks.early_stopping"]
    sweep = tmp_path / "sweep"
    sweep_run = subprocess.Popen(
        [*SEQLAB_TRAIN, *ON_SLURM, *overrides, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(lambda: (sweep / "0" / "checkpoints" / "last.ckpt").is_file(), 300, "first checkpoint")
        [job] = set(submitit_dirs(sweep))
        subprocess.run(["scontrol", "requeue", job], check=True)
        output, _ = sweep_run.communicate(timeout=600)
    finally:
        sweep_run.kill()
    assert sweep_run.returncode == 0, output[-3000:]
    assert "resuming from" in (sweep / "0" / "train.log").read_text()

    uninterrupted = tmp_path / "uninterrupted"
    result = run_cli("seqlab-train", *overrides, f"hydra.run.dir={uninterrupted}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, expected = read_metrics(sweep / "0"), read_metrics(uninterrupted)
    for name in METRICS_OF_A_RUN:
        assert resumed[name] == pytest.approx(expected[name], abs=1e-6), name


def test_time_limit_checkpoints_and_requeues_up_to_max_num_timeout(tmp_path):
    """A job longer than its 2-minute limit: signalled 60 s before it, it saves its last checkpoint, is requeued
    and finishes; the same job with max_num_timeout=0 saves its checkpoint and ends there, not requeued.

    SLURM looks at time limits every 30 s, so the signal comes 60 to 90 s into the job: the job trains for
    80 s in all (Lightning's `max_time`, which counts on across a resume), however fast this machine is.
    With a 1-minute limit a requeued job is signalled before it trains.
    """
    overrides = [
        *FAST_ONE_THREAD,
        "trainer.max_epochs=100000",
        "+trainer.max_time=00:00:01:20",
        "~callbacks.early_stopping",
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
    ]
    sweeps = {max_num_timeout: tmp_path / f"max_num_timeout_{max_num_timeout}" for max_num_timeout in (20, 0)}
    runs = {
        max_num_timeout: subprocess.Popen(
            [*SEQLAB_TRAIN, *ON_SLURM, *overrides, f"hydra.launcher.max_num_timeout={max_num_timeout}", f"hydra.sweep.dir={sweep}"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for max_num_timeout, sweep in sweeps.items()
    }
    try:
        outputs = {max_num_timeout: run.communicate(timeout=600)[0] for max_num_timeout, run in runs.items()}
    finally:
        for run in runs.values():
            run.kill()

    requeued = sweeps[20] / "0"
    assert runs[20].returncode == 0, outputs[20][-3000:]
    log = (requeued / "train.log").read_text()
    assert "received SIGUSR2: saving" in log and "Requeued job" in log and "resuming from" in log
    first_save = int(re.search(r"saved \S+ at epoch (\d+)", log).group(1))
    assert read_metrics(requeued)["epoch"] > first_save  # trained on after the requeue

    not_requeued = sweeps[0] / "0"
    assert runs[0].returncode != 0
    log = (not_requeued / "train.log").read_text()
    assert "received SIGUSR2: saving" in log and "Job not requeued because: timed-out too many times" in log
    assert "resuming from" not in log and (not_requeued / "checkpoints" / "last.ckpt").is_file()
    assert not (not_requeued / "metrics.json").exists()


def test_optuna_trials_run_two_at_a_time_on_slurm(tmp_path):
    sweep, journal = tmp_path / "sweep", tmp_path / "study.journal"
    result = run_cli(
        "seqlab-train",
        *ON_SLURM,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        f"hydra.sweeper.storage={journal}",
        *FAST_ONE_THREAD,
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = (sweep / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",COMPLETE," in row for row in rows[1:])
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    study = optuna.load_study(study_name="train", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))))
    assert results["best_value"] == study.best_value and results["best_params"] == study.best_params
    # Both trials were launched as one SLURM array.
    assert len({job.split("_")[0] for job in submitit_dirs(sweep)}) == 1 and len(set(submitit_dirs(sweep))) == 2


def test_sbatch_script_runs_a_two_task_ddp_job(tmp_path):
    """scripts/slurm_train.sbatch as docs/clusters.md submits it, with sbatch's options sized for this CPU node."""
    run_dir = tmp_path / "run"
    sbatch_options = [
        "--parsable",
        "--nodes=1",
        "--ntasks-per-node=2",
        "--gpus-per-node=0",
        "--cpus-per-task=1",
        "--mem=2G",
        "--time=10",
        f"--output={tmp_path}/slurm-%j.out",
    ]
    overrides = ["trainer.accelerator=cpu", *FAST_ONE_THREAD, f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}"]
    job = subprocess.run(
        ["sbatch", *sbatch_options, "scripts/slurm_train.sbatch", *overrides], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    # Finished jobs stay known to the controller for a while (MinJobAge): scontrol answers without waiting for accounting.
    wait_for(lambda: "JobState=COMPLETED" in job_record(job) or "JobState=FAILED" in job_record(job), 300, f"end of job {job}")
    assert "JobState=COMPLETED" in job_record(job), (tmp_path / f"slurm-{job}.out").read_text()[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "MEMBER: 1/2" in log and "MEMBER: 2/2" in log
    assert read_metrics(run_dir)["epoch"] == 2


def job_record(job: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
