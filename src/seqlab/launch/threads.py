"""How many CPU threads a command's model runs on (`threads`), and a warning when the machine is busy.

torch's default is one intra-op thread per core. On a machine where other work already uses the
cores, those threads wait on each other and a small model runs several times slower than on one
thread (a default seqlab-train measured 2 min 22 s against 24 s with one thread).
"""

import logging
import os

from seqlab.errors import SeqlabError

log = logging.getLogger(__name__)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_machine_warning(load: float, cores: int) -> str | None:
    """The warning for a 1-minute load average of `load` on `cores` cores; None when the machine is not busier than its cores."""
    if load <= cores:
        return None
    return (
        f"this machine is busy (load average {load:.1f} over the last minute, {cores} cores): torch's default of one "
        "thread per core competes with that work and can run several times slower; threads=1 (or a few) shares the cores"
    )


def use_threads(threads: int | None) -> None:
    """Run torch on `threads` intra-op threads; with None keep torch's default, and warn when the machine is busy."""
    import torch

    if threads is None:
        warning = busy_machine_warning(os.getloadavg()[0], usable_cores()) if hasattr(os, "getloadavg") else None
        if warning:
            log.warning(warning)
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SeqlabError(f"threads={threads}: set it to 1 or more, or to null for torch's default (one per core)")
    torch.set_num_threads(threads)
