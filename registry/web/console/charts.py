"""The rollout page's charts as plain geometry for an inline SVG: latency (p50, p99) and error
rate per arm at each look, with a vertical marker wherever the candidate's weight changed.
Pure: the template draws what this computes."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final

import msgspec

from registry.rollouts.judge import ArmSummary, Outcome
from registry.rollouts.state import Look, Mode, Rollout

WIDTH: Final = 640
HEIGHT: Final = 220
LEFT: Final = 56
RIGHT: Final = 16
TOP: Final = 14
BOTTOM: Final = 30


class Point(msgspec.Struct, frozen=True):
    x: float
    y: float
    label: str  # the value and time, for a tooltip and for tests


class Series(msgspec.Struct, frozen=True):
    name: str
    css: str  # baseline | candidate, plus p99 (dashed)
    points: list[Point]

    @property
    def path(self) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{p.x:.1f},{p.y:.1f}" for i, p in enumerate(self.points)
        )


class Marker(msgspec.Struct, frozen=True):
    x: float
    label: str


class Tick(msgspec.Struct, frozen=True):
    at: float  # pixel position along its axis
    label: str


class Chart(msgspec.Struct, frozen=True):
    title: str
    series: list[Series]
    markers: list[Marker]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def points(self) -> int:
        return sum(len(s.points) for s in self.series)


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for factor in (1, 2, 5, 10):
        if value <= factor * power * (1 + 1e-9):
            return float(factor * power)
    return 10.0 * power  # pragma: no cover


def _elapsed(seconds: float) -> str:
    if seconds < 120:
        return f"+{seconds:.0f}s"
    if seconds < 7200:
        return f"+{seconds / 60:.0f}m"
    return f"+{seconds / 3600:.1f}h"


def weight_changes(rollout: Rollout, looks: Sequence[Look]) -> list[tuple[datetime, float]]:
    """When the candidate's weight changed and to what. A look that passes or fails moves the
    weight at once, so a change seen at the next look (or in the rollout now) is placed at
    the look before it; a change with no look behind it (abort, promote) at the update."""
    first = (
        rollout.spec.shadow_percent if rollout.spec.mode == Mode.SHADOW else rollout.spec.steps[0]
    )
    changes = [(rollout.created_at, first)]
    current, previous = first, None
    for look in looks:
        if look.weight != current:
            changes.append((previous.at if previous else look.at, look.weight))
            current = look.weight
        previous = look
    if rollout.weight != current:
        decided = previous is not None and previous.verdict.outcome != Outcome.INCONCLUSIVE
        at = previous.at if decided and previous is not None else rollout.updated_at
        changes.append((at, rollout.weight))
    return changes


class _Frame:
    def __init__(self, start: datetime, end: datetime, y_max: float) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 1.0)
        self.y_max = y_max

    def x(self, at: datetime) -> float:
        share = (at - self.start).total_seconds() / self.span
        return LEFT + min(max(share, 0.0), 1.0) * (WIDTH - RIGHT - LEFT)

    def y(self, value: float) -> float:
        return (HEIGHT - BOTTOM) - (value / self.y_max) * (HEIGHT - BOTTOM - TOP)

    def x_ticks(self) -> list[Tick]:
        return [
            Tick(LEFT + i / 4 * (WIDTH - RIGHT - LEFT), _elapsed(i / 4 * self.span))
            for i in range(5)
        ]

    def y_ticks(self, fmt: Callable[[float], str]) -> list[Tick]:
        return [Tick(self.y(self.y_max * i / 4), fmt(self.y_max * i / 4)) for i in range(5)]


Metric = Callable[[ArmSummary], float | None]


def _chart(
    title: str,
    rollout: Rollout,
    looks: Sequence[Look],
    lines: list[tuple[str, str, str, Metric]],  # name, css, arm, metric
    fmt: Callable[[float], str],
    floor: float,
) -> Chart:
    values = [
        v
        for look in looks
        for _, _, arm, metric in lines
        if (v := metric(getattr(look.verdict, arm))) is not None
    ]
    end = max([rollout.updated_at, *(look.at for look in looks)])
    frame = _Frame(rollout.created_at, end, nice_max(max([floor, *values])))
    series = []
    for name, css, arm, metric in lines:
        points = []
        for look in looks:
            value = metric(getattr(look.verdict, arm))
            if value is not None:
                when = look.at.strftime("%H:%M:%S")
                points.append(Point(frame.x(look.at), frame.y(value), f"{fmt(value)} at {when}"))
        series.append(Series(name, css, points))
    markers = [
        Marker(frame.x(at), f"{weight:g} %") for at, weight in weight_changes(rollout, looks)
    ]
    return Chart(title, series, markers, frame.x_ticks(), frame.y_ticks(fmt))


def latency_chart(rollout: Rollout, looks: Sequence[Look]) -> Chart:
    return _chart(
        "Latency (ms)",
        rollout,
        looks,
        [
            ("baseline p50", "baseline", "baseline", lambda a: a.p50_ms),
            ("baseline p99", "baseline p99", "baseline", lambda a: a.p99_ms),
            ("candidate p50", "candidate", "candidate", lambda a: a.p50_ms),
            ("candidate p99", "candidate p99", "candidate", lambda a: a.p99_ms),
        ],
        lambda v: f"{v:.3g} ms",
        floor=1.0,
    )


def error_chart(rollout: Rollout, looks: Sequence[Look]) -> Chart:
    return _chart(
        "Error rate",
        rollout,
        looks,
        [
            ("baseline", "baseline", "baseline", lambda a: a.error_rate if a.requests else None),
            ("candidate", "candidate", "candidate", lambda a: a.error_rate if a.requests else None),
        ],
        lambda v: f"{v * 100:.2g} %",
        floor=0.01,
    )
