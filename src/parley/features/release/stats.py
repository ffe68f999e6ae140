"""The statistics the gates need: a percentile and the Mann-Whitney U test (pure, no numpy).

Kayenta's canary judge compares each metric's canary samples with the baseline's with a
Mann-Whitney U test; we do the same, with the normal approximation (tie- and
continuity-corrected), which is accurate at the sample sizes a stage's minimums require.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (0.95 → p95) of `values`; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True, slots=True)
class UTest:
    u: float  # U of the first sample
    z: float
    p_greater: float  # one-sided: the first sample tends to be larger
    p_two_sided: float


def mann_whitney_u(first: Sequence[float], second: Sequence[float]) -> UTest:
    """Mann-Whitney U of `first` against `second` (both non-empty)."""
    n1, n2 = len(first), len(second)
    if not n1 or not n2:
        raise ValueError("both samples need at least one value")
    pooled = sorted([(value, 0) for value in first] + [(value, 1) for value in second])
    rank_sum_first = 0.0
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        average_rank = (i + j) / 2 + 1
        rank_sum_first += average_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        tied = j - i + 1
        tie_term += tied**3 - tied
        i = j + 1
    u = rank_sum_first - n1 * (n1 + 1) / 2
    n = n1 + n2
    expected = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:  # every value tied: no evidence either way
        return UTest(u, 0.0, 0.5, 1.0)
    sigma = math.sqrt(variance)
    z_greater = (u - expected - 0.5) / sigma
    z_two = (abs(u - expected) - 0.5) / sigma
    return UTest(
        u=u,
        z=(u - expected) / sigma,
        p_greater=_upper_tail(z_greater),
        p_two_sided=min(1.0, 2 * _upper_tail(max(z_two, 0.0))),
    )


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))
