"""keep_freed_memory: a training step's tensors, freed together and allocated again, reuse the
process's memory instead of faulting in fresh pages on every step."""

import subprocess
import sys

import pytest

from seqlab.launch.memory import keep_freed_memory

STEPS = """
import resource, sys, torch
from seqlab.launch.memory import keep_freed_memory
kept = keep_freed_memory(sys.argv[1] == "keep")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
per_step = []
for step in range(4):
    before = faults()
    activations = [torch.ones(1024, 1024) for _ in range(8)]  # 8 x 4 MiB, freed together as after a backward pass
    del activations
    per_step.append(faults() - before)
print(kept, per_step[-1], max(per_step[1:]))
"""


def page_faults(mode: str) -> tuple[bool, int, int]:
    """Whether malloc keeps freed memory, the last step's page faults, and the most of any step after the first."""
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


@pytest.mark.skipif(sys.platform != "linux", reason="it tunes glibc's malloc")
def test_a_later_step_reuses_the_memory_of_the_last():
    kept, faults, _ = page_faults("keep")
    if not kept:
        pytest.skip("this C library is not glibc")
    assert faults < 100
    # glibc's defaults hand the freed 32 MiB back and fault its 8,192 pages in again on the next step
    # (on later ones too, until glibc raises its threshold by itself).
    _, _, default_faults = page_faults("system")
    assert default_faults > 8000


def test_false_leaves_malloc_as_it_is():
    assert keep_freed_memory(False) is False
