"""What the benchmark scripts share: composing a run config as seqlab-train does, and reporting figures.

Every script prints a Rich table and then, last, one `name=value` line per figure, so a person reads
the table and a script greps the lines.
"""

import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"

console = Console()


def compose_run_config(overrides: Sequence[str], run_dir: Path, config_name: str = "train") -> DictConfig:
    """The config `seqlab-train <overrides>` would run with, its run dir at `run_dir`.

    Hydra's Compose API with the runtime fields hydra.main fills in, so `${hydra:...}` resolves.
    """
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="seqlab.conf", version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.runtime.cwd = os.getcwd()
        cfg.hydra.job.name = config_name
        cfg.hydra.job.config_name = config_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


@dataclass
class Timing:
    """Wall-clock seconds, and CPU seconds of this process (all its threads).

    On a machine whose other jobs keep every core busy, wall time mostly measures the scheduler;
    CPU time still measures the work, so side-by-side ratios use it.
    """

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def timed() -> Iterator[Timing]:
    timing = Timing()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - wall
        timing.cpu = time.process_time() - cpu


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads. On a machine shared by several jobs, OpenMP threads that spin
    waiting for each other turn a 20 ms step into seconds; one thread per process keeps figures steady."""
    import torch

    torch.set_num_threads(threads)


def machine() -> dict[str, str]:
    """Where the figures come from: CPU count, CPU model, torch version (and GPU, if any)."""
    import torch

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        # Other jobs' demand for the CPUs while this ran: figures from a busy machine are slower.
        "load average (1 min)": f"{os.getloadavg()[0]:.1f}",
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    console.print(table)


def report(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], figures: dict[str, float | str], notes: Sequence[str] = ()) -> None:
    """Print the table, any notes, the machine, and last the `name=value` lines."""
    print_table(title, columns, rows)
    report_figures(figures, notes)


def report_figures(figures: dict[str, float | str], notes: Sequence[str] = ()) -> None:
    """Print any notes, the machine, and last the `name=value` lines."""
    for note in notes:
        console.print(note)
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in machine().items()), highlight=False)
    sys.stdout.flush()
    for name, value in figures.items():
        print(f"{name}={_figure(value)}", flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _figure(value: float | str) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)
