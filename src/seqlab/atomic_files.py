"""Files written whole or not at all: metrics.json, job.json and the cross-validation summaries.

A reader (a sweep summary, a resumed run, a user's script) never sees half a file, and a write that
fails leaves the file as it was. Light on purpose (no torch): Hydra imports seqlab's sweepers, which
write with it, for every command.
"""

import os
from pathlib import Path


def write_text_atomically(path: Path, text: str) -> None:
    """Write `text` to `<path>.tmp` beside `path`, then rename it over `path` (a rename within a directory is atomic)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
