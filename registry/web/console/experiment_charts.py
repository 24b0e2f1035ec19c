"""The experiment page's charts over time, as plain geometry for an inline SVG: each arm's
mean with its always-valid 95 % confidence sequence (a band) at every recorded read, and each
arm's share of the traffic. Pure: each arm's interval at each read comes from the same
function as the page's table (`readout.mean_sequence`, cheap: no comparisons)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from registry.experiments.readout import mean_sequence
from registry.experiments.stats import Experiment, Read
from registry.web.console.charts import HEIGHT, LEFT, RIGHT, WIDTH, Tick, nice_max

TOP: Final = 14
BOTTOM: Final = 30


class Line(msgspec.Struct, frozen=True):
    name: str  # v1 (control), v2...
    css: str  # control | variant
    path: str  # the line: "M x,y L x,y ..."
    area: str  # the band around it, as polygon points ("" for none)
    points: int
    last: str  # its last value, for a tooltip and for tests


class TimeChart(msgspec.Struct, frozen=True):
    title: str
    lines: list[Line]
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
        return sum(line.points for line in self.lines)


class _Frame:
    def __init__(self, start: datetime, end: datetime, low: float, high: float) -> None:
        self.start = start
        self.span = max((end - start).total_seconds(), 1.0)
        self.low, self.high = low, high if high > low else low + 1.0

    def x(self, at: datetime) -> float:
        share = (at - self.start).total_seconds() / self.span
        return round(LEFT + min(max(share, 0.0), 1.0) * (WIDTH - RIGHT - LEFT), 1)

    def y(self, value: float) -> float:
        share = (min(max(value, self.low), self.high) - self.low) / (self.high - self.low)
        return round((HEIGHT - BOTTOM) - share * (HEIGHT - BOTTOM - TOP), 1)

    def x_ticks(self) -> list[Tick]:
        span = self.span
        unit, size = ("s", 1.0) if span < 120 else ("m", 60.0) if span < 7200 else ("h", 3600.0)
        return [
            Tick(LEFT + i / 4 * (WIDTH - RIGHT - LEFT), f"+{i / 4 * span / size:.3g}{unit}")
            for i in range(5)
        ]

    def y_ticks(self, percent: bool) -> list[Tick]:
        ticks = []
        for i in range(5):
            value = self.low + (self.high - self.low) * i / 4
            label = f"{value:.3g} %" if percent else f"{value:.3g}"
            ticks.append(Tick(self.y(value), label))
        return ticks


def _path(points: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(points))


def _name(version: int, experiment: Experiment) -> tuple[str, str]:
    control = version == experiment.control
    return (f"v{version} (control)" if control else f"v{version}"), (
        "control" if control else "variant"
    )


def means_chart(experiment: Experiment, reads: Sequence[Read]) -> TimeChart:
    """Each arm's mean and its 95 % confidence sequence at each read."""
    found: dict[int, list[tuple[datetime, float, float, float]]] = {}
    arms = {a.version for a in experiment.spec.arms}
    for read in reads:
        for tally in read.tallies:
            mean, low, high = mean_sequence(experiment.spec.metric, tally)
            if tally.version in arms and mean is not None and low is not None and high is not None:
                found.setdefault(tally.version, []).append((read.at, mean, low, high))
    values = [v for rows in found.values() for _, _, low, high in rows for v in (low, high)]
    low = min(values, default=0.0)
    high = nice_max(max(values, default=1.0)) if low >= 0 else max(values, default=1.0)
    start = reads[0].at if reads else experiment.created_at
    end = reads[-1].at if reads else experiment.updated_at
    frame = _Frame(start, end, 0.0 if low >= 0 else low, high)
    lines = []
    for version in sorted(found):
        rows = found[version]
        name, css = _name(version, experiment)
        means = [(frame.x(at), frame.y(mean)) for at, mean, _, _ in rows]
        band = [(frame.x(at), frame.y(hi)) for at, _, _, hi in rows]
        band += [(frame.x(at), frame.y(lo)) for at, _, lo, _ in reversed(rows)]
        _, mean, lo, hi = rows[-1]
        last = f"{name}: {mean:.4g} [{lo:.4g}, {hi:.4g}]"
        area = " ".join(f"{x},{y}" for x, y in band)
        lines.append(Line(name, css, _path(means), area, len(rows), last))
    title = "Each arm's mean with its 95 % confidence sequence, over time"
    return TimeChart(title, lines, frame.x_ticks(), frame.y_ticks(percent=False))


def weights_chart(experiment: Experiment, reads: Sequence[Read]) -> TimeChart:
    """Each arm's share of the traffic at each read, in percent."""
    start = reads[0].at if reads else experiment.created_at
    end = reads[-1].at if reads else experiment.updated_at
    frame = _Frame(start, end, 0.0, 100.0)
    lines = []
    for arm in experiment.spec.arms:
        rows = [(r.at, r.weights[arm.version]) for r in reads if arm.version in r.weights]
        if not rows:
            continue
        name, css = _name(arm.version, experiment)
        path = _path([(frame.x(at), frame.y(w)) for at, w in rows])
        lines.append(Line(name, css, path, "", len(rows), f"{name}: {rows[-1][1]:g} %"))
    return TimeChart(
        "Each arm's share of the traffic, over time",
        lines,
        frame.x_ticks(),
        frame.y_ticks(percent=True),
    )
