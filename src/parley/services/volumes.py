"""Free space on the volumes Parley writes to: the attachment store and the embedded database.

`/readyz` and `/metrics` read it, so an operator hears "nearly full" (below
PARLEY_STORAGE_MIN_FREE_BYTES) before uploads answer 507 and, on the database volume, sends 503.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from parley import metrics

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class VolumeState:
    name: str
    free_bytes: int
    nearly_full: bool

    def describe(self, threshold: int) -> str:
        free = f"{self.free_bytes / _MIB:.1f} MiB free"
        if not self.nearly_full:
            return f"ok ({free})"
        return (
            f"nearly full: {free}, below PARLEY_STORAGE_MIN_FREE_BYTES ({threshold / _MIB:.1f} MiB)"
        )


class Volumes:
    def __init__(self, paths: dict[str, Path], *, min_free_bytes: int) -> None:
        self.paths = paths
        self.min_free_bytes = min_free_bytes

    def check(self) -> list[VolumeState]:
        """Each volume's free space now; also exported as metrics."""
        states = []
        for name, path in self.paths.items():
            try:
                free = shutil.disk_usage(_existing(path)).free
            except OSError:
                continue  # nothing there to measure (yet)
            state = VolumeState(name, free, free < self.min_free_bytes)
            metrics.STORAGE_FREE_BYTES.labels(name).set(free)
            metrics.STORAGE_NEARLY_FULL.labels(name).set(int(state.nearly_full))
            states.append(state)
        return states


def _existing(path: Path) -> Path:
    """The nearest existing directory at or above `path` (same volume, unless mounted)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
