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
  its range from the edges it shares (the first arm from bucket 0, the last from the top, arms
  in between from the middle). After each update an arm the bandit does not want smaller
  enrols `ENROL_RATE` of the buckets left between its enrolled range and its edges; a
  shrinking arm enrols nothing, so its enrolled keys do not hold the buckets the better arms
  move into. The share of counted outcomes grows (20 %, 28 %, 35 %, ...) while the edges keep
  room to move.
- So an arm grows only into its neighbours' not-yet-enrolled buckets, never past their enrolled
  keys. With two arms that is no limit in practice (the loser keeps what it enrolled early,
  about 10 %); with three or more, an inner arm's enrolled keys cap how far the arms on either
  side of it can grow.

An update (`update`): P(each arm is best) by Thompson sampling from the arms' posteriors
(Beta(1 + successes, 1 + failures) for conversions; for rewards a normal around the mean with
the pooled variance over n + 1, one pseudo-outcome at the pooled mean), as target weights;
bounded to move each arm's weight by at most `MAX_STEP` points and never below `FLOOR` percent
(an arm already below keeps its weight); then realised as nearly as the enrolled ranges allow
(each arm moves toward its bounded target, never past it), and the arms enrol.

Inference stays on the counted (enrolled) outcomes: the always-valid results read them as
they read a fixed experiment's. The allocation adapts to the data, so the normal mixture's
guarantee is asymptotic here as everywhere; the `experiment-sim` A/A runs under the bandit
measure it.
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
from registry.experiments.sequential import Floats

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


def limits(current: Sequence[float]) -> tuple[Floats, Floats]:
    """How far each weight may go in one update: MAX_STEP points either way, never below
    FLOOR (an arm already below it may stay where it is), never above 100."""
    cur = np.asarray(current, dtype=np.float64)
    return np.maximum(np.minimum(FLOOR, cur), cur - MAX_STEP), np.minimum(100.0, cur + MAX_STEP)


def bounded(current: Sequence[float], target: Sequence[float]) -> list[float]:
    """The weights nearest `target` (least squares) that sum to 100 within `limits`."""
    tgt = np.asarray(target, dtype=np.float64)
    low, high = limits(current)
    shift_lo, shift_hi = -100.0 - float(tgt.max()), 100.0 + float(tgt.max())
    for _ in range(100):  # bisection on the shift that makes them sum to 100
        mid = (shift_lo + shift_hi) / 2
        if float(np.clip(tgt + mid, low, high).sum()) < 100.0:
            shift_lo = mid
        else:
            shift_hi = mid
    return [float(w) for w in np.clip(tgt + shift_hi, low, high)]


def realise(spans: Sequence[ArmSpan], wanted: Sequence[float]) -> list[int]:
    """Served sizes (buckets) as near `wanted` (percent, within `limits`) as the enrolled
    ranges allow: each edge between two arms stays in the gap between their enrolled ranges,
    and each arm moves toward its wanted size, never past it nor away from it. Least squares by
    coordinate descent over the edges, from the current ones (which satisfy every constraint,
    so every step does too)."""
    goal = [w * BUCKETS / 100 for w in wanted]
    low = [min(s.served, g) for s, g in zip(spans, goal, strict=True)]
    high = [max(s.served, g) for s, g in zip(spans, goal, strict=True)]
    edges = [0.0] + [float(sum(s.served for s in spans[: i + 1])) for i in range(len(spans) - 1)]
    edges.append(float(BUCKETS))
    for _ in range(100):
        for i in range(1, len(spans)):  # edge i: between arm i - 1 and arm i
            left, right = edges[i - 1], edges[i + 1]
            best = (left + goal[i - 1] + right - goal[i]) / 2
            lo = max(spans[i - 1].end, left + low[i - 1], right - high[i])
            hi = min(spans[i].start, left + high[i - 1], right - low[i])
            edges[i] = min(max(best, lo), hi)
    inner = [
        min(max(round(e), spans[i].end), spans[i + 1].start) for i, e in enumerate(edges[1:-1])
    ]
    whole = [0, *inner, BUCKETS]
    return [whole[i + 1] - whole[i] for i in range(len(spans))]


def enrol(
    spans: Sequence[ArmSpan], sizes: Sequence[int], wanted: Sequence[float], p: Sequence[float]
) -> list[ArmSpan]:
    """Each arm serves its new range; an arm the bandit does not want smaller enrols
    ENROL_RATE of the gap to each of its edges (a shrinking arm enrols nothing: its enrolled
    keys would hold buckets the better arms are moving into)."""
    bounds = [0, *(sum(sizes[: i + 1]) for i in range(len(sizes) - 1)), BUCKETS]
    grown: list[ArmSpan] = []
    for i, span in enumerate(spans):
        low, high = bounds[i], bounds[i + 1]
        rate = ENROL_RATE if wanted[i] * BUCKETS / 100 >= span.served else 0.0
        start = span.start - math.ceil(rate * (span.start - low))
        end = span.end + math.ceil(rate * (high - span.end))
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
    sizes = realise(spans, weights)
    return Allocation(enrol(spans, sizes, weights, chances), allocation.updates + 1, now)


def due(experiment: Experiment, now: datetime, every_s: float) -> bool:
    """A running bandit experiment whose last update is at least `every_s` seconds old."""
    allocation = experiment.allocation
    if not experiment.active or allocation is None:
        return False
    last = allocation.updated_at or experiment.created_at
    return (now - last).total_seconds() >= every_s
