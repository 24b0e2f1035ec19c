"""Adaptive allocation (bandit mode): Thompson sampling moves the arms' traffic toward the
arms likely to be best, without ever moving a key that already counts in an arm. Pure (the
random draws come from a generator the caller seeds).

Why keys cannot simply follow new weights: the gateway keeps a key on its arm by its sticky
bucket (`contract.traffic.bucket`), and the arms own consecutive bucket ranges. Changing the
weights moves range edges, so the keys in the buckets that change hands would change arms.
The gateway keeps no record of keys, so instead the experiment enrols keys gradually:

- Each arm owns a range of buckets it serves (`ArmSpan.served`, consecutive, in bucket order,
  the Production version's arm last so that it is the gateway's "rest"), and inside it a range
  of enrolled buckets [start, end). Only enrolled keys count: their outcomes go to the arm
  (`assignment.arm_of`), and an enrolled range only ever grows, inside its arm's served range.
- Between two arms' enrolled ranges lie buckets not enrolled yet. The edge between the two
  arms' served ranges can move anywhere in that gap: the keys there change version, but they
  were never counted in either arm. (They are served as any key is, by one of the arms.)
- At start each arm serves its spec weight and enrols `START_ENROLLED` of it, at the far end of
  its range from the edge it shares (the first arm from bucket 0, the last from the top,
  arms in between from the middle). After every update each arm enrols `ENROL_RATE` of the
  buckets left between its enrolled range and its edges, so the share of counted outcomes
  grows (20 %, 28 %, 35 %, ...) while the edges keep room to move for some 20 updates.

An update (`update`): P(each arm is best) by Thompson sampling from the arms' posteriors
(Beta(1 + successes, 1 + failures) for conversions; for rewards a normal around the mean with
the pooled variance over n + 1, one pseudo-outcome at the pooled mean), as target weights;
bounded to move each arm's weight by at most `MAX_STEP` points and never below `FLOOR` percent
(an arm already below keeps its weight); then realised by moving every edge the same fraction
of the way to the target, as far as the enrolled ranges allow (so floors and bounds hold for
every arm), and the arms enrol their share of what is left.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Final

import numpy as np

from contract.traffic import BUCKETS
from registry.experiments.domain import Allocation, ArmSpan, Experiment, Metric, Tally
from registry.experiments.fixed import variance

FLOOR: Final = 5.0  # percent of the traffic an arm keeps, however poor it looks
MAX_STEP: Final = 10.0  # percentage points an arm's weight may move in one update
START_ENROLLED: Final = 0.2  # share of each arm's buckets enrolled when it starts
ENROL_RATE: Final = 0.1  # share of an arm's unenrolled buckets it enrols after each update
DRAWS: Final = 4000  # Thompson draws per update


def to_buckets(weights: Sequence[float]) -> list[int]:
    """Percentages (summing to 100) as whole buckets summing to BUCKETS (largest remainder)."""
    exact = [w * BUCKETS / 100 for w in weights]
    whole = [math.floor(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: whole[i] - exact[i])
    for i in order[: BUCKETS - sum(whole)]:
        whole[i] += 1
    return whole


def bucket_order(versions: Sequence[int], production: int | None) -> list[int]:
    """The arms in bucket order: as listed, the Production version's arm last."""
    return [v for v in versions if v != production] + [v for v in versions if v == production]


def initial(experiment: Experiment, production: int | None) -> Allocation:
    """Each arm serves its spec weight and enrols START_ENROLLED of it (see the module doc)."""
    weight = {a.version: a.weight for a in experiment.spec.arms}
    order = bucket_order(list(weight), production)
    sizes = to_buckets([weight[v] for v in order])
    spans: list[ArmSpan] = []
    low = 0
    for i, (version, size) in enumerate(zip(order, sizes, strict=True)):
        enrolled = max(1, round(START_ENROLLED * size)) if size else 0
        if i == 0:
            start = low
        elif i == len(order) - 1:
            start = low + size - enrolled
        else:
            start = low + (size - enrolled) // 2
        spans.append(ArmSpan(version, start, start + enrolled, size))
        low += size
    return Allocation(spans, updates=0, updated_at=experiment.created_at)


