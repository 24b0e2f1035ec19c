"""How sure a same-run comparison is: the bootstrap, of two paths' latencies (the load test)
and of two legs' throughput over rounds (the benches' ratios, `paired_ratio`).

The load test's verdict (loadtests/time_split.compare) rests on two percentiles of one minute's
requests: the direct path's p99 on its ~12 slowest of ~1,200. Run again, the same machine
draws other slow requests, and the ratio moves (five quiet runs here gave 1.07 to 1.26). So
beside the verdict the report gives each check's spread: both paths' requests are resampled
with replacement (`resamples` times, a seeded generator: the same run gives the same figures),
the check's statistic is recomputed on each resample (the p50 difference, the p99 ratio), and
the report keeps the middle 90 % of those values and the share of resamples within the limit.
A verdict that holds in 55 % of resamples is a coin toss; one that holds in 99 % is not.

The benches' throughput ratios (tracing on over off, a leg over nginx) rest on a few rounds of
a few seconds each, on a machine whose speed drifts: `paired_ratio` takes each round's ratio of
the two legs (run one after the other in that round), their median, and the middle 90 % of the
medians of the rounds resampled, so a ratio says how sure it is too.

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


class PairedRatio(msgspec.Struct, frozen=True):
    """A leg's throughput over a base leg's, from rounds that ran both (`paired_ratio`)."""

    ratios: list[float]  # this leg's over the base's, round by round
    median: float  # the headline: the median of the rounds' ratios
    low: float  # 5th percentile of the medians of the resampled rounds
    high: float  # 95th percentile
    at_least: float | None  # the target, if any
    share_at_least: float | None  # share of the resampled medians at or above it
    resamples: int


def paired_ratio(
    these: Sequence[float],
    base: Sequence[float],
    *,
    at_least: float | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> PairedRatio:
    """`these` over `base`, round by round (both measured in each round, one after the
    other), then the median over the rounds and its bootstrap spread (the rounds resampled
    with replacement). Why paired: a shared machine's speed drifts by 10-25 % from one few
    seconds to the next (four identical gateways, one after the other in each of three
    rounds: 7,533 to 9,515 req/s), and a ratio of two legs' medians over the rounds keeps
    that drift; the ratio inside each round cancels what the round's legs share."""
    if len(these) != len(base) or not these:
        raise ValueError("paired_ratio needs the same rounds (at least one) for both legs")
    ratios = np.asarray(these, dtype=float) / np.asarray(base, dtype=float)
    rng = np.random.default_rng(seed)
    picks = ratios[rng.integers(0, len(ratios), size=(resamples, len(ratios)))]
    medians = np.median(picks, axis=1)
    low, high = np.percentile(medians, [5.0, 95.0])
    share = None if at_least is None else round(float(np.mean(medians >= at_least)), 3)
    return PairedRatio(
        ratios=[round(float(r), 4) for r in ratios],
        median=round(float(np.median(ratios)), 4),
        low=round(float(low), 4),
        high=round(float(high), 4),
        at_least=at_least,
        share_at_least=share,
        resamples=resamples,
    )


def paired_line(name: str, p: PairedRatio) -> str:
    """One paired ratio as the benches print it."""
    line = (
        f"{name}: {p.median:.3f} (median of {len(p.ratios)} rounds' ratios;"
        f" 90 % of resamples {p.low:.3f} to {p.high:.3f})"
    )
    if p.at_least is None or p.share_at_least is None:
        return line
    verdict = "MET" if p.median >= p.at_least else "MISSED"
    share = f"at or above in {p.share_at_least:.0%} of resamples"
    return f"{line} >= {p.at_least:g}: {verdict}, {share}"
