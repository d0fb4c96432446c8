"""Downloads with checksums: written to a temporary file, verified, then renamed into place."""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

from seqlab.errors import SeqlabError


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, destination: Path, sha256: str, timeout: float = 30.0, where_to_put: str | None = None) -> Path:
    """Fetch `url` to `destination` if it verifies against `sha256`; offline, say where to put the file
    (`where_to_put` words that for data that can also be put in place some other way)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Per process: the ranks of a multi-process run all prepare the data, and must not write into one file.
    partial = destination.with_name(f"{destination.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), transient=True) as progress:
                task = progress.add_task(f"downloading {destination.name}", total=total)
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    progress.advance(task, len(block))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        partial.unlink(missing_ok=True)
        if where_to_put:
            raise SeqlabError(f"{url} could not be fetched ({error}); {where_to_put}") from None
        raise SeqlabError(f"{destination} is missing and {url} could not be fetched ({error}); put the file there by hand") from None
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise SeqlabError(f"{url} has checksum {actual}, expected {sha256}; nothing was written to {destination}")
    os.replace(partial, destination)
    return destination