def p_best(metric: Metric, arms: Sequence[Tally], rng: np.random.Generator) -> list[float]:
    """P(each arm has the highest mean), by sampling the arms' posteriors DRAWS times."""
    if metric == Metric.CONVERSION:
        draws = np.stack([rng.beta(1 + a.total, 1 + a.n - a.total, DRAWS) for a in arms])
    else:
        n = sum(a.n for a in arms)
        pooled = sum(a.total for a in arms) / n if n else 0.0
        spread = [float(variance(a.n, a.total, a.total_sq)) * (a.n - 1) for a in arms if a.n > 1]
        dof = sum(a.n - 1 for a in arms if a.n > 1)
        sigma2 = sum(spread) / dof if dof and sum(spread) > 0 else 1.0
        draws = np.stack(
            [
                rng.normal((a.total + pooled) / (a.n + 1), math.sqrt(sigma2 / (a.n + 1)), DRAWS)
                for a in arms
            ]
        )
    best = np.bincount(np.argmax(draws, axis=0), minlength=len(arms))
    return [float(b) / DRAWS for b in best]


def bounded(current: Sequence[float], target: Sequence[float]) -> list[float]:
    """The weights nearest `target` (least squares) that sum to 100, move each arm at most
    MAX_STEP points from `current` and keep it at FLOOR or more (or where it was)."""
    cur, tgt = np.asarray(current, dtype=np.float64), np.asarray(target, dtype=np.float64)
    low = np.maximum(np.minimum(FLOOR, cur), cur - MAX_STEP)
    high = np.minimum(100.0, cur + MAX_STEP)
    shift_lo, shift_hi = -100.0 - float(tgt.max()), 100.0 + float(tgt.max())
    for _ in range(100):  # bisection on the shift that makes them sum to 100
        mid = (shift_lo + shift_hi) / 2
        if float(np.clip(tgt + mid, low, high).sum()) < 100.0:
            shift_lo = mid
        else:
            shift_hi = mid
    return [float(w) for w in np.clip(tgt + shift_hi, low, high)]


def _edges(sizes: Sequence[int]) -> list[int]:
    """The upper edge of each arm's served range but the last."""
    return [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]


def realise(spans: Sequence[ArmSpan], wanted: Sequence[int]) -> list[int]:
    """Served sizes moved from the current ones toward `wanted` by the largest common
    fraction that keeps every edge between its two arms' enrolled ranges."""
    old, new = _edges([s.served for s in spans]), _edges(wanted)
    fraction = 1.0
    for i, (was, goal) in enumerate(zip(old, new, strict=True)):
        low, high = spans[i].end, spans[i + 1].start  # the edge stays in the gap
        if goal > was:
            fraction = min(fraction, (high - was) / (goal - was))
        elif goal < was:
            fraction = min(fraction, (was - low) / (was - goal))
    edges = [
        min(max(was + round(fraction * (goal - was)), spans[i].end), spans[i + 1].start)
        for i, (was, goal) in enumerate(zip(old, new, strict=True))
    ]
    bounds = [0, *edges, BUCKETS]
    return [bounds[i + 1] - bounds[i] for i in range(len(spans))]


def enrol(spans: Sequence[ArmSpan], sizes: Sequence[int], p: Sequence[float]) -> list[ArmSpan]:
    """Each arm serves its new range and enrols ENROL_RATE of the gap to each of its edges."""
    bounds = [0, *_edges(sizes), BUCKETS]
    grown: list[ArmSpan] = []
    for i, span in enumerate(spans):
        low, high = bounds[i], bounds[i + 1]
        start = span.start - math.ceil(ENROL_RATE * (span.start - low))
        end = span.end + math.ceil(ENROL_RATE * (high - span.end))
        grown.append(ArmSpan(span.version, start, end, high - low, p[i]))
    return grown


def update(
    experiment: Experiment, tallies: Mapping[int, Tally], rng: np.random.Generator, now: datetime
) -> Allocation:
    """The allocation after one update (the experiment must be in bandit mode)."""
    allocation = experiment.allocation
    if allocation is None:
        raise ValueError(f"experiment {experiment.id} is not in bandit mode")
    spans = allocation.arms
    arms = [tallies.get(s.version, Tally(s.version)) for s in spans]
    chances = p_best(experiment.spec.metric, arms, rng)
    weights = bounded([s.served / 100 for s in spans], [100 * c for c in chances])
    sizes = realise(spans, to_buckets(weights))
    return Allocation(enrol(spans, sizes, chances), allocation.updates + 1, now)


def due(experiment: Experiment, now: datetime, every_s: float) -> bool:
    """A running bandit experiment whose last update is at least `every_s` seconds old."""
    allocation = experiment.allocation
    if not experiment.active or allocation is None:
        return False
    last = allocation.updated_at or experiment.created_at
    return (now - last).total_seconds() >= every_s
