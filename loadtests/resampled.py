"""How sure a same-run comparison of two paths' latencies is: the bootstrap.

The load test's verdict (loadtests/time_split.compare) rests on two percentiles of one minute's
requests: the direct path's p99 on its ~12 slowest of ~1,200. Run again, the same machine
draws other slow requests, and the ratio moves (five quiet runs here gave 1.07 to 1.26). So
beside the verdict the report gives each check's spread: both paths' requests are resampled
with replacement (`resamples` times, a seeded generator: the same run gives the same figures),
the check's statistic is recomputed on each resample (the p50 difference, the p99 ratio), and
the report keeps the middle 90 % of those values and the share of resamples within the limit.
A verdict that holds in 55 % of resamples is a coin toss; one that holds in 99 % is not.

numpy's percentile (linear between closest ranks) is the same rule as budget_check.percentile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec
import numpy as np

RESAMPLES: Final = 2000
_CHUNK: Final = 200  # resamples drawn at a time (2,400 requests x 200: 3.8 MB of float64)


class Spread(msgspec.Struct, frozen=True):
    """One check's statistic over the resamples."""

    metric: str  # "p50_ms" (gateway - direct, ms) or "p99_ms" (gateway / direct)
    statistic: str  # "difference" or "ratio"
    value: float  # on the run's own requests
    low: float  # 5th percentile of the resamples
    high: float  # 95th percentile
    within_limit: float  # share of the resamples where the check holds
    resamples: int


def _percentiles(values: np.ndarray, q: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """`q`-th percentile of `n` resamples (with replacement) of `values`."""
    out = np.empty(n)
    for at in range(0, n, _CHUNK):
        k = min(_CHUNK, n - at)
        picks = values[rng.integers(0, len(values), size=(k, len(values)))]
        out[at : at + k] = np.percentile(picks, q, axis=1)
    return out


def spreads(
    gateway_ms: Sequence[float],
    direct_ms: Sequence[float],
    p50_allowance_ms: float,
    p99_factor: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[Spread]:
    """The p50 difference (limit: `p50_allowance_ms`) and the p99 ratio (limit: `p99_factor`)
    of the gateway path over the direct one, each with its bootstrap spread."""
    if not gateway_ms or not direct_ms:
        return []
    rng = np.random.default_rng(seed)
    g, d = np.asarray(gateway_ms, dtype=float), np.asarray(direct_ms, dtype=float)
    out = []
    for metric, q, statistic, limit in (
        ("p50_ms", 50.0, "difference", p50_allowance_ms),
        ("p99_ms", 99.0, "ratio", p99_factor),
    ):
        gq, dq = _percentiles(g, q, rng, resamples), _percentiles(d, q, rng, resamples)
        own_g, own_d = float(np.percentile(g, q)), float(np.percentile(d, q))
        if statistic == "difference":
            values, value = gq - dq, own_g - own_d
        else:
            values, value = gq / dq, own_g / own_d
        low, high = np.percentile(values, [5.0, 95.0])
        out.append(
            Spread(
                metric=metric,
                statistic=statistic,
                value=round(value, 3),
                low=round(float(low), 3),
                high=round(float(high), 3),
                within_limit=round(float(np.mean(values <= limit)), 3),
                resamples=resamples,
            )
        )
    return out


def spread_line(s: Spread) -> str:
    """One spread as the report prints it."""
    if s.statistic == "difference":
        shown = f"difference {s.value:+.2f} ms, 90 % of resamples {s.low:+.2f} to {s.high:+.2f}"
    else:
        shown = f"ratio {s.value:.3f}, 90 % of resamples {s.low:.3f} to {s.high:.3f}"
    return f"  {s.metric} {shown}; within the limit in {s.within_limit:.0%} of {s.resamples:,}"
