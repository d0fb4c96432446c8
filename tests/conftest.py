"""Shared fixtures: configs composed in-process with Hydra's Compose API, CLI runs in subprocesses, and a running seqlab-serve."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Small enough to train in seconds, large enough to learn the built-in data.
FAST = [
    "data.train_size=600",
    "data.val_size=100",
    "data.test_size=200",
    "trainer.max_epochs=2",
    "model.hidden_dim=32",
    "model.embed_dim=16",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]

# Smaller than FAST: a sweep runs several of these.
TINY = [
    "data.train_size=300",
    "data.val_size=50",
    "data.test_size=50",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "model.hidden_dim=16",
    "model.embed_dim=8",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def compose_run_config(overrides: list[str] = (), config_name: str = "train", run_dir: Path | None = None) -> DictConfig:
    """Compose `config_name` with overrides as a command line would, with the run dir `run_dir`, and set
    Hydra's run-time config as hydra.main does."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.name = config_name
        cfg.hydra.job.config_name = config_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as hydra.main hands it to the task function
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def train_in_process(overrides: list[str], run_dir: Path) -> None:
    """seqlab-train with `overrides` in this process, writing `run_dir` (for fixtures wider than one test)."""
    from seqlab.cli.train import train

    cfg = compose_run_config(overrides, "train", run_dir)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        train(cfg)
    GlobalHydra.instance().clear()


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose `config_name` with overrides as a command line would, with the run dir in tmp_path."""

    def _compose(overrides: list[str] = (), config_name: str = "train", run_dir: Path | None = None) -> DictConfig:
        return compose_run_config(overrides, config_name, run_dir or tmp_path / "run")

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def in_hydra(compose_config):
    """Run a task function on a composed config the way hydra.main would (Compose API re-initialised)."""

    def _run(task_function: Callable[[DictConfig], object], cfg: DictConfig) -> object:
        GlobalHydra.instance().clear()
        with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
            return task_function(cfg)

    return _run


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a seqlab command as a user would, in a subprocess."""
    module = f"seqlab.cli.{args[0].removeprefix('seqlab-').replace('-', '_')}" if args[0].startswith("seqlab-") else None
    command = [sys.executable, "-m", module, *args[1:]] if module else list(args)
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir: Path) -> dict:
    """A run dir's metrics.json, with its `ckpt_path` (stored relative to the run dir) resolved against the run dir."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics.get("ckpt_path"):
        metrics["ckpt_path"] = str(run_dir / metrics["ckpt_path"])
    return metrics


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_service(*overrides: str, cwd: Path) -> Iterator[str]:
    """seqlab-serve with `overrides` on a free local port, from when /health answers until the block ends; yields its URL."""
    httpx = pytest.importorskip("httpx")  # the optional `serve` extra
    port = free_port()
    command = [sys.executable, "-m", "seqlab.cli.serve", *overrides, f"port={port}", f"hydra.run.dir={cwd / 'serve'}"]
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
