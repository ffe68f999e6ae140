"""Small volumes that fill up: a tmpfs of a given size, mounted for one test (needs root).

Locally a test that cannot mount one is skipped with the reason; in CI it fails.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.private_services import unavailable


@contextlib.contextmanager
def small_volume(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (mount's syntax: 1m, 512k) at `path`; unmounted afterwards."""
    if os.geteuid() != 0:
        unavailable("a full-disk test mounts a small tmpfs, which needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30, check=False)


def fill(path: Path, leave: int) -> Path:
    """Write a filler file on `path`'s volume so that about `leave` bytes stay free."""
    filler = path / "filler.bin"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler
