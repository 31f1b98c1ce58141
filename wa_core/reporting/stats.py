"""The one percentile function of the project: dashboards, checks, benchmarks and the simulator.

Method: linear interpolation between the two closest ranks (Hyndman & Fan type 7, numpy's
and ``statistics.quantiles(method="inclusive")``'s default): the ``q``-th percentile of ``n``
sorted values sits at rank ``(n - 1) * q / 100``; between two ranks it is the weighted mean
of their values. It is exact for any ``n`` (no nearest-rank jumps on small samples), gives
the minimum at 0 and the maximum at 100, and is computed in Python so that SQLite and
Postgres give the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) of ``values`` (any order, any unit), by linear
    interpolation between the two closest ranks; None for no values. Raises ``ValueError``
    for a ``q`` outside 0–100."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0–100")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
