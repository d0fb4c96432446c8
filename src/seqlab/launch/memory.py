"""Keep the memory that tensors free inside the process (`keep_freed_memory`), for the next step's tensors.

glibc's malloc gives each block above its mmap threshold (128 KiB, rising up to 32 MiB) a mapping of
its own, unmapped when freed, and hands the free top of its heap back to the system. A training step
frees its activations and gradients and allocates them again on the next step, so every step maps
them anew and touches each new page once: a page fault per 4 KiB. Measured on the default LSTM on
this CPU: about 4,000 faults a step, a third of its backward pass. Raising both thresholds keeps
freed blocks in the heap, where the next step's tensors reuse them; the process keeps its peak
memory instead of returning it between steps (blocks above 1 GiB still map and unmap on their own).
"""

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

# mallopt(3) parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_BLOCKS_UP_TO = 1 << 30


def keep_freed_memory(keep: bool) -> bool:
    """With `keep`, make glibc's malloc keep freed blocks (up to 1 GiB) for reuse. True when it now
    does; False with `keep` false, or where the C library is not glibc (nothing to change there)."""
    if not keep or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    # Importing torch sets malloc's thresholds back (measured: set before it, they have no effect).
    import torch  # noqa: F401

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    kept = bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BLOCKS_UP_TO)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BLOCKS_UP_TO))
    if not kept:
        log.debug("glibc refused the malloc thresholds: freed memory goes back to the system as before")
    return kept
