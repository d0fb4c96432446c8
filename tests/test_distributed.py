"""Multi-process runs on CPUs with gloo: DDP single runs and multiruns, submitit on this machine, SLURM presets,
preemption and requeue. Every multi-process run is a subprocess: pytest itself is never re-launched."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import open_dict, read_write
from pytorch_lightning.strategies import DDPStrategy

from conftest import REPO, read_metrics, run_cli
from seqlab import runs
from seqlab.launch import cluster, distributed, lightning_launchers

TESTS = Path(__file__).resolve().parent
# Small and quick: each rank is a process that imports torch and Lightning.
TINY = [
    "data.train_size=200",
    "data.val_size=100",
    "data.test_size=100",
    "trainer.max_epochs=1",
    "model.hidden_dim=16",
    "model.embed_dim=16",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]
DDP_ON_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
# The rank probe (tests/rank_probe.py) is found through PYTHONPATH, by every rank.
PROBE_ENV = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def probe(out_dir: Path) -> str:
    """An override adding a callback with which each rank records the job number, run dir and hidden_dim it composed."""
    return (
        f"+callbacks.probe={{_target_: rank_probe.RankProbe, out_dir: {out_dir}, job: '${{hydra:job.num}}', "
        "run_dir: '${paths.output_dir}', hidden_dim: '${model.hidden_dim}'}"
    )


def probe_records(out_dir: Path) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in out_dir.glob("*.json")), key=lambda r: (str(r["job"]), r["rank"]))


def assert_each_job_ran_on_two_ranks(records: list[dict], sweep: Path, hidden_dims: dict[int, int]) -> None:
    assert [(r["job"], r["rank"]) for r in records] == [(job, rank) for job in sorted(hidden_dims) for rank in (0, 1)]
    for record in records:
        assert record["world_size"] == 2
        assert record["run_dir"] == str(sweep / str(record["job"])), record
        assert record["values"]["hidden_dim"] == hidden_dims[record["job"]], record
    for job in hidden_dims:
        assert len({r["pid"] for r in records if r["job"] == job}) == 2, "two ranks of a job in one process"
        assert f"hidden_dim: {hidden_dims[job]}" in (sweep / str(job) / ".hydra" / "config.yaml").read_text()
        assert (sweep / str(job) / "metrics.json").is_file()
        assert json.loads((sweep / str(job) / "job.json").read_text())["status"] == "completed"
        assert sorted(p.name for p in (sweep / str(job) / "csv").iterdir()) == ["version_0"]


@pytest.mark.slow
def test_ddp_run_on_two_cpu_processes(tmp_path):
    """trainer=ddp on CPUs: both ranks compose the same config and run dir; only rank 0 writes; log lines name the rank."""
    run_dir, probes = tmp_path / "run", tmp_path / "probe"
    result = run_cli("seqlab-train", *DDP_ON_CPU, *TINY, probe(probes), f"hydra.run.dir={run_dir}", cwd=tmp_path, env=PROBE_ENV)
    assert result.returncode == 0, result.stderr[-3000:]

    records = probe_records(probes)
    assert [r["rank"] for r in records] == [0, 1] and records[0]["pid"] != records[1]["pid"]
    assert {r["run_dir"] for r in records} == {str(run_dir)} and {r["values"]["hidden_dim"] for r in records} == {16}
    metrics = read_metrics(run_dir)
    # 200 examples split between 2 ranks, 64 a batch: 2 steps (one process would take 4).
    assert metrics["epoch"] == 1 and metrics["global_step"] == 2 and 0 <= metrics["test/acc"] <= 1
    # One run dir, written by rank 0 alone: no per-rank logs or logger versions, nothing outside it.
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        "checkpoints",
        "config_tree.log",
        "csv",
        "labels.json",
        "learning_curves.png",
        "metrics.json",
        "tokenizer.json",
        "train.log",
    ]
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe", "run"]
    log = (run_dir / "train.log").read_text()
    assert "][rank 0][" in log and "][rank 1][" in log


@pytest.mark.slow
def test_ddp_multirun_runs_each_job_on_every_rank(tmp_path):
    """Every rank of a sweep job runs that job's config in that job's dir; no other dirs appear (Lightning #11300)."""
    sweep, probes = tmp_path / "sweep", tmp_path / "probe"
    result = run_cli("seqlab-train", "-m", *DDP_ON_CPU, *TINY, "model.hidden_dim=16,24", probe(probes), f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=PROBE_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_each_job_ran_on_two_ranks(probe_records(probes), sweep, {0: 16, 1: 24})
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe", "sweep"]


@pytest.mark.slow
def test_submitit_local_multirun_runs_each_rank_as_a_task(tmp_path):
    """hydra/launcher=submitit_local tries the SLURM layout on one machine: one task per device, each job in its dir."""
    sweep, probes = tmp_path / "sweep", tmp_path / "probe"
    result = run_cli(
        "seqlab-train",
        "-m",
        "hydra/launcher=submitit_local",
        *DDP_ON_CPU,
        *TINY,
        "model.hidden_dim=16,24",
        probe(probes),
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={**PROBE_ENV, "PYTHONWARNINGS": "default"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is validated against ConfigStore schema" not in result.stderr
    records = probe_records(probes)
    assert_each_job_ran_on_two_ranks(records, sweep, {0: 16, 1: 24})
    assert sorted(p.name for p in sweep.iterdir()) == [".submitit", "0", "1", "multirun.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe", "sweep"]
    assert "][rank 1][" in (sweep / "0" / "train.log").read_text()


def test_slurm_preset_takes_tasks_and_nodes_from_the_trainer(tmp_path):
    result = run_cli(
        "seqlab-train",
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.account=lab",
        "--cfg",
        "all",
        "--resolve",
        "--package",
        "hydra.launcher",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = result.stdout.splitlines()
    for line in [
        "tasks_per_node: 4",
        "nodes: 2",
        "gpus_per_node: 4",
        "partition: gpu",
        "account: lab",
        "_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    ]:
        assert line in launcher, line
    max_num_timeout = next(int(line.split(": ")[1]) for line in launcher if line.startswith("max_num_timeout: "))
    assert max_num_timeout > 0, "a job that reaches its time limit must be requeued"
    hydra_cfg = run_cli("seqlab-train", "hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path).stdout
    assert "tasks_per_node: ${trainer.devices}" in hydra_cfg and "nodes: ${trainer.num_nodes}" in hydra_cfg


def test_multirun_started_in_every_rank_is_refused_before_the_sweep(tmp_path):
    """As torchrun would start it (WORLD_SIZE=2 in each rank's environment): each rank would run the whole sweep."""
    result = run_cli("seqlab-train", "-m", "model.hidden_dim=16,24", "hydra.sweep.dir=sweep", cwd=tmp_path, env={"WORLD_SIZE": "2", "RANK": "0"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: a multirun started by torchrun or srun runs the whole sweep in every rank: sweep with hydra/launcher=slurm "
        "(one SLURM allocation per job) on a cluster, or with trainer=ddp or trainer=ddp_spawn on one machine"
    ]
    assert list(tmp_path.iterdir()) == []


def test_ddp_presets_build_their_strategies_on_cpu(compose_config):
    """trainer=ddp on CPUs uses gloo and starts its extra ranks as runs of this job; bf16-mixed is a precision option."""
    cfg = compose_config([*DDP_ON_CPU, "trainer.precision=bf16-mixed", "logger=none", "callbacks=none"])
    trainer = instantiate(cfg.trainer)
    distributed.prepare_launch(trainer)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    assert trainer.strategy._get_process_group_backend() == "gloo"
    assert isinstance(trainer.strategy.launcher, lightning_launchers.RankCommandLauncher)
    assert trainer.precision == "bf16-mixed"


def test_under_submitit_on_slurm_only_submitit_requeues(compose_config, monkeypatch):
    """Lightning's own SIGUSR1 requeue is off; seqlab's checkpoint-and-requeue callback hands over to submitit."""
    slurm_task = {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "node1",
    }
    for name, value in slurm_task.items():
        monkeypatch.setenv(name, value)
    trainer = runs.build_trainer(compose_config([*DDP_ON_CPU, "logger=none", "callbacks=none"]))
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False
    (requeue,) = [c for c in trainer.callbacks if isinstance(c, cluster.CheckpointAndRequeue)]
    assert requeue.signum == signal.SIGUSR2 and requeue.ckpt_path.name == "last.ckpt"


def test_extra_ranks_run_the_job_not_the_sweep(compose_config, monkeypatch):
    """The command an extra rank runs: this job's overrides, its run dir, no sweep, no .hydra files of its own."""
    compose_config(["model.hidden_dim=24"])
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.overrides.hydra = ["hydra.mode=MULTIRUN", "hydra.sweep.dir=/sweeps/s", "hydra/launcher=basic", "hydra.verbose=true"]
        hydra_cfg.overrides.task = ["model.hidden_dim=24", "+callbacks.x.run_dir='${paths.output_dir}'"]
        hydra_cfg.job.num = 1
        hydra_cfg.job.id = "1"
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "--config-name", "train", "model.hidden_dim=16,24"])
    command, cwd = distributed.hydra_job_command()
    run_dir = hydra_cfg.runtime.output_dir
    assert command[-9:] == [
        "--config-name",
        "train",
        "hydra.verbose=true",
        "model.hidden_dim=24",
        "+callbacks.x.run_dir='${paths.output_dir}'",
        "hydra.job.num=1",
        'hydra.job.id="1"',
        f'hydra.run.dir="{run_dir}"',
        "hydra.output_subdir=null",
    ]
    assert "-m" not in command[3:] and cwd == hydra_cfg.runtime.cwd


def _start_sweep(tmp_path: Path, overrides: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "seqlab.cli.train", "-m", "hydra/launcher=submitit_local", *overrides]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **PROBE_ENV}
    log = open(tmp_path / "sweep.log", "a")
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the sweep ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


# Slow enough per run that a job is still training when the test interrupts it: 13 steps per epoch.
EPOCHS = 6
LONG_JOB = [*TINY, "data.batch_size=16", f"trainer.max_epochs={EPOCHS}", "callbacks.early_stopping=null"]


def _epochs_logged(version_dir: Path) -> list[int]:
    lines = (version_dir / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    return sorted({int(row.split(",")[header.index("epoch")]) for row in lines[1:] if row.split(",")[header.index("epoch")]})


@pytest.mark.slow
def test_killed_submitit_job_resumes_from_its_checkpoint_when_resubmitted(tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [*LONG_JOB, f"hydra.sweep.dir={sweep}"]
    job = sweep / "0"
    first = _start_sweep(tmp_path, overrides)
    try:
        _wait_for(job / "checkpoints" / "last.ckpt", first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (job / "metrics.json").exists(), "the job finished before it was killed"
    saved_epoch = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)["epoch"]

    second = _start_sweep(tmp_path, overrides)
    assert second.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    metrics = read_metrics(job)
    assert metrics["epoch"] == EPOCHS and metrics["global_step"] == EPOCHS * 13
    assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in (job / "train.log").read_text()
    # The resubmitted job trained only the epochs the killed one had not finished.
    assert _epochs_logged(job / "csv" / "version_1")[0] == saved_epoch + 1


@pytest.mark.slow
def test_preempted_submitit_job_checkpoints_requeues_and_resumes(tmp_path):
    """submitit's preemption signal: the job saves last.ckpt mid-epoch, submitit requeues it, it resumes in the same dir."""
    probes = tmp_path / "probe"
    # The default, timestamped sweep dir: a requeued job must still find its own dir.
    first = _start_sweep(tmp_path, [*LONG_JOB, probe(probes)])
    _wait_for(probes / "0-rank0.json", first)
    (job,) = (tmp_path / "outputs").glob("train-multirun/*/*/0")
    _wait_for(job / "checkpoints" / "last.ckpt", first)
    os.kill(json.loads((probes / "0-rank0.json").read_text())["pid"], signal.SIGUSR2)
    assert first.wait(timeout=600) == 0, (tmp_path / "sweep.log").read_text()[-3000:]

    log = (job / "train.log").read_text()
    assert "received SIGUSR2" in log and "Requeued job" in log and f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in log
    metrics = read_metrics(job)
    assert metrics["epoch"] == EPOCHS and metrics["global_step"] == EPOCHS * 13
    assert sorted(p.name for p in (job / "csv").iterdir()) == ["version_0", "version_1"]
    assert _epochs_logged(job / "csv" / "version_1")[0] >= 1, "the requeued job started over"
    assert len(list((tmp_path / "outputs").glob("train-multirun/*/*"))) == 1


@pytest.mark.slow
def test_ddp_spawn_run_on_two_cpu_processes(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("seqlab-train", "trainer=ddp_spawn", "trainer.accelerator=cpu", "trainer.devices=2", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(run_dir)
    assert metrics["epoch"] == 1 and metrics["global_step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cluster_scripts_are_valid_shell():
    for script in ("torchrun_train.sh", "slurm_train.sbatch"):
        assert subprocess.run(["bash", "-n", str(REPO / "scripts" / script)]).returncode == 0, script


@pytest.mark.slow
def test_torchrun_script_gives_every_rank_one_run_dir(tmp_path):
    """scripts/torchrun_train.sh as docs/clusters.md runs it, on CPUs."""
    run_dir, probes = tmp_path / "run", tmp_path / "probe"
    env = {**PROBE_ENV, "NPROC": "2", "RUN_DIR": str(run_dir), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = run_cli(str(REPO / "scripts" / "torchrun_train.sh"), "trainer.accelerator=cpu", *TINY, probe(probes), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    records = probe_records(probes)
    assert [r["rank"] for r in records] == [0, 1] and {r["run_dir"] for r in records} == {str(run_dir)}
    assert read_metrics(run_dir)["epoch"] == 1


@pytest.mark.slow
def test_ranks_that_composed_different_run_dirs_stop_before_training(tmp_path):
    """torchrun without hydra.run.dir: each rank takes its own timestamp; the run stops with one line."""
    torchrun = Path(sys.executable).parent / "torchrun"
    result = run_cli(str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "seqlab.cli.train", *DDP_ON_CPU, *TINY, cwd=tmp_path)
    assert result.returncode != 0
    assert "Error: the ranks of this run composed different runs (rank 1 has another run dir than rank 0)" in result.stderr
    assert not list(tmp_path.glob("outputs/train/*/*/checkpoints")) and not list(tmp_path.glob("outputs/train/*/*/metrics.json"))
