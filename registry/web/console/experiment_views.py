"""What the console's experiment page shows: each arm with its outcomes, its mean and the
difference from the control, each with its always-valid 95 % confidence sequence drawn as an
interval on a shared axis, the fixed-horizon figures beside them (labelled), the bandit's
shares, CUPED's adjustment, and the verdict. Read through the same use case as the REST API;
the geometry is pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import msgspec

from registry.experiments.service import ExperimentService
from registry.experiments.stats import ArmResult, ArmSpan, Experiment, FixedArm, Read, Results
from registry.web.console.experiment_charts import TimeChart, means_chart, weights_chart

WIDTH: Final = 640.0  # the interval plots' drawing width (SVG units)
LEFT: Final = 60.0
RIGHT: Final = 620.0
TICKS: Final = 5


class Bar(msgspec.Struct, frozen=True):
    """An estimate with its interval, placed on a plot (x in SVG units)."""

    low: float
    mid: float
    high: float
    open_low: bool = False  # the interval runs past the plot's edge
    open_high: bool = False


class Tick(msgspec.Struct, frozen=True):
    at: float
    label: str


class Axis(msgspec.Struct, frozen=True):
    ticks: list[Tick]
    zero: float | None  # x of 0, when it is on the plot


class ArmRow(msgspec.Struct, frozen=True):
    result: ArmResult
    fixed: FixedArm | None
    span: ArmSpan | None  # bandit mode: its place on the buckets
    mean_bar: Bar | None
    diff_bar: Bar | None


class ExperimentPage(msgspec.Struct, frozen=True):
    experiment: Experiment
    results: Results
    rows: list[ArmRow]
    means: Axis
    diffs: Axis
    outcomes: int
    means_over_time: TimeChart
    weights_over_time: TimeChart


def _nice(span: float) -> float:
    """A round step for about TICKS ticks over `span`."""
    raw = span / TICKS
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)


def scale(values: Sequence[float]) -> tuple[float, float]:
    """The plot's range: the values' with a margin (and some width when they are one)."""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        pad = abs(low) * 0.1 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def axis(low: float, high: float, signed: bool = False) -> Axis:
    step = _nice(high - low)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12:
        label = f"{value:+.3g}" if signed and value else f"{value:.3g}"
        ticks.append(Tick(round(_x(value, low, high), 1), label))
        value += step
    zero = round(_x(0.0, low, high), 1) if low <= 0 <= high else None
    return Axis(ticks, zero)


def _x(value: float, low: float, high: float) -> float:
    return LEFT + (value - low) / (high - low) * (RIGHT - LEFT)


def bar(
    mid: float | None, lo: float | None, hi: float | None, low: float, high: float
) -> Bar | None:
    if mid is None or lo is None or hi is None:
        return None

    def clip(v: float) -> float:
        return round(_x(min(max(v, low), high), low, high), 1)

    return Bar(clip(lo), clip(mid), clip(hi), lo < low, hi > high)


def _finite(*values: float | None) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def build(experiment: Experiment, results: Results, reads: Sequence[Read] = ()) -> ExperimentPage:
    arms = results.arms
    mean_values = [x for a in arms for x in _finite(a.mean, a.ci_low, a.ci_high)] or [0.0, 1.0]
    diff_values = [x for a in arms for x in _finite(a.diff, a.diff_ci_low, a.diff_ci_high)]
    m_low, m_high = scale(mean_values)
    d_low, d_high = scale([*diff_values, 0.0]) if diff_values else (-1.0, 1.0)
    fixed = {f.version: f for f in results.fixed_horizon.arms} if results.fixed_horizon else {}
    spans = {s.version: s for s in experiment.allocation.arms} if experiment.allocation else {}
    rows = [
        ArmRow(
            a,
            fixed.get(a.version),
            spans.get(a.version),
            bar(a.mean, a.ci_low, a.ci_high, m_low, m_high),
            bar(a.diff, a.diff_ci_low, a.diff_ci_high, d_low, d_high),
        )
        for a in arms
    ]
    return ExperimentPage(
        experiment,
        results,
        rows,
        axis(m_low, m_high),
        axis(d_low, d_high, signed=True),
        sum(a.n for a in arms),
        means_chart(experiment, reads),
        weights_chart(experiment, reads),
    )


async def experiment_page(experiments: ExperimentService, experiment_id: str) -> ExperimentPage:
    view = await experiments.view(experiment_id)
    reads = await experiments.history(experiment_id)
    return build(view.experiment, view.results, reads)
