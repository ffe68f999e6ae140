"""Latency samples and their percentiles, and the time series a run records."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(ordered: list[float] | array[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


class Latencies:
    """Milliseconds, kept compactly (a run may collect a million of them)."""

    def __init__(self) -> None:
        self.values: array[float] = array("d")
        self._mark = 0

    def add(self, ms: float) -> None:
        self.values.append(ms)

    def __len__(self) -> int:
        return len(self.values)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.values)
        out: dict[str, float | int] = {"count": len(ordered)}
        for p in PERCENTILES:
            out[f"p{p}"] = _round(percentile(ordered, p))
        out["max"] = _round(ordered[-1] if ordered else math.nan)
        return out

    def recent_p95(self) -> float:
        """p95 of the samples added since the last call (for the progress line)."""
        recent = sorted(self.values[self._mark :])
        self._mark = len(self.values)
        return percentile(recent, 95)


@dataclass
class Series:
    """Samples taken every tick: seconds since the run started, and named values."""

    t: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, t: float, **values: float) -> None:
        self.t.append(round(t, 2))
        for name, value in values.items():
            self.values.setdefault(name, [math.nan] * (len(self.t) - 1)).append(round(value, 2))
        for column in self.values.values():
            if len(column) < len(self.t):
                column.append(math.nan)

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, **{name: _nan_to_none(col) for name, col in self.values.items()}}


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 3)


def _nan_to_none(column: list[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in column]


def json_safe(value: Any) -> Any:
    """NaN is not JSON: turn it into null, recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
